"""The signed string of an API-key request: the server's half against the README's snippet,
and a known-answer vector that pins the scheme."""

from __future__ import annotations

import hashlib
import hmac

from modules.auth.models import SIGNATURE_LEGACY, SIGNATURE_V1
from modules.auth.signing import matches, request_target, sign, signed_message
from tests.modules.auth.test_api_keys import lapak_signed_headers

SECRET = "lsk_test-secret"


def test_the_target_is_the_encoded_path_and_the_raw_query_without_a_bare_question_mark() -> None:
    assert request_target("/api/v1/marketplace/orders", b"") == "/api/v1/marketplace/orders"
    assert request_target("/a", b"limit=5&state=draft") == "/a?limit=5&state=draft"
    # The WSGI path is decoded: it is encoded again as clients send it.
    assert (
        request_target("/a b/ü/x:y@z", b"q=a%20b&r=%C3%BC")
        == "/a%20b/%C3%BC/x:y@z?q=a%20b&r=%C3%BC"
    )


def test_a_known_answer_vector() -> None:
    message = signed_message(SIGNATURE_V1, "1767225600", "post", "/api/v1/x?a=1", b'{"n":1}')
    body_hash = hashlib.sha256(b'{"n":1}').hexdigest()
    assert message == f"1767225600\nPOST\n/api/v1/x?a=1\n{body_hash}".encode()
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert sign(SECRET, message) == expected
    assert matches(SECRET, message, expected.upper())
    flipped = expected[:-1] + ("1" if expected[-1] == "0" else "0")
    assert not matches(SECRET, message, flipped)
    assert not matches(SECRET, message, "é" * 64)  # non-ASCII is refused, not an error


def test_the_readme_snippet_signs_what_the_server_checks() -> None:
    url = "https://lapak.example.com/api/v1/marketplace/orders?limit=5&state=draft"
    headers = lapak_signed_headers("lpk_x", SECRET, "GET", url, b"", 1767225600)
    target = request_target("/api/v1/marketplace/orders", b"limit=5&state=draft")
    message = signed_message(SIGNATURE_V1, headers["X-Timestamp"], "GET", target, b"")
    assert matches(SECRET, message, headers["X-Signature"])
    assert headers["X-API-Key"] == "lpk_x"


def test_the_legacy_form_signs_timestamp_and_body_only() -> None:
    assert signed_message(SIGNATURE_LEGACY, "1767225600", "GET", "/any", b"{}") == b"1767225600{}"
