"""Authenticating a signed API-key request: the chain's second link (after a bearer token).

Every refusal is its own 401 problem type, raised before the view runs, so a refused request
changes nothing. With Redis, the key's state is read from the key cache (:mod:`.key_cache`) in
the same pipeline as the replay check, one round trip and no database statement; a miss reads
the primary (one statement, on the driver) and fills the cache. A revocation, a roll or a change
of the owner replaces the cached entry with a tombstone after it commits, and an expiry is
checked against the clock, so each holds at once, in every process. Without Redis the primary is
read on every request. See :mod:`.signing` for what is signed and :mod:`.replay` for the replay
store and the outage rule.

The key's state (revoked, expired, its owner deactivated) is told only to a request whose
signature verifies: anyone else learns that the key id exists, nothing more.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import request
from sqlalchemy import Text, bindparam, exists, or_, select, text, type_coerce, update
from sqlalchemy.exc import SQLAlchemyError

from app.db import DriverStatement, get_database, utcnow
from app.errors import ServiceUnavailable, Unauthenticated
from app.reading import body_of
from app.security import Principal
from app.vault import Unsealed, VaultError, get_vault
from modules.user.models import User

from . import replay
from .api_keys import KEY_ROLES, allowed_scopes
from .key_cache import ApiKeyCache, KeyState
from .models import SIGNATURE_LEGACY, ApiKey, ApiReplay
from .signing import matches, raw_path, request_target, signed_message

log = logging.getLogger("lapak.auth")

#: ``last_used_at`` is written at most this often per key.
TOUCH_INTERVAL = timedelta(minutes=1)
HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE = "X-API-Key", "X-Timestamp", "X-Signature"
SIGNED_HEADERS = (HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE)
#: What a key id looks like (``lpk_`` and URL-safe base64): anything else is not logged.
KEY_ID_SHAPE = re.compile(r"lpk_[A-Za-z0-9_-]{1,60}")
#: Unsafe methods: a legacy key may not send them without a body (see :func:`authenticate`).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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


class SignedBeforeOutage(ApiKeyRefused):
    code = "api-request-signed-before-outage"
    title = "This request was signed before the replay store became unavailable; sign it again"


class LegacyEmptyBody(ApiKeyRefused):
    code = "api-legacy-empty-body"
    title = "A legacy-signed key cannot send a POST, PUT, PATCH or DELETE without a body"


class ApiKeySecretUnreadable(ServiceUnavailable):
    code = "api-key-secret-unreadable"
    title = "The API key's secret cannot be read right now"


# --- authenticating a signed request ---------------------------------------------------------


def presented() -> bool:
    """Whether this request tries to authenticate with an API key (any of its headers)."""
    headers = request.headers
    return any(name in headers for name in SIGNED_HEADERS)


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
            exists().where(ApiReplay.__table__.c.digest == bindparam("digest")),
        )
        .join_from(keys, users, keys.c.user_id == users.c.id)
        .where(keys.c.key_id == bindparam("key_id"))
    )


#: Built once and run on the driver: SQLAlchemy's per-execution work would cost about what the
#: query does (bench/auth.py measures this path).
_KEY_STATE = _key_state_statement()


def _load(key_id: str, digest: str) -> tuple[KeyState | None, bool]:
    """The key's state from the primary, and whether the request's digest is in
    ``auth_api_replay`` (accepted before, through the database)."""
    # Always the primary: a lagging replica must not bring a revoked key back. One statement in
    # autocommit on PostgreSQL: a transaction would add nothing but a ROLLBACK round trip.
    with get_database().primary.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT")
        rows = _KEY_STATE.rows(connection, {"key_id": key_id, "digest": digest})
    if not rows:
        return None, False
    (
        pk, key_id, scopes, version, secret, previous, previous_until, expires_at, revoked_at,
        last_used_at, user_id, user_uuid, email, role, active, seen,
    ) = rows[0]  # fmt: skip
    state = KeyState(
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
    return state, bool(seen)


@dataclass(frozen=True)
class _RedisAnswer:
    """What the one Redis round trip of a signed request told."""

    #: The cached key state (None: a miss, a tombstone, or not read).
    state: KeyState | None
    #: Redis had not seen the digest (None: not asked, the timestamp is out of the window).
    first: bool | None
    #: The outage marker exists (:mod:`.replay`): check ``auth_api_replay`` too.
    marker: bool


def _ask_redis(
    cache: ApiKeyCache,
    replays: replay.ReplayStore,
    key_id: str,
    digest: str,
    until: float,
    now: float,
    in_window: bool,
) -> _RedisAnswer | None:
    """The cached state and the replay check in one pipeline; None while Redis is down."""
    redis = cache.redis
    if redis is None:
        return None
    read = cache.usable_for(key_id)  # a round trip only while owed tombstones are written
    if not read and not in_window:
        return _RedisAnswer(None, None, False)

    def ask() -> _RedisAnswer:
        pipe = redis.pipeline(transaction=False)
        if read:
            cache.queue_get(pipe, key_id)
        wrote_marker = replays.queue(pipe, digest, until, now) if in_window else False
        replies = pipe.execute()
        state = cache.state_of(replies[0]) if read else None
        first: bool | None = None
        marker = False
        if in_window:
            first, marker = replays.answered(replies[1:] if read else replies, wrote_marker)
        return _RedisAnswer(state, first, marker)

    return cache.outage.guarded(
        "signed requests read their key and check replays in the database", ask, lambda: None
    )


def authenticate(
    window_seconds: int, replays: replay.ReplayStore, cache: ApiKeyCache | None = None
) -> Principal:
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
    if not KEY_ID_SHAPE.fullmatch(key_id):
        raise ApiKeyUnknown("no API key has this id; check X-API-Key")
    digest = replay.digest(key_id, signature)
    now = utcnow()
    timestamp, current = int(timestamp_text), now.timestamp()
    in_window = current - window_seconds <= timestamp <= current + window_seconds
    answer = (
        _ask_redis(cache, replays, key_id, digest, timestamp + window_seconds, current, in_window)
        if cache is not None and cache.enabled
        else None
    )
    request_check = _SignedRequest(key_id, digest, signature, timestamp_text, window_seconds, now)
    try:
        return _check(request_check, replays, cache, answer)
    except RequestReplayed:
        raise
    except Exception:
        # Refused (or the database failed) after the SET NX: the signature is not used up, and
        # the client may send it again (after a 503, say).
        if answer is not None and answer.first:
            replays.forget(digest)
        raise


@dataclass(frozen=True)
class _SignedRequest:
    key_id: str
    digest: str
    signature: str
    timestamp_text: str
    window_seconds: int
    now: datetime


def _check(
    signed: _SignedRequest,
    replays: replay.ReplayStore,
    cache: ApiKeyCache | None,
    answer: _RedisAnswer | None,
) -> Principal:
    key_id, digest, now, window = signed.key_id, signed.digest, signed.now, signed.window_seconds
    timestamp, current = int(signed.timestamp_text), now.timestamp()
    cached = answer.state if answer is not None else None
    state, seen = (cached, False) if cached is not None else _load(key_id, digest)
    if state is None:
        raise ApiKeyUnknown("no API key has this id; check X-API-Key")
    if cached is None and answer is not None and cache is not None:
        cache.put(state)  # Redis answered the miss: the next request is a hit
    if timestamp < current - window:
        raise TimestampTooOld(
            f"X-Timestamp is more than {window} s old; sign with the current time"
        )
    if timestamp > current + window:
        raise TimestampTooNew(
            f"X-Timestamp is more than {window} s ahead; check the client's clock"
        )
    message = signed_message(
        state.signature_version,
        signed.timestamp_text,
        request.method,
        request_target(
            request.script_root + request.path,
            request.query_string,
            raw=raw_path(request.environ),
        ),
        body_of(request),
    )
    try:
        verifies = _verifies(state, message, signed.signature, now)
    except ApiKeySecretUnreadable:
        if cached is None:
            raise
        # Cached before a vault rotation whose old key this process no longer has: the primary
        # holds the re-sealed secret.
        reloaded, seen = _load(key_id, digest)
        if reloaded is None:
            raise ApiKeyUnknown("no API key has this id; check X-API-Key") from None
        state, cached = reloaded, None
        verifies = _verifies(state, message, signed.signature, now)
    if not verifies:
        raise SignatureInvalid(
            "the signature does not match the request under the key's secret (after a roll, "
            "sign with the new secret)"
        )
    # Signed with the key's secret: the key's state may be told now.
    if state.revoked:
        raise ApiKeyRevoked("the key was revoked; create a new one")
    if state.expires_at is not None and now >= state.expires_at:
        raise ApiKeyExpired(f"the key expired at {state.expires_at.isoformat()}")
    if not state.active or state.role not in KEY_ROLES:
        raise ApiKeyOwnerInactive("the key's owner is deactivated or may no longer hold keys")
    legacy = state.signature_version == SIGNATURE_LEGACY
    if legacy and request.method in UNSAFE_METHODS and not body_of(request):
        # A legacy signature of no body is HMAC(timestamp): the same as any GET's.
        raise LegacyEmptyBody(
            "a legacy signature without a body is the same for every request; send a body "
            "(e.g. {}) or move the key to v1 signatures"
        )
    until = timestamp + window
    if seen:
        verdict = replay.REPLAYED
    elif answer is None or answer.first is None:
        verdict = replays.first_use(digest, timestamp, until, current)
    elif not answer.first:
        verdict = replay.REPLAYED
    elif cached is not None and answer.marker and replays.seen_in_database(digest):
        # The outage rule (see .replay): accepted through the database while Redis was down.
        verdict = replay.REPLAYED
    else:
        verdict = replays.accepted_on_redis(digest, timestamp, until, current)
    if verdict == replay.REPLAYED:
        raise RequestReplayed("each signed request is accepted once; sign it again")
    if verdict == replay.BEFORE_OUTAGE:
        raise SignedBeforeOutage(
            "requests signed before the replay check moved to the database are refused; sign "
            "it again with the current time"
        )
    if (
        (state.last_used_at is None or now - state.last_used_at >= TOUCH_INTERVAL)
        and _touch(state.pk, state.key_id, now)
        and cache is not None
    ):
        cache.put(state.used_at(now))  # later requests decide from the cache
    return Principal(
        user_id=state.user_id,
        user_uuid=state.user_uuid,
        email=state.email,
        role=state.role,
        api_key_id=state.key_id,
        scopes=frozenset(state.scopes.split()) & allowed_scopes(state.role),
    )


def _verifies(state: KeyState, message: bytes, signature: str, now: datetime) -> bool:
    try:
        return _verifies_with_secrets(state, message, signature, now)
    except VaultError:
        # The vault's keys do not open the stored secret (a vault key removed too early, a
        # damaged row): not the client's fault, and no other key can stand in.
        log.warning("auth: the secret of API key %s cannot be unsealed", state.key_id)
        raise ApiKeySecretUnreadable(
            "the key's secret cannot be read; try again later or ask an administrator"
        ) from None


def _verifies_with_secrets(state: KeyState, message: bytes, signature: str, now: datetime) -> bool:
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


#: On PostgreSQL the ``last_used_at`` write waits at most this long for a lock, and runs at
#: most this long: it must not hold up the request.
TOUCH_LOCK_TIMEOUT, TOUCH_STATEMENT_TIMEOUT = "200ms", "1s"


def _touch(pk: int, key_id: str, now: datetime) -> bool:
    """Write ``last_used_at`` unless another request did within the interval (conditional);
    whether this wrote it.

    Best effort: a failure (a read-only primary, a lock held, SQLite busy) is logged and the
    request goes on; the next request past the interval tries again.
    """
    keys = ApiKey.__table__
    try:
        with get_database().primary.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SET LOCAL lock_timeout = '{TOUCH_LOCK_TIMEOUT}'"))
                connection.execute(
                    text(f"SET LOCAL statement_timeout = '{TOUCH_STATEMENT_TIMEOUT}'")
                )
            touched = connection.execute(
                update(keys)
                .where(
                    keys.c.id == pk,
                    or_(
                        keys.c.last_used_at.is_(None),
                        keys.c.last_used_at <= now - TOUCH_INTERVAL,
                    ),
                )
                .values(last_used_at=now)
            ).rowcount
    except SQLAlchemyError as error:
        log.warning(
            "auth: last_used_at of API key %s not written (%s); the request goes on",
            key_id,
            type(error).__name__,
        )
        return False
    return bool(touched)
