"""Login, the per-request session check, logout and revocation.

The check on every protected request (:func:`authenticate_request`) verifies the token, then
the session: not revoked, not idle- or absolute-expired, its user still active. The session's
state is cached in Redis for a few seconds; revocation and user changes overwrite the cache
entry with a tombstone, so a request racing with a revocation cannot re-cache the old state.
Session state is always read from the primary: a lagging replica must not resurrect a session.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from flask import Flask, current_app, request
from redis import Redis
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.db import Session, after_commit, get_database, transaction, utcnow
from app.errors import Unauthenticated
from app.jobs import RedisOutage
from app.log import audit as audit_line
from app.security import Principal, browser_allowed, current_principal
from modules.user.models import User
from modules.user.passwords import passwords
from modules.user.services import find_by_email

from . import csrf, signed_requests
from .config import AuthSettings
from .key_cache import ApiKeyCache
from .models import ADMIN, DEACTIVATED, LOGOUT, PASSWORD_SET, REPLACED, ApiKey, AuthSession
from .replay import ReplayStore
from .throttle import LoginLocked, LoginThrottle
from .tokens import WWW_AUTHENTICATE, InvalidToken, KeyRing

log = logging.getLogger("lapak.auth")
#: The browser's cookie: the same access token the bearer header carries (``browser.py``).
#: The ``__Host-`` prefix makes a browser keep it only if it is Secure, has Path=/ and no
#: Domain, so neither a plain-http page nor a subdomain can plant or overwrite it.
SESSION_COOKIE = "__Host-lapak_session"
#: Its name where cookies are not Secure (``LAPAK_ENV=development`` over http): no prefix then.
DEVELOPMENT_SESSION_COOKIE = "lapak_session"
TOMBSTONE = "revoked"
# Cache the state unless a revocation left its tombstone there (atomically).
_SET_UNLESS_TOMBSTONE = """
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class AuthFailure(Unauthenticated):
    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": WWW_AUTHENTICATE}, **extra)


class MissingCredentials(AuthFailure):
    code = "unauthenticated"
    title = "Authentication is required"


class InvalidCredentials(AuthFailure):
    code = "invalid-credentials"
    title = "The email or password is wrong"


class SessionReplaced(AuthFailure):
    code = "session-replaced"
    title = "This session was ended by a newer login"


class SessionRevoked(AuthFailure):
    code = "session-revoked"
    title = "This session has ended"


class SessionExpired(InvalidToken):
    """The token is sound but its session ran out: RFC 6750 calls that an invalid token too."""

    code = "session-expired"
    title = "This session has expired; log in again"


@dataclass(frozen=True)
class SessionState:
    """What the per-request check needs, as stored in the cache."""

    session_pk: int
    sid: uuid.UUID
    user_id: int
    user_uuid: uuid.UUID
    email: str
    role: str
    user_active: bool
    revoked_reason: str | None
    revoked: bool
    idle_expires_at: datetime
    absolute_expires_at: datetime
    last_seen_at: datetime

    def dumps(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def loads(cls, text: str | bytes) -> SessionState:
        raw = json.loads(text)
        for name in ("sid", "user_uuid"):
            raw[name] = uuid.UUID(raw[name])
        for name in ("idle_expires_at", "absolute_expires_at", "last_seen_at"):
            raw[name] = datetime.fromisoformat(raw[name])
        return cls(**raw)


class SessionCache:
    """Session states in Redis for ``ttl`` seconds; a no-op without Redis.

    While Redis is down every check reads the database. A session ended meanwhile could not get
    its tombstone, and the state cached before the outage may still be there when Redis comes
    back (a restart from its dump, a network partition): this process remembers those sessions,
    never trusts the cache for them, and writes their tombstones as soon as Redis answers. Other
    processes trust such an entry at most until it expires, ``ttl`` seconds after it was cached.
    """

    def __init__(self, redis: Redis | None, ttl: int, outage: RedisOutage | None = None) -> None:
        self.redis, self.ttl = redis, ttl
        self.outage = outage or RedisOutage()
        self._set = redis.register_script(_SET_UNLESS_TOMBSTONE) if redis is not None else None
        #: sid -> monotonic time after which a cached state of it has expired anyway.
        self._unwritten_tombstones: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(sid: uuid.UUID) -> str:
        return f"lapak:auth:session:{sid}"

    def get(self, sid: uuid.UUID) -> SessionState | None:
        redis = self.redis
        if redis is None or not self._usable_for(sid):
            return None
        value = self.outage.guarded(
            "session checks read the database", lambda: redis.get(self.key(sid)), lambda: None
        )
        if value is None or value == TOMBSTONE.encode():
            return None
        return SessionState.loads(value)

    def put(self, state: SessionState) -> None:
        script = self._set
        if script is None or not self._usable_for(state.sid):
            return
        args = [state.dumps(), self.ttl, TOMBSTONE]
        self.outage.guarded(
            "session checks read the database",
            lambda: script(keys=[self.key(state.sid)], args=args),
            lambda: None,
        )

    def invalidate(self, sids: Iterable[uuid.UUID]) -> None:
        if self.redis is None:
            return
        # The tombstone outlives any state a racing request could still try to cache.
        deadline = time.monotonic() + self.ttl * 3
        with self._lock:
            self._unwritten_tombstones.update(dict.fromkeys(sids, deadline))
        self._write_unwritten_tombstones()

    def _usable_for(self, sid: uuid.UUID) -> bool:
        if not self._unwritten_tombstones:
            return True  # the usual case, without a lock
        return self._write_unwritten_tombstones() and sid not in self._unwritten_tombstones

    def _unwritten(self) -> dict[uuid.UUID, float]:
        with self._lock:
            now = time.monotonic()
            for sid in [s for s, until in self._unwritten_tombstones.items() if until <= now]:
                del self._unwritten_tombstones[sid]
            return dict(self._unwritten_tombstones)

    def _write_unwritten_tombstones(self) -> bool:
        """Write the tombstones still owed to Redis; whether that worked (or none was owed)."""
        redis, owed = self.redis, self._unwritten()
        if redis is None or not owed:
            return True
        now = time.monotonic()

        def write() -> bool:
            pipe = redis.pipeline()
            for sid, until in owed.items():
                pipe.set(self.key(sid), TOMBSTONE, ex=max(math.ceil(until - now), 1))
            pipe.execute()
            return True

        written = self.outage.guarded(
            "ended sessions are refused by this process until Redis answers",
            write,
            lambda: False,
        )
        if written:
            with self._lock:
                for sid, until in owed.items():
                    if self._unwritten_tombstones.get(sid) == until:
                        del self._unwritten_tombstones[sid]
        return written


@dataclass
class Auth:
    """The auth module's per-app state."""

    settings: AuthSettings
    keyring: KeyRing
    throttle: LoginThrottle
    cache: SessionCache
    replay: ReplayStore
    key_cache: ApiKeyCache
    #: Keys the HMAC that stands for an email in audit lines (derived from the app's secret).
    email_hash_key: bytes
    #: Keys the browser sessions' CSRF tokens (``csrf.py``; derived from the app's secret).
    csrf_key: bytes
    #: The name of the browser's session cookie in this app (:func:`session_cookie_for`).
    session_cookie: str


def install(app: Flask, settings: Settings) -> None:
    auth_settings = AuthSettings.from_settings(settings)
    jobs = app.extensions["lapak.jobs"]
    replays = ReplayStore(
        jobs.redis, jobs.outage, window_seconds=auth_settings.api_key_window_seconds
    )
    # Called by whoever ends the app before its process does (the tests' fixtures).
    app.extensions.setdefault("lapak.closers", []).append(replays.close)
    app.extensions["auth"] = Auth(
        auth_settings,
        KeyRing.from_settings(auth_settings),
        LoginThrottle(auth_settings, jobs.redis, jobs.outage),
        SessionCache(jobs.redis, auth_settings.session_cache_seconds, jobs.outage),
        replays,
        ApiKeyCache(jobs.redis, auth_settings.api_key_cache_seconds, jobs.outage),
        hmac.new(settings.secret_key.encode(), b"lapak.auth.email-hash", hashlib.sha256).digest(),
        csrf.derive_key(settings.secret_key),
        session_cookie_for(settings),
    )


def runtime() -> Auth:
    return current_app.extensions["auth"]


def cookies_are_secure(settings: Settings) -> bool:
    """Whether the browser's cookies are ``Secure`` (sent over HTTPS only): everywhere but
    ``LAPAK_ENV=development``, whose http://127.0.0.1 has no TLS."""
    return settings.env != "development"


def session_cookie_for(settings: Settings) -> str:
    return SESSION_COOKIE if cookies_are_secure(settings) else DEVELOPMENT_SESSION_COOKIE


# --- login -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: AuthSession


def login(email: str, password: str, *, ip: str | None, user_agent: str | None) -> LoginResult:
    """Check the credentials, end every other session of the user, open a new one."""
    auth = runtime()
    email_key = email.strip().lower()
    try:
        auth.throttle.reserve(email_key, ip)
    except LoginLocked as locked:
        # Refused before any password check, but still an outcome: brute force must show.
        audit(
            "auth.login",
            "locked",
            email_hash=_hash(email_key),
            ip=ip,
            retry_after=locked.extra.get("retry_after"),
        )
        raise
    user = find_by_email(email)
    # Unknown emails and users without a password spend the same argon2 time (dummy hash).
    valid = passwords().verify(user.password_hash if user else None, password)
    if user is None or not valid or not user.active:
        reason = "unknown-email" if user is None else "inactive" if valid else "wrong-password"
        audit("auth.login", "failure", reason=reason, email_hash=_hash(email_key), ip=ip)
        raise InvalidCredentials("check the email and password and try again")
    auth.throttle.succeeded(email_key, ip)
    for attempt in range(3):
        try:
            session = _open_session(user.id, password, ip=ip, user_agent=user_agent)
            break
        except IntegrityError:
            # A concurrent login of the same user won the single-live-session index; go again.
            if attempt == 2:
                raise
    token = auth.keyring.issue(
        user_uuid=user.uuid,
        email=user.email,
        role=user.role,
        session_id=session.sid,
        expires_at=session.absolute_expires_at,
    )
    audit("auth.login", "success", user=str(user.uuid), session=str(session.sid), ip=ip)
    return LoginResult(token, session)


def _open_session(
    user_id: int, password: str, *, ip: str | None, user_agent: str | None
) -> AuthSession:
    settings = runtime().settings
    with transaction() as session:
        # The row lock serialises concurrent logins of one user: exactly one session survives.
        user = session.scalars(
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if user.password_hash and passwords().needs_rehash(user.password_hash):
            user.password_hash = passwords().hash(password)
        now = utcnow()
        replaced = _end_sessions(session, [AuthSession.user_id == user.id], REPLACED, now)
        absolute = now + settings.absolute_lifetime
        opened = AuthSession(
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + settings.idle_timeout, absolute),
            absolute_expires_at=absolute,
            user_agent=(user_agent or "")[:300] or None,
            ip=ip,
        )
        session.add(opened)
        session.flush()
    if replaced:
        audit("auth.session", "replaced", sessions=[str(s) for s in replaced])
    return opened


def _end_sessions(session: Any, where: list[Any], reason: str, now: datetime) -> list[uuid.UUID]:
    """Revoke the live sessions matching ``where``; drop them from the cache after commit."""
    live = [AuthSession.revoked_at.is_(None), *where]
    ended = list(session.scalars(select(AuthSession.sid).where(*live)))
    if ended:
        session.execute(
            update(AuthSession)
            .where(*live)
            .values(revoked_at=now, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        after_commit(functools.partial(runtime().cache.invalidate, ended))
    return ended


# --- the per-request check -------------------------------------------------------------------


def authenticate_request() -> Principal:
    """The core's authenticator, a chain: a bearer token (a person's session) if the request
    has an Authorization header, else a signed API-key request if it has any of the API-key
    headers (a program), else the browser's session cookie if the view accepts a browser
    (``@requires(..., browser=True)``), else 401. On a browser view only a Bearer header goes
    before the cookie: a proxy's HTTP Basic login in front of Lapak makes the browser send
    ``Authorization: Basic`` with every request, beside the cookie."""
    authorization = request.headers.get("Authorization")
    if authorization is None and signed_requests.presented():
        return _authenticate_signed()
    cookie = None
    if not _is_bearer(authorization) and browser_allowed():
        cookie = request.cookies.get(runtime().session_cookie)
    try:
        return _authenticate_cookie(cookie) if cookie else _authenticate()
    except Unauthenticated as refused:
        audit("auth.token", "refused", problem=refused.code, ip=request.remote_addr)
        raise
    except csrf.CsrfRefused as refused:
        audit("auth.csrf", "refused", problem=refused.code, ip=request.remote_addr)
        raise


def _authenticate_signed() -> Principal:
    try:
        auth = runtime()
        return signed_requests.authenticate(
            auth.settings.api_key_window_seconds, auth.replay, auth.key_cache
        )
    except Unauthenticated as refused:
        key_id = request.headers.get(signed_requests.HEADER_KEY, "").strip()
        if key_id and not signed_requests.KEY_ID_SHAPE.fullmatch(key_id):
            key_id = "<malformed>"  # whatever else was sent there (a secret?) is not logged
        audit(
            "auth.api_key",
            "refused",
            problem=refused.code,
            key=key_id or None,
            ip=request.remote_addr,
        )
        raise


def _is_bearer(authorization: str | None) -> bool:
    scheme, _, _ = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer"


def _authenticate() -> Principal:
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise MissingCredentials(
            "send Authorization: Bearer <access token>, or sign the request with an API key "
            "(X-API-Key, X-Timestamp, X-Signature)"
        )
    _, _, token = header.partition(" ")
    if not _is_bearer(header) or not token.strip():
        raise MissingCredentials("send Authorization: Bearer <access token>")
    return _session_principal(runtime().keyring.verify(token.strip()))


def _authenticate_cookie(token: str) -> Principal:
    """The browser's cookie holds the same access token as the bearer header. Its CSRF token
    is checked before the session is (nothing of the session, not even its idle expiry, moves
    for a request that may come from another site)."""
    auth = runtime()
    claims = auth.keyring.verify(token)
    csrf.check(auth.csrf_key, claims["sid"])
    return _session_principal(claims)


def _session_principal(claims: dict[str, Any]) -> Principal:
    """The person behind a verified token, once their session passes every check
    (:func:`check_session`); a use slides the session's idle expiry (at most once per
    ``touch_interval``)."""
    auth = runtime()
    state = check_session(claims["sid"], claims["sub"])
    now = utcnow()
    if now - state.last_seen_at >= auth.settings.touch_interval:
        _touch(state, now)
    return Principal(
        user_id=state.user_id,
        user_uuid=state.user_uuid,
        email=state.email,
        role=state.role,
        session_id=state.sid,
    )


def check_session(sid: uuid.UUID, user_uuid: uuid.UUID) -> SessionState:
    """The state of session ``sid`` of ``user_uuid`` while it may be used; else the
    failure saying why (replaced by a newer login, ended, the account deactivated,
    expired). The per-request check, also for what outlives a request (an event stream's replay
    checks its caller's session between pages); it does not count as activity (no idle slide)."""
    return _verdict(_session_state(sid), user_uuid)


def check_sessions(
    sessions: Iterable[tuple[uuid.UUID, uuid.UUID]],
) -> dict[uuid.UUID, SessionState | Unauthenticated]:
    """:func:`check_session` for many ``(sid, user_uuid)`` at once, in one query of the
    database (not the cache, which may lag): each sid with its state, or the failure
    :func:`check_session` would raise. For what holds many sessions open outside requests: a
    process's event streams, checked together every few seconds."""
    wanted = dict(sessions)
    states = _load_states(wanted)
    verdicts: dict[uuid.UUID, SessionState | Unauthenticated] = {}
    for sid, user_uuid in wanted.items():
        try:
            verdicts[sid] = _verdict(states.get(sid), user_uuid)
        except Unauthenticated as failure:  # an AuthFailure, or SessionExpired
            verdicts[sid] = failure
    return verdicts


def _verdict(state: SessionState | None, user_uuid: uuid.UUID) -> SessionState:
    """``state`` if its session may be used by ``user_uuid``; else the failure saying why."""
    if state is None or state.user_uuid != user_uuid:
        raise SessionRevoked("this session does not exist")
    if state.revoked:
        if state.revoked_reason == REPLACED:
            raise SessionReplaced("you logged in elsewhere; log in again to continue here")
        raise SessionRevoked(f"the session was ended ({state.revoked_reason})")
    if not state.user_active:
        raise SessionRevoked("the account is deactivated")
    now = utcnow()
    if now >= state.absolute_expires_at:
        raise SessionExpired("the session reached its maximum lifetime; log in again")
    if now >= state.idle_expires_at:
        raise SessionExpired("the session was idle for too long; log in again")
    return state


def _session_state(sid: uuid.UUID) -> SessionState | None:
    cache = runtime().cache
    cached = cache.get(sid)
    # The cache may lag on the sliding idle expiry; only trust it for sessions that are fine.
    if cached is not None and (cached.revoked or utcnow() < cached.idle_expires_at):
        return cached
    state = _load_state(sid)
    if state is not None:
        cache.put(state)
    return state


_SESSIONS, _USERS = AuthSession.__table__, User.__table__
#: A session's state with its user's (built once: every request runs one).
_STATE = select(
    _SESSIONS.c.id,
    _SESSIONS.c.sid,
    _SESSIONS.c.user_id,
    _SESSIONS.c.revoked_at,
    _SESSIONS.c.revoked_reason,
    _SESSIONS.c.idle_expires_at,
    _SESSIONS.c.absolute_expires_at,
    _SESSIONS.c.last_seen_at,
    _USERS.c.uuid,
    _USERS.c.email,
    _USERS.c.role,
    _USERS.c.active,
).join_from(_SESSIONS, _USERS, _SESSIONS.c.user_id == _USERS.c.id)
_STATE_OF_ONE = _STATE.where(_SESSIONS.c.sid == bindparam("sid"))
_STATES_OF_MANY = _STATE.where(_SESSIONS.c.sid.in_(bindparam("sids", expanding=True)))


def _load_state(sid: uuid.UUID) -> SessionState | None:
    with get_database().primary.connect() as connection:
        row = connection.execute(_STATE_OF_ONE, {"sid": sid}).one_or_none()
    return None if row is None else _state_of(row)


def _load_states(sids: Iterable[uuid.UUID]) -> dict[uuid.UUID, SessionState]:
    wanted = sorted(set(sids))
    if not wanted:
        return {}
    with get_database().primary.connect() as connection:
        rows = connection.execute(_STATES_OF_MANY, {"sids": wanted}).all()
    return {row.sid: _state_of(row) for row in rows}


def _state_of(row: Any) -> SessionState:
    return SessionState(
        session_pk=row.id,
        sid=row.sid,
        user_id=row.user_id,
        user_uuid=row.uuid,
        email=row.email,
        role=row.role,
        user_active=row.active,
        revoked_reason=row.revoked_reason,
        revoked=row.revoked_at is not None,
        idle_expires_at=row.idle_expires_at,
        absolute_expires_at=row.absolute_expires_at,
        last_seen_at=row.last_seen_at,
    )


def _touch(state: SessionState, now: datetime) -> None:
    """Slide the idle expiry: written at most once per touch interval, whatever the traffic."""
    settings = runtime().settings
    sessions = AuthSession.__table__
    idle_expires_at = min(now + settings.idle_timeout, state.absolute_expires_at)
    with get_database().primary.begin() as connection:
        touched = connection.execute(
            update(sessions)
            .where(
                sessions.c.id == state.session_pk,
                sessions.c.revoked_at.is_(None),
                sessions.c.last_seen_at <= now - settings.touch_interval,
            )
            .values(last_seen_at=now, idle_expires_at=idle_expires_at)
        ).rowcount
    if touched:
        runtime().cache.put(replace(state, last_seen_at=now, idle_expires_at=idle_expires_at))


# --- ending sessions -------------------------------------------------------------------------


def _caller() -> Principal:
    principal = current_principal()
    if principal is None or principal.session_id is None:
        raise MissingCredentials("this needs a logged-in session")
    return principal


def current_session() -> AuthSession:
    """The caller's session row (call behind ``@requires``)."""
    sid = _caller().session_id
    return Session().scalars(select(AuthSession).where(AuthSession.sid == sid)).one()


def logout() -> None:
    principal = _caller()
    with transaction() as session:
        _end_sessions(session, [AuthSession.sid == principal.session_id], LOGOUT, utcnow())
    audit(
        "auth.logout", "success", user=str(principal.user_uuid), session=str(principal.session_id)
    )


def revoke_user_sessions(user_uuid: uuid.UUID) -> int:
    """End every live session of a user (an admin action); returns how many ended."""
    from modules.user.services import get_user

    with transaction() as session:
        user = get_user(user_uuid)
        ended = _end_sessions(session, [AuthSession.user_id == user.id], ADMIN, utcnow())
    admin = current_principal()
    audit(
        "auth.revoke",
        "success",
        user=str(user_uuid),
        sessions=len(ended),
        by=str(admin.user_uuid) if admin else None,
    )
    return len(ended)


def end_sessions_of_deactivated_user(payload: dict[str, Any]) -> None:
    """``user.deactivated`` subscriber: the sessions end for good (the check already refuses)."""
    with transaction() as session:
        _end_sessions(session, [AuthSession.user_id == payload["user_id"]], DEACTIVATED, utcnow())


def end_sessions_after_password_set(payload: dict[str, Any]) -> None:
    """``user.password_set`` subscriber: a password set for the user ends their sessions."""
    with transaction() as session:
        _end_sessions(session, [AuthSession.user_id == payload["user_id"]], PASSWORD_SET, utcnow())


def forget_user_sessions(payload: dict[str, Any]) -> None:
    """``user.updated`` on-commit listener: the next check re-reads role and active flag."""
    sessions = AuthSession.__table__
    with get_database().primary.connect() as connection:
        sids = list(
            connection.scalars(
                select(sessions.c.sid).where(
                    sessions.c.user_id == payload["user_id"], sessions.c.revoked_at.is_(None)
                )
            )
        )
    runtime().cache.invalidate(sids)


def forget_user_keys(payload: dict[str, Any]) -> None:
    """``user.updated`` on-commit listener: the user's keys are read again with the new role
    and active flag (their cached states become tombstones)."""
    if not runtime().key_cache.enabled:
        return
    keys = ApiKey.__table__
    with get_database().primary.connect() as connection:
        key_ids = list(
            connection.scalars(select(keys.c.key_id).where(keys.c.user_id == payload["user_id"]))
        )
    if key_ids:
        runtime().key_cache.invalidate(key_ids)


def audit(event: str, outcome: str, **fields: Any) -> None:
    """One structured log line per authentication outcome (stored by the audit sinks too);
    never a password or a token."""
    audit_line(log, event, outcome, **fields)


def _hash(text: str) -> str:
    """What stands for an email in audit lines: an HMAC under a key derived from the app's
    secret (audit lines are kept and shown to admins; a plain hash of an email is a lookup
    away from the email)."""
    return hmac.new(runtime().email_hash_key, text.encode(), hashlib.sha256).hexdigest()[:16]
