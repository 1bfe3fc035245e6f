"""Every authentication outcome leaves one structured log line, without secrets in it."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.log import JsonLineFormatter
from tests.modules.conftest import PASSWORD, Caller, bearer, login

WRONG = "Wrong-Password-That-Must-Not-Leak-42"
UNKNOWN = "Ghost.User+Secret@Unknown-Domain.example"


class AuditLines:
    """The JSON lines written to the ``lapak.auth`` logger, read action by action."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream
        self.everything: list[str] = []

    def take(self) -> list[dict[str, Any]]:
        """The lines written since the last call, parsed."""
        text = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate(0)
        lines = text.splitlines()
        self.everything += lines
        return [json.loads(line) for line in lines]


@pytest.fixture
def audit_lines(app: Flask) -> Iterator[AuditLines]:
    logger = logging.getLogger("lapak.auth")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield AuditLines(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_each_outcome_is_one_json_line_without_secrets(
    app: Flask,
    client: FlaskClient,
    make_user: Callable[..., Any],
    audit_lines: AuditLines,
) -> None:
    _, user_uuid, email = make_user()
    audit_lines.take()  # creating the user is not an authentication outcome

    success = login(client, email)
    assert success.status_code == 200
    token = success.get_json()["access_token"]
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    [logged_in] = audit_lines.take()
    assert (logged_in["event"], logged_in["outcome"]) == ("auth.login", "success")
    assert logged_in["user"] == str(user_uuid)
    assert logged_in["session"] == sid
    assert logged_in["level"] == "INFO"
    assert logged_in["logger"] == "lapak.auth"
    assert logged_in["request_id"] == success.headers["X-Request-ID"]

    assert login(client, email, WRONG).status_code == 401
    [wrong_password] = audit_lines.take()
    assert (wrong_password["event"], wrong_password["outcome"]) == ("auth.login", "failure")
    assert wrong_password["reason"] == "wrong-password"

    assert login(client, UNKNOWN, WRONG).status_code == 401
    [unknown_email] = audit_lines.take()
    assert (unknown_email["event"], unknown_email["outcome"]) == ("auth.login", "failure")
    assert unknown_email["reason"] == "unknown-email"
    # Attempts on one email can still be correlated, through a digest of it.
    assert unknown_email["email_hash"]
    assert unknown_email["email_hash"] != UNKNOWN
    # Keyed by the app's secret: an unsalted hash of a guessed email does not find it.
    plain = hashlib.sha256(UNKNOWN.lower().encode()).hexdigest()
    assert unknown_email["email_hash"] not in plain

    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    [logged_out] = audit_lines.take()
    assert (logged_out["event"], logged_out["outcome"]) == ("auth.logout", "success")
    assert logged_out["session"] == sid

    everything = "\n".join(audit_lines.everything)
    assert len(audit_lines.everything) == 4
    signature = token.rsplit(".", 1)[1]
    for secret in (PASSWORD, WRONG, token, signature, UNKNOWN, UNKNOWN.lower(), "ghost.user"):
        assert secret.lower() not in everything.lower(), secret


def test_a_replaced_session_is_logged_with_the_new_login(
    client: FlaskClient, make_user: Callable[..., Any], audit_lines: AuditLines
) -> None:
    _, _, email = make_user()
    first = login(client, email).get_json()["access_token"]
    audit_lines.take()
    assert login(client, email).status_code == 200
    events = [(line["event"], line["outcome"]) for line in audit_lines.take()]
    assert events == [("auth.session", "replaced"), ("auth.login", "success")]
    replaced_sid = jwt.decode(first, options={"verify_signature": False})["sid"]
    assert replaced_sid in "\n".join(audit_lines.everything)


def test_a_locked_out_login_is_logged(
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    make_user: Callable[..., Any],
    audit_lines: AuditLines,
) -> None:
    app = make_app(module_env={**config["module_env"], "login_max_account_failures": "2"})
    client = app.test_client()
    _, _, email = make_user()
    for _ in range(2):
        assert login(client, email, WRONG).status_code == 401
    audit_lines.take()
    assert login(client, email).status_code == 429
    [locked] = audit_lines.take()
    assert (locked["event"], locked["outcome"]) == ("auth.login", "locked")
    assert email.lower() not in json.dumps(locked).lower()


def test_a_refused_token_is_logged_without_the_token(
    client: FlaskClient, customer: Caller, audit_lines: AuditLines
) -> None:
    tampered = customer.token[:-4] + ("AAAA" if not customer.token.endswith("AAAA") else "BBBB")
    audit_lines.take()  # the login's lines
    assert client.get("/api/v1/auth/session", headers=bearer(tampered)).status_code == 401
    audit_lines.take()
    refused = [line for line in audit_lines.everything if '"auth.token"' in line]
    assert len(refused) == 1
    assert '"invalid-token"' in refused[0]
    assert tampered not in refused[0]
    assert customer.token.split(".")[2] not in refused[0]


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("lpk_" + "A" * 22, "lpk_" + "A" * 22),
        ("lsk_the-secret-pasted-by-mistake", "<malformed>"),
        ("Bearer eyJhbGciOi.the.token", "<malformed>"),
    ],
)
def test_a_refused_api_key_is_logged_by_its_id_only_when_it_looks_like_one(
    client: FlaskClient, audit_lines: AuditLines, sent: str, logged: str
) -> None:
    headers = {"X-API-Key": sent, "X-Timestamp": "1767225600", "X-Signature": "00"}
    assert client.get("/api/v1/marketplace/orders", headers=headers).status_code == 401
    [refused] = [line for line in audit_lines.take() if line["event"] == "auth.api_key"]
    assert refused["key"] == logged
    assert (sent in json.dumps(refused)) is (sent == logged)
