"""Reading requests safely: one JSON reader for every endpoint, body limits, safe headers.

Every case is sent unauthenticated to ``/api/v1/auth/login``, the endpoint an attacker reaches
first, on the embedded default (SQLite) and on PostgreSQL: the answer must be the same 4xx
problem+json on both, never a 500.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.migrate import upgrade
from app.reading import MalformedJSON, read_json
from tests.app.fake_modules import embedded_config
from tests.app.test_serve import serve, stop

LOGIN = "/api/v1/auth/login"
PROBLEM = "application/problem+json"
MIB = 1024 * 1024


@pytest.fixture(params=["embedded", "postgresql"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``make(max_json_bytes=...)``: an app on the backend of this parameter."""
    made: list[Flask] = []
    if request.param == "postgresql":
        build = request.getfixturevalue("make_app")
        yield build
        return

    def build_embedded(**overrides: Any) -> Flask:
        app = create_app(embedded_config(tmp_path, **overrides))
        upgrade(app.extensions["lapak.settings"])
        made.append(app)
        return app

    yield build_embedded
    for app in made:
        app.extensions["lapak.jobs"].wait_embedded()
        app.extensions["lapak.db"].dispose()


@pytest.fixture
def client(make: Callable[..., Flask]) -> FlaskClient:
    return make().test_client()


def post_text(client: FlaskClient, text: str | bytes, **headers: str) -> TestResponse:
    headers.setdefault("Content-Type", "application/json")
    return client.post(LOGIN, data=text, headers=headers)


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    body = json.loads(response.data)
    assert response.status_code == status, body
    assert response.mimetype == PROBLEM
    assert body["type"] == f"urn:lapak:problem:{code}", body
    assert body["status"] == status
    return body


# --- the JSON reader -----------------------------------------------------------------------


def test_json_nested_ten_thousand_deep_is_a_400_saying_how_deep_and_where(
    client: FlaskClient,
) -> None:
    deep = '{"email": "a@b.co", "password": ' + "[" * 10_000 + "]" * 10_000 + "}"

    body = problem(post_text(client, deep), 400, "malformed-json")

    assert "nested deeper than 64" in body["detail"]
    assert "line 1 column 96" in body["detail"]  # the 65th opening bracket


def test_a_five_thousand_digit_number_is_a_400_saying_where(client: FlaskClient) -> None:
    huge = '{"email": "a@b.co",\n "password": ' + "9" * 5000 + "}"

    body = problem(post_text(client, huge), 400, "malformed-json")

    assert "a number with 5000 characters" in body["detail"]
    assert "line 2 column 14" in body["detail"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"email": "a@b.co", "password": }', "line 1 column 33"),
        ('{"email": "a@b.co"', "line 1 column 19"),
        ('{"email": NaN, "password": "x"}', "line 1 column 11"),
        ('{"email": -Infinity, "password": "x"}', "line 1 column 11"),
        (b'{"email": "\xff"}', "UTF-8"),
    ],
)
def test_malformed_json_is_a_typed_400_saying_where(
    client: FlaskClient, text: str | bytes, where: str
) -> None:
    body = problem(post_text(client, text), 400, "malformed-json")

    assert where in body["detail"]


def test_brackets_and_digits_inside_strings_are_only_text(client: FlaskClient) -> None:
    password = "[" * 100 + "9" * 100 + '\\"{'
    text = '{"email": "nobody@example.com", "password": "' + password + '"}'

    response = post_text(client, text)

    assert response.status_code == 401  # read, checked, refused as a wrong password


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[" * 64 + "]" * 64, None),
        ("9" * 64, int("9" * 64)),
        ('"' + "[" * 1000 + "9" * 1000 + '"', "[" * 1000 + "9" * 1000),
        ('{"a": "\\"[[[", "b": 1e300}', {"a": '"[[[', "b": 1e300}),
    ],
)
def test_the_reader_takes_what_is_within_its_limits(text: str, value: Any) -> None:
    assert read_json(text) == (value if value is not None else json.loads(text))


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[" * 65 + "]" * 65, "nested deeper than 64"),
        ("9" * 65, "a number with 65 characters"),
        ('{"b": 1e400}', "the number 1e400 is too large"),
        ('{"b": NaN}', "NaN is not a JSON value"),
    ],
)
def test_the_reader_refuses_what_is_over_its_limits(text: str, what: str) -> None:
    with pytest.raises(MalformedJSON, match=what):
        read_json(text.encode())


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_a_415_naming_the_header(
    client: FlaskClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(LOGIN, data='{"email": "a@b.co", "password": "x"}', headers=headers)

    body = problem(response, 415, "unsupported-media-type")
    assert "Content-Type: application/json" in body["detail"]


def test_no_body_at_all_is_a_422_naming_the_missing_fields(client: FlaskClient) -> None:
    body = problem(client.post(LOGIN), 422, "validation-failed")

    assert set(body["errors"]) == {"email", "password"}


# --- text the database cannot store ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"email": "a\\u0000b@example.com", "password": "x"}',
        '{"email": "a\\u001bb@example.com", "password": "x"}',
        '{"email": "\\ud800@example.com", "password": "x"}',
        '{"email": "a@example.com", "password": "x\\u0000"}',
    ],
)
def test_control_characters_and_lone_surrogates_are_a_422_naming_the_field(
    client: FlaskClient, text: str
) -> None:
    body = problem(post_text(client, text), 422, "validation-failed")

    field = "password" if 'password": "x\\' in text else "email"
    assert list(body["errors"]) == [field]
    assert "control character" in body["errors"][field][0]


def test_tabs_and_line_breaks_are_ordinary_text(client: FlaskClient) -> None:
    response = post_text(client, '{"email": "nobody@example.com", "password": "a\\tb\\r\\nc"}')

    assert response.status_code == 401


# --- body size ------------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """``size`` bytes of a JSON string body, counting what the server reads."""

    def __init__(self, size: int) -> None:
        self.size, self.position = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the stream once, before sending
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset if whence == io.SEEK_SET else self.size + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.position)
        buffer[:count] = b"[" * count if self.position == 0 else b" " * count
        self.position += count
        return count


def test_a_50_mib_json_body_is_a_413_before_a_byte_is_read(client: FlaskClient) -> None:
    stream = CountingStream(50 * MIB)

    response = client.post(
        LOGIN,
        input_stream=stream,
        content_type="application/json",
    )

    body = problem(response, 413, "payload-too-large")
    assert f"{MIB} bytes" in body["detail"]
    assert stream.position == 0


def test_a_chunked_body_over_the_limit_is_stopped_at_the_limit(client: FlaskClient) -> None:
    stream = CountingStream(50 * MIB)

    response = client.post(
        LOGIN,
        input_stream=stream,
        content_type="application/json",
        # A chunked body: no length up front; the server marks the stream as terminated.
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )

    problem(response, 413, "payload-too-large")
    assert stream.position <= 2 * MIB


def test_the_json_body_limit_is_a_setting(make: Callable[..., Flask]) -> None:
    client = make(max_json_bytes=2000).test_client()
    padding = " " * 1900
    fits = '{"email": "nobody@example.com",' + padding + '"password": "x"}'
    too_big = fits + " " * 200

    assert post_text(client, fits).status_code == 401
    body = problem(post_text(client, too_big), 413, "payload-too-large")
    assert "2000 bytes" in body["detail"]


def http_exchange(port: int, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send a request head and as much of the body as the server takes; its answer's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        try:
            for chunk in body_chunks:
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what it said is still in our buffer
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    return answer


@pytest.mark.slow
def test_gunicorn_answers_413_problem_without_waiting_for_a_huge_body(tmp_path: Path) -> None:
    process, base = serve(tmp_path)
    port = int(base.rsplit(":", 1)[1])
    try:
        # 50 MiB announced, a few bytes sent: the answer must come before the body would.
        announced = http_exchange(
            port,
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: lapak\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n",
            iter([b'{"email": "']),
        )
        # A chunked body: no length up front, 4 MiB in 64 KiB chunks.
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        chunked = http_exchange(
            port,
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: lapak\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            iter([chunk] * 64 + [b"0\r\n\r\n"]),
        )
    finally:
        stop(process)
    for answer in (announced, chunked):
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"Content-Type: application/problem+json" in answer


# --- headers on every answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/health/live"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/no-such-thing"),
        ("post", LOGIN),
    ],
)
def test_every_answer_forbids_sniffing_and_referrers(
    client: FlaskClient, method: str, path: str
) -> None:
    response = getattr(client, method)(path)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
