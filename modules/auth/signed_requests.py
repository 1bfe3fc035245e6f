"""Authenticating a signed API-key request: the chain's second link (after a bearer token).

Every refusal is its own 401 problem type, raised before the view runs, so a refused request
changes nothing. The key is read from the primary on every request (one statement, on the
driver): a revocation, an expiry or the owner's deactivation holds at once, in every process.
See :mod:`.signing` for what is signed and :mod:`.replay` for the replay cache.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import request
from sqlalchemy import Text, bindparam, or_, select, type_coerce, update

from app.db import DriverStatement, get_database, utcnow
from app.errors import Unauthenticated
from app.reading import body_of
from app.security import Principal
from app.vault import Unsealed, get_vault
from modules.user.models import User

from .api_keys import KEY_PREFIX, KEY_ROLES, allowed_scopes
from .models import ApiKey
from .replay import ReplayCache
from .signing import matches, request_target, signed_message

#: ``last_used_at`` is written at most this often per key.
TOUCH_INTERVAL = timedelta(minutes=1)
HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE = "X-API-Key", "X-Timestamp", "X-Signature"
SIGNED_HEADERS = (HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE)
CHALLENGE = 'LapakSignature realm="lapak", headers="X-API-Key X-Timestamp X-Signature"'


# --- refusals (each its own problem type) ----------------------------------------------------


class ApiKeyRefused(Unauthenticated):
    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": CHALLENGE}, **extra)


class ApiKeyMissing(ApiKeyRefused):
    code = "api-key-missing"
    title = "The X-API-Key header is missing"


class TimestampMissing(ApiKeyRefused):
    code = "api-timestamp-missing"
    title = "The X-Timestamp header is missing"


class SignatureMissing(ApiKeyRefused):
    code = "api-signature-missing"
    title = "The X-Signature header is missing"


class TimestampMalformed(ApiKeyRefused):
    code = "api-timestamp-malformed"
    title = "X-Timestamp is not a whole number of unix seconds"


class ApiKeyUnknown(ApiKeyRefused):
    code = "api-key-unknown"
    title = "No such API key"


class ApiKeyRevoked(ApiKeyRefused):
    code = "api-key-revoked"
    title = "This API key was revoked"


class ApiKeyExpired(ApiKeyRefused):
    code = "api-key-expired"
    title = "This API key has expired"


class ApiKeyOwnerInactive(ApiKeyRefused):
    code = "api-key-owner-inactive"
    title = "The owner of this API key can no longer use it"


class TimestampTooOld(ApiKeyRefused):
    code = "api-timestamp-too-old"
    title = "X-Timestamp is too far in the past"


class TimestampTooNew(ApiKeyRefused):
    code = "api-timestamp-too-new"
    title = "X-Timestamp is too far in the future"


class SignatureInvalid(ApiKeyRefused):
    code = "api-signature-invalid"
    title = "The request signature does not match"


class RequestReplayed(ApiKeyRefused):
    code = "api-request-replayed"
    title = "This signed request was already used"


# --- authenticating a signed request ---------------------------------------------------------


def presented() -> bool:
    """Whether this request tries to authenticate with an API key (any of its headers)."""
    headers = request.headers
    return any(name in headers for name in SIGNED_HEADERS)


@dataclass(frozen=True)
class _KeyState:
    pk: int
    key_id: str
    scopes: str
    signature_version: str
    secret_token: str
    previous_token: str | None
    previous_expires_at: datetime | None
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None
    user_id: int
    user_uuid: uuid.UUID
    email: str
    role: str
    active: bool


def _key_state_statement() -> DriverStatement:
    keys, users = ApiKey.__table__, User.__table__
    return DriverStatement(
        select(
            keys.c.id,
            keys.c.key_id,
            keys.c.scopes,
            keys.c.signature_version,
            # The sealed tokens as stored: only the secret that is needed gets opened.
            type_coerce(keys.c.secret, Text),
            type_coerce(keys.c.previous_secret, Text),
            keys.c.previous_secret_expires_at,
            keys.c.expires_at,
            keys.c.revoked_at,
            keys.c.last_used_at,
            users.c.id,
            users.c.uuid,
            users.c.email,
            users.c.role,
            users.c.active,
        )
        .join_from(keys, users, keys.c.user_id == users.c.id)
        .where(keys.c.key_id == bindparam("key_id"))
    )


#: Built once and run on the driver: SQLAlchemy's per-execution work would cost about what the
#: query does (bench/auth.py measures this path).
_KEY_STATE = _key_state_statement()


def _load(key_id: str) -> _KeyState | None:
    # Always the primary: a lagging replica must not bring a revoked key back. One statement in
    # autocommit: a transaction would add nothing but a ROLLBACK round trip.
    with get_database().primary.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        rows = _KEY_STATE.rows(connection, {"key_id": key_id})
    if not rows:
        return None
    (
        pk, key_id, scopes, version, secret, previous, previous_until, expires_at, revoked_at,
        last_used_at, user_id, user_uuid, email, role, active,
    ) = rows[0]  # fmt: skip
    return _KeyState(
        pk=pk,
        key_id=key_id,
        scopes=scopes,
        signature_version=version,
        secret_token=secret,
        previous_token=previous,
        previous_expires_at=previous_until,
        expires_at=expires_at,
        revoked=revoked_at is not None,
        last_used_at=last_used_at,
        user_id=user_id,
        user_uuid=user_uuid if isinstance(user_uuid, uuid.UUID) else uuid.UUID(str(user_uuid)),
        email=email,
        role=role,
        active=bool(active),
    )


def authenticate(window_seconds: int, replay: ReplayCache) -> Principal:
    """The principal of this signed request, or the refusal that says what is wrong."""
    headers = request.headers
    key_id = headers.get(HEADER_KEY, "").strip()
    timestamp_text = headers.get(HEADER_TIMESTAMP, "").strip()
    signature = headers.get(HEADER_SIGNATURE, "").strip()
    if not key_id:
        raise ApiKeyMissing("send the key's id (lpk_...) in X-API-Key")
    if not timestamp_text:
        raise TimestampMissing("send the unix time in seconds, as signed, in X-Timestamp")
    if not signature:
        raise SignatureMissing("send the hex HMAC-SHA256 of the request in X-Signature")
    if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 12:
        raise TimestampMalformed("X-Timestamp is whole unix seconds, e.g. 1767225600")
    state = _load(key_id) if key_id.startswith(KEY_PREFIX) and len(key_id) <= 64 else None
    if state is None:
        raise ApiKeyUnknown("no API key has this id; check X-API-Key")
    now = utcnow()
    if state.revoked:
        raise ApiKeyRevoked("the key was revoked; create a new one")
    if state.expires_at is not None and now >= state.expires_at:
        raise ApiKeyExpired(f"the key expired at {state.expires_at.isoformat()}")
    if not state.active or state.role not in KEY_ROLES:
        raise ApiKeyOwnerInactive("the key's owner is deactivated or may no longer hold keys")
    timestamp, current = int(timestamp_text), now.timestamp()
    if timestamp < current - window_seconds:
        raise TimestampTooOld(
            f"X-Timestamp is more than {window_seconds} s old; sign with the current time"
        )
    if timestamp > current + window_seconds:
        raise TimestampTooNew(
            f"X-Timestamp is more than {window_seconds} s ahead; check the client's clock"
        )
    message = signed_message(
        state.signature_version,
        timestamp_text,
        request.method,
        request_target(request.script_root + request.path, request.query_string),
        body_of(request),
    )
    if not _verifies(state, message, signature, now):
        raise SignatureInvalid(
            "the signature does not match the request under the key's secret (after a roll, "
            "sign with the new secret)"
        )
    if not replay.first_use(key_id, signature, timestamp, timestamp + window_seconds, current):
        raise RequestReplayed("each signed request is accepted once; sign it again")
    if state.last_used_at is None or now - state.last_used_at >= TOUCH_INTERVAL:
        _touch(state.pk, now)
    return Principal(
        user_id=state.user_id,
        user_uuid=state.user_uuid,
        email=state.email,
        role=state.role,
        api_key_id=state.key_id,
        scopes=frozenset(state.scopes.split()) & allowed_scopes(state.role),
    )


def _verifies(state: _KeyState, message: bytes, signature: str, now: datetime) -> bool:
    if matches(_opened(state.secret_token), message, signature):
        return True
    # The previous secret of a roll, during its grace period only.
    previous_live = state.previous_expires_at is not None and now < state.previous_expires_at
    return bool(
        previous_live
        and state.previous_token is not None
        and matches(_opened(state.previous_token), message, signature)
    )


@functools.lru_cache(maxsize=4096)
def _opened(token: str) -> Unsealed:
    """The secret sealed in ``token``, opened once per process: a token is unique to one
    sealing of one secret (a roll or a vault rotation writes a new one), so it is its own key."""
    return Unsealed(get_vault().unseal(token))


def _touch(pk: int, now: datetime) -> None:
    """Write ``last_used_at`` unless another request did within the interval (conditional)."""
    keys = ApiKey.__table__
    with get_database().primary.begin() as connection:
        connection.execute(
            update(keys)
            .where(
                keys.c.id == pk,
                or_(keys.c.last_used_at.is_(None), keys.c.last_used_at <= now - TOUCH_INTERVAL),
            )
            .values(last_used_at=now)
        )
