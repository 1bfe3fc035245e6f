"""Standard Webhooks signatures: ``whsec_`` secrets and ``v1,<base64 HMAC-SHA256>`` of
``{webhook-id}.{webhook-timestamp}.{body}``, one per active secret in ``webhook-signature``.

The receiver's side (:func:`verify`) is here too, for the README's snippet and the tests: a
two-sided timestamp window and a constant-time comparison against every ``v1`` entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32
TOLERANCE_SECONDS = 300


class SignatureInvalid(ValueError):
    """A delivery whose headers or signature do not verify (the message names which check)."""


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>`` for one secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: int) -> None:
    """Raise :class:`SignatureInvalid` unless ``body`` and ``headers`` were signed with
    ``secret`` within ``TOLERANCE_SECONDS`` of ``now`` (either way)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isdigit():
        raise SignatureInvalid("webhook-timestamp is not unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureInvalid("webhook-timestamp is outside the tolerance")
    expected = sign(secret, message_id, int(timestamp), body).encode()
    for entry in signatures.split(" "):
        if entry.startswith("v1,") and hmac.compare_digest(entry.encode(), expected):
            return
    raise SignatureInvalid("no signature matches")
