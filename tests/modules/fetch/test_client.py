"""The SSRF-safe fetcher against real HTTP servers on 127.0.0.1, started per test."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings, SettingsError
from app.errors import Invalid, UpstreamFailed, UpstreamTimeout
from modules.fetch.client import (
    FetchPolicy,
    SourceFailed,
    SourceTimeout,
    UnsafeUrl,
    address_refusal,
    fetch_json,
    normal_host,
)
from tests.modules.fetch.feedserver import FeedHandler, FeedServer

PAYLOAD = [{"uuid": "a1", "komoditas": "BANDENG", "price": "20.000"}]
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()


def run(feed: FeedServer) -> Iterator[FeedServer]:
    feed.routes["/json"] = lambda h: h.reply(200, PAYLOAD_BYTES)
    thread = threading.Thread(target=feed.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield feed
    finally:
        feed.stopping.set()
        feed.shutdown()
        feed.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    yield from run(FeedServer())


TLS_HOST = "feeds.example"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``feeds.example``: (certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={TLS_HOST}",
         "-addext", f"subjectAltName=DNS:{TLS_HOST}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[FeedServer]:
    """The feed server over TLS; ``server_names`` records the SNI each client sent."""
    feed = FeedServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server_names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,func-returns-value]
    feed.socket = context.wrap_socket(feed.socket, server_side=True)
    feed.server_names = server_names  # type: ignore[attr-defined]
    yield from run(feed)


def local(**overrides: Any) -> FetchPolicy:
    """A policy for the loopback test server, with short limits so failures are quick."""
    values: dict[str, Any] = {
        "allow_loopback": True,
        "connect_timeout": 1.0,
        "total_timeout": 3.0,
    }
    values.update(overrides)
    return FetchPolicy(**values)


def resolver_to(*answers: str) -> Callable[..., list[tuple[Any, ...]]]:
    """A resolver whose n-th call answers ``answers[n]`` (the last one repeats)."""
    calls: list[str] = []

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        address = answers[min(len(calls), len(answers) - 1)]
        calls.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# -- Success --------------------------------------------------------------------------------


def test_fetches_and_decodes_json(server: FeedServer) -> None:
    result = fetch_json("feed", server.url("/json"), local())

    assert result.data == PAYLOAD
    assert result.status == 200
    assert result.url == server.url("/json")
    assert result.bytes == len(PAYLOAD_BYTES)
    assert result.elapsed_ms >= 0


def test_default_policy() -> None:
    policy = FetchPolicy()
    assert (policy.connect_timeout, policy.total_timeout) == (3.0, 15.0)
    assert policy.max_bytes == 20 * 1024 * 1024
    assert (policy.max_redirects, policy.retries) == (3, 2)
    assert policy.allow_loopback is False
    assert policy.allowed_hosts == frozenset()


# -- Timeouts -------------------------------------------------------------------------------


def test_slow_response_times_out_within_the_total_deadline(server: FeedServer) -> None:
    def slow(h: FeedHandler) -> None:
        h.server.stopping.wait(5)

    server.routes["/slow"] = slow
    started = time.monotonic()
    with pytest.raises(SourceTimeout) as caught:
        fetch_json("feed", server.url("/slow"), local(total_timeout=0.5))

    assert time.monotonic() - started < 1.5
    assert isinstance(caught.value, UpstreamTimeout)
    assert caught.value.code == "source-timeout"
    assert caught.value.extra["source"] == "feed"
    assert "'feed'" in (caught.value.detail or "")


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "close-delimited"])
def test_slow_drip_body_is_cut_off_at_the_deadline(server: FeedServer, with_length: bool) -> None:
    body = b"[" + b" " * 200 + b"]"

    def drip(h: FeedHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if with_length:
            h.send_header("Content-Length", str(len(body)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        for byte in body:
            if h.server.stopping.wait(0.05):
                return
            try:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
            except OSError:
                return
        h.close_connection = True

    server.routes["/drip"] = drip
    started = time.monotonic()
    # Every byte arrives well within any per-read timeout; only the total deadline stops it.
    with pytest.raises(SourceTimeout):
        fetch_json("feed", server.url("/drip"), local(total_timeout=0.6))
    assert time.monotonic() - started < 1.5


# -- Retries --------------------------------------------------------------------------------


def test_server_error_then_success_is_retried(server: FeedServer) -> None:
    def flaky(h: FeedHandler) -> None:
        if h.server.hits["/flaky"] == 1:
            h.reply(500, b'{"error": "boom"}')
        else:
            h.reply(200, PAYLOAD_BYTES)

    server.routes["/flaky"] = flaky
    result = fetch_json("feed", server.url("/flaky"), local())

    assert result.data == PAYLOAD
    assert server.hits["/flaky"] == 2


def test_persistent_server_error_fails_after_every_retry(server: FeedServer) -> None:
    server.routes["/down"] = lambda h: h.reply(503, b'{"secret": "body-text"}')
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/down"), local(retries=2))

    assert server.hits["/down"] == 3
    assert isinstance(caught.value, UpstreamFailed)
    assert caught.value.code == "source-failed"
    assert caught.value.extra["source"] == "feed"
    assert "503" in (caught.value.detail or "")
    assert "body-text" not in str(caught.value)


def test_no_retry_when_the_backoff_does_not_fit_the_deadline(server: FeedServer) -> None:
    server.routes["/down"] = lambda h: h.reply(500, b"{}")
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/down"), local(retries=2, total_timeout=0.15))

    assert server.hits["/down"] == 1
    assert "500" in (caught.value.detail or "")


def test_client_error_is_not_retried(server: FeedServer) -> None:
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/missing"), local(retries=2))

    assert server.hits["/missing"] == 1
    assert "404" in (caught.value.detail or "")


def test_connection_refused_is_retried_then_fails(server: FeedServer) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", f"http://127.0.0.1:{port}/", local(retries=1))

    assert "connection refused" in (caught.value.detail or "")
    assert 0.2 <= time.monotonic() - started < 2  # one backoff, then give up


# -- Bodies ---------------------------------------------------------------------------------


def test_declared_oversized_body_is_refused(server: FeedServer) -> None:
    server.routes["/big"] = lambda h: h.reply(200, b"[" + b"0," * 600 + b"0]")
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/big"), local(max_bytes=1000))
    assert "larger than 1000 bytes" in (caught.value.detail or "")


@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
def test_undeclared_oversized_body_is_refused(server: FeedServer, framing: str) -> None:
    def big(h: FeedHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if framing == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        try:
            for _ in range(100):
                piece = b"0," * 256
                if framing == "chunked":
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    h.wfile.write(piece)
            if framing == "chunked":
                h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up once it had seen enough
        h.close_connection = True

    server.routes["/big"] = big
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/big"), local(max_bytes=4096))
    assert "larger than 4096 bytes" in (caught.value.detail or "")


def test_invalid_json_is_a_source_failure(server: FeedServer) -> None:
    server.routes["/html"] = lambda h: h.reply(200, b"<html>private-page</html>")
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/html"), local())

    assert "invalid JSON" in (caught.value.detail or "")
    assert "private-page" not in str(caught.value)


# -- Redirects ------------------------------------------------------------------------------


def test_redirect_chain_within_the_limit_is_followed(server: FeedServer) -> None:
    server.routes["/r1"] = lambda h: h.redirect("/r2")
    server.routes["/r2"] = lambda h: h.redirect(server.url("/r3", host="localhost"))
    server.routes["/r3"] = lambda h: h.redirect("/json")
    result = fetch_json("feed", server.url("/r1"), local(max_redirects=3))

    assert result.data == PAYLOAD
    assert result.url == server.url("/json", host="localhost")
    assert server.hits["/json"] == 1


def test_too_many_redirects_fail(server: FeedServer) -> None:
    for n in range(1, 5):
        server.routes[f"/r{n}"] = lambda h, n=n: h.redirect(f"/r{n + 1}")
    server.routes["/r5"] = lambda h: h.reply(200, PAYLOAD_BYTES)
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", server.url("/r1"), local(max_redirects=3))

    assert "too many redirects" in (caught.value.detail or "")
    assert server.hits["/r5"] == 0


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:10.0.0.1]/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ],
)
def test_redirect_to_an_unsafe_target_is_refused(server: FeedServer, target: str) -> None:
    server.routes["/evil"] = lambda h: h.redirect(target)
    started = time.monotonic()
    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", server.url("/evil"), local(connect_timeout=3.0))

    # Refused from the resolved address alone: an attempted connection would have to time out.
    assert time.monotonic() - started < 1
    assert isinstance(caught.value, Invalid)
    assert caught.value.code == "unsafe-url"
    assert caught.value.extra["source"] == "feed"


# -- The SSRF catalogue ---------------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",
    "0x7f.1",
    "017700000001",
    "127.1",
    "[::ffff:127.0.0.1]",
    "localhost",
]
NEVER_ALLOWED = [
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "169.254.169.254",
    "[fe80::1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "0.0.0.0",  # noqa: S104 - a target to refuse, not a bind address
    "[::]",
    "100.64.0.1",
    "224.0.0.1",
    "[fc00::1]",
    "[2002:7f00:1::]",  # 6to4 wrapping 127.0.0.1
    "[2002:a00:1::]",  # 6to4 wrapping 10.0.0.1
    "[64:ff9b::a00:1]",  # NAT64 wrapping 10.0.0.1
    "240.0.0.1",
]


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_acceptable(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", [*LOOPBACK_SPELLINGS, "[::1]", "0"])
def test_loopback_in_any_spelling_is_refused_by_default(server: FeedServer, host: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", server.url("/json", host=host), local(allow_loopback=False))

    assert server.total_hits == 0
    assert "is not a public address" in (caught.value.detail or "")


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_allow_loopback_reaches_the_test_server_in_any_spelling(
    server: FeedServer, host: str
) -> None:
    result = fetch_json("feed", server.url("/json", host=host), local())
    assert result.data == PAYLOAD
    assert server.hits["/json"] == 1


def test_allow_loopback_permits_ipv6_loopback() -> None:
    # Nothing listens on [::1] here: the point is that it is tried, not refused as unsafe.
    with pytest.raises((SourceFailed, SourceTimeout)):
        fetch_json("feed", "http://[::1]:9/", local(retries=0, total_timeout=1.0))


@pytest.mark.parametrize("host", NEVER_ALLOWED)
def test_private_and_special_addresses_stay_refused_with_allow_loopback(host: str) -> None:
    with pytest.raises(UnsafeUrl):
        fetch_json("feed", f"http://{host}/", local())


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/feed.json",
        "gopher://example.com/",
        "data:application/json,[]",
        "javascript:alert(1)",
        "//example.com/feed.json",
        "http:///feed.json",
        "http://example.com:99999/",
    ],
)
def test_non_http_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        fetch_json("feed", url, FetchPolicy(), resolve=resolver_to("93.184.216.34"))


@pytest.mark.parametrize("userinfo", ["user:pass@", "user@", ":secret@"])
def test_credentials_in_the_url_are_refused(server: FeedServer, userinfo: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", f"http://{userinfo}127.0.0.1:{server.port}/json", local())

    assert "credentials" in (caught.value.detail or "")
    assert userinfo.rstrip("@") not in (caught.value.detail or "")
    assert server.total_hits == 0


def test_any_unsafe_answer_among_several_refuses_the_host() -> None:
    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
        ]

    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", "http://mixed.example/", FetchPolicy(), resolve=resolve)
    assert "not a public address" in (caught.value.detail or "")
    assert "10.0.0.1" not in (caught.value.detail or "")


def test_allowed_hosts_refuse_other_hosts(server: FeedServer) -> None:
    policy = local(allowed_hosts=frozenset({"feeds.example"}))
    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", server.url("/json"), policy)

    assert "allow-list" in (caught.value.detail or "")
    assert server.total_hits == 0


def test_allowed_host_is_fetched_through_its_vetted_address(server: FeedServer) -> None:
    resolve = resolver_to("127.0.0.1")
    policy = local(allowed_hosts=frozenset({"feeds.example"}))
    result = fetch_json("feed", server.url("/json", host="FEEDS.example"), policy, resolve=resolve)

    assert result.data == PAYLOAD
    assert resolve.calls == ["feeds.example"]  # type: ignore[attr-defined]


def test_allowed_hosts_apply_to_redirect_targets(server: FeedServer) -> None:
    server.routes["/away"] = lambda h: h.redirect(server.url("/json", host="elsewhere.example"))
    policy = local(allowed_hosts=frozenset({"feeds.example"}))
    with pytest.raises(UnsafeUrl):
        fetch_json(
            "feed",
            server.url("/away", host="feeds.example"),
            policy,
            resolve=resolver_to("127.0.0.1"),
        )
    assert server.hits["/json"] == 0


def test_the_connection_goes_to_the_vetted_address_not_a_second_answer(
    server: FeedServer,
) -> None:
    # DNS rebinding: the first answer is vetted, later answers differ. A client that resolved
    # again when connecting would go to 127.0.0.2, where nothing listens. Both addresses are
    # loopback so that no test traffic leaves this machine.
    resolve = resolver_to("127.0.0.1", "127.0.0.2")
    result = fetch_json(
        "feed", server.url("/json", host="rebind.example"), local(), resolve=resolve
    )

    assert result.data == PAYLOAD
    assert server.hits["/json"] == 1
    assert resolve.calls == ["rebind.example"]  # type: ignore[attr-defined]


# -- TLS ----------------------------------------------------------------------------------


def test_tls_keeps_the_host_name_for_sni_and_certificate(
    tls_server: FeedServer, certificate: tuple[Path, Path]
) -> None:
    policy = local(ca_bundle=str(certificate[0]))
    url = f"https://{TLS_HOST}:{tls_server.port}/json"
    result = fetch_json("feed", url, policy, resolve=resolver_to("127.0.0.1"))

    assert result.data == PAYLOAD
    assert tls_server.server_names == [TLS_HOST]  # type: ignore[attr-defined]


def test_tls_certificate_for_another_host_is_refused(
    tls_server: FeedServer, certificate: tuple[Path, Path]
) -> None:
    policy = local(ca_bundle=str(certificate[0]), retries=0)
    url = f"https://other.example:{tls_server.port}/json"
    with pytest.raises(SourceFailed) as caught:
        fetch_json("feed", url, policy, resolve=resolver_to("127.0.0.1"))

    assert "TLS" in (caught.value.detail or "")
    assert tls_server.hits["/json"] == 0


# -- Settings -------------------------------------------------------------------------------


def test_policy_from_settings() -> None:
    settings = Settings(
        module_env={
            "fetch_connect_timeout": "1.5",
            "fetch_total_timeout": "20",
            "fetch_max_bytes": "1000",
            "fetch_max_redirects": "0",
            "fetch_retries": "0",
            "fetch_allow_loopback": "true",
            "fetch_ca_bundle": "/etc/lapak/ca.pem",
        }
    )
    policy = FetchPolicy.from_settings(settings)

    assert policy == FetchPolicy(
        connect_timeout=1.5,
        total_timeout=20.0,
        max_bytes=1000,
        max_redirects=0,
        retries=0,
        allow_loopback=True,
        ca_bundle="/etc/lapak/ca.pem",
    )
    assert FetchPolicy.from_settings(Settings()) == FetchPolicy()


def test_the_old_global_host_list_is_refused_not_ignored() -> None:
    # One setting for one idea: LAPAK_FETCH_URL_HOSTS limits ad-hoc URLs and their redirects.
    # The old LAPAK_FETCH_ALLOWED_HOSTS limited every fetch; ignoring it would widen that.
    settings = Settings(module_env={"fetch_allowed_hosts": "feeds.example"})
    with pytest.raises(SettingsError, match="LAPAK_FETCH_URL_HOSTS"):
        FetchPolicy.from_settings(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("fetch_connect_timeout", "soon"),
        ("fetch_total_timeout", "0"),
        ("fetch_total_timeout", "-1"),
        ("fetch_max_bytes", "20MB"),
        ("fetch_max_bytes", "0"),
        ("fetch_max_redirects", "-1"),
        ("fetch_retries", "two"),
        ("fetch_allow_loopback", "maybe"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"LAPAK_{name.upper()}"):
        FetchPolicy.from_settings(Settings(module_env={name: value}))


def test_an_international_host_is_vetted_in_the_form_requests_connects_to(
    server: FeedServer,
) -> None:
    # requests sends "bücher.example" as its IDNA form: the vetted (pinned) host must be that
    # one, or the pinned pool refuses the connection as unvetted.
    assert normal_host("Bücher.Example.") == "xn--bcher-kva.example"
    url = server.url("/json", host="bücher.example")
    result = fetch_json("feed", url, local(), resolve=resolver_to("127.0.0.1"))
    assert result.data == PAYLOAD
    assert server.hits["/json"] == 1


def test_a_host_idna_refuses_is_an_unsafe_url_not_an_error() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        fetch_json("feed", "http://\u2603.example/", local(), resolve=resolver_to("127.0.0.1"))
    assert "not a valid domain name" in (caught.value.detail or "")
