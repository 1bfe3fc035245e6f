"""The signer against the Standard Webhooks specification and its reference library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from modules.webhook.signing import (
    SignatureInvalid,
    new_secret,
    sign,
    signature_header,
    verify,
)

#: The reference library's known-answer vector (tests/test_webhooks.py, test_sign_function).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(message_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_the_specifications_known_answer_vector_signs_the_same() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    signed = headers(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_SIGNATURE)
    verify(VECTOR_SECRET, signed, VECTOR_BODY, now=VECTOR_TIMESTAMP + 10)


def test_new_secrets_are_whsec_and_32_random_bytes_the_library_accepts() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret
    now = int(datetime.now(UTC).timestamp())
    body = b'{"id":"x","type":"ping"}'
    signed = headers("evt-1", now, sign(secret, "evt-1", now, body))
    assert Webhook(secret).verify(body, signed) == {"id": "x", "type": "ping"}


def test_every_active_secret_signs_and_the_library_accepts_either() -> None:
    old, new = new_secret(), new_secret()
    now = int(datetime.now(UTC).timestamp())
    body = b"{}"
    value = signature_header([new, old], "evt-2", now, body)
    assert len(value.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers("evt-2", now, value))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers("evt-2", now, value))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b), "missing"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing"),
        (lambda h, b: (h, b + b" "), "no signature"),
        (lambda h, b: ({**h, "webhook-id": "evt-other"}, b), "no signature"),
        (
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 301)}, b),
            "tolerance",
        ),
        (
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 301)}, b),
            "tolerance",
        ),
        (
            lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b),
            "no signature",
        ),
    ],
    ids=[
        "no-id",
        "no-timestamp",
        "no-signature",
        "body-changed",
        "id-changed",
        "too-old",
        "too-new",
        "other-version",
    ],
)
def test_each_verification_failure_is_refused(change, reason) -> None:
    secret = new_secret()
    now = 1_800_000_000
    body = b'{"a":1}'
    signed = headers("evt-3", now, sign(secret, "evt-3", now, body))
    changed_headers, changed_body = change(signed, body)
    with pytest.raises(SignatureInvalid, match=reason):
        verify(secret, changed_headers, changed_body, now=now)
