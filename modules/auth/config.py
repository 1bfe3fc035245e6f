"""The auth module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_JWT_ALGORITHM`` | ``HS256``; or ``RS256``, ``ES256``, ``EdDSA`` with a key pair |
| ``LAPAK_JWT_SECRET`` | derived from ``LAPAK_SECRET_KEY`` (HS256 only; at least 32 chars) |
| ``LAPAK_JWT_PRIVATE_KEY_FILE`` / ``LAPAK_JWT_KEY_ID`` | the signing key (PEM) and its ``kid`` |
| ``LAPAK_JWT_PUBLIC_KEYS`` | ``kid=/path/old.pem,...``: older keys that still verify |
| ``LAPAK_JWT_ISSUER`` / ``LAPAK_JWT_AUDIENCE`` | ``lapak`` / ``lapak-api`` |
| ``LAPAK_SESSION_IDLE_MINUTES`` / ``LAPAK_SESSION_ABSOLUTE_HOURS`` | ``30`` / ``12`` |
| ``LAPAK_LOGIN_MAX_ACCOUNT_FAILURES`` / ``LAPAK_LOGIN_MAX_IP_FAILURES`` | ``5`` / ``20`` |
| ``LAPAK_LOGIN_WINDOW_SECONDS`` | ``900``: how long failures are remembered |
| ``LAPAK_LOGIN_LOCKOUT_SECONDS`` | ``30``: first lockout; doubles per further failure, max 15 min |
| ``LAPAK_SESSION_CACHE_SECONDS`` | ``10``: how long a session check is cached in Redis |
| ``LAPAK_API_KEY_WINDOW_SECONDS`` | ``300``: a signed request's X-Timestamp may be this far off |
| ``LAPAK_API_KEY_ROLL_GRACE_HOURS`` | ``24``: how long a rolled key's old secret still verifies |
| ``LAPAK_API_KEY_MAX_GRACE_HOURS`` | ``168``: the longest grace a roll may ask for (up to 87600) |
| ``LAPAK_API_KEY_CACHE_SECONDS`` | ``10``: how long a key's state is cached in Redis (0: off) |
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from app.config import Settings, SettingsError, module_int

ASYMMETRIC = ("RS256", "ES256", "EdDSA")
#: The longest grace period LAPAK_API_KEY_MAX_GRACE_HOURS may allow (ten years).
GRACE_HOURS_LIMIT = 24 * 365 * 10
ALGORITHMS = ("HS256", *ASYMMETRIC)


@dataclass(frozen=True)
class AuthSettings:
    algorithm: str
    hmac_secret: str | None
    private_key_pem: bytes | None
    key_id: str | None
    public_keys_pem: dict[str, bytes]
    issuer: str
    audience: str
    idle_timeout: timedelta
    absolute_lifetime: timedelta
    max_account_failures: int
    max_ip_failures: int
    failure_window_seconds: int
    lockout_seconds: int
    max_lockout_seconds: int
    session_cache_seconds: int
    api_key_window_seconds: int = 300
    api_key_roll_grace: timedelta = timedelta(hours=24)
    api_key_max_grace: timedelta = timedelta(hours=168)
    api_key_cache_seconds: int = 10
    #: Tokens are clock-checked with this tolerance (exp, nbf, iat).
    leeway_seconds: int = 30
    #: Touch last_seen (and slide the idle expiry) at most this often.
    touch_interval: timedelta = timedelta(minutes=1)

    @property
    def api_key_roll_grace_hours(self) -> int:
        """A roll's grace when none is asked for, in whole hours."""
        return int(self.api_key_roll_grace.total_seconds() // 3600)

    @property
    def api_key_max_grace_hours(self) -> int:
        """The longest grace a roll may ask for, in whole hours."""
        return int(self.api_key_max_grace.total_seconds() // 3600)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthSettings:
        env = settings.module_env
        algorithm = env.get("jwt_algorithm", "HS256")
        if algorithm not in ALGORITHMS:
            raise SettingsError(f"LAPAK_JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        hmac_secret = private_key = key_id = None
        public_keys: dict[str, bytes] = {}
        if algorithm == "HS256":
            hmac_secret = (
                env.get("jwt_secret")
                or hmac.new(
                    settings.secret_key.encode(), b"lapak.auth.jwt", hashlib.sha256
                ).hexdigest()
            )
            if len(hmac_secret) < 32:
                raise SettingsError("LAPAK_JWT_SECRET must be at least 32 characters")
        else:
            private_key = _read(env.get("jwt_private_key_file"), "LAPAK_JWT_PRIVATE_KEY_FILE")
            key_id = env.get("jwt_key_id")
            if not key_id:
                raise SettingsError(f"LAPAK_JWT_KEY_ID is required with {algorithm}")
            for entry in filter(
                None, (e.strip() for e in env.get("jwt_public_keys", "").split(","))
            ):
                kid, _, path = entry.partition("=")
                if not kid or not path:
                    raise SettingsError("LAPAK_JWT_PUBLIC_KEYS entries look like kid=/path/key.pem")
                public_keys[kid.strip()] = _read(path.strip(), "LAPAK_JWT_PUBLIC_KEYS")
        max_grace_hours = module_int(env, "api_key_max_grace_hours", 168, 0)
        if max_grace_hours > GRACE_HOURS_LIMIT:
            raise SettingsError(
                f"LAPAK_API_KEY_MAX_GRACE_HOURS must be at most {GRACE_HOURS_LIMIT}"
            )
        max_grace = timedelta(hours=max_grace_hours)
        if timedelta(hours=module_int(env, "api_key_roll_grace_hours", 24, 0)) > max_grace:
            raise SettingsError(
                "LAPAK_API_KEY_ROLL_GRACE_HOURS must not exceed LAPAK_API_KEY_MAX_GRACE_HOURS"
            )
        return cls(
            algorithm=algorithm,
            hmac_secret=hmac_secret,
            private_key_pem=private_key,
            key_id=key_id,
            public_keys_pem=public_keys,
            issuer=env.get("jwt_issuer", "lapak"),
            audience=env.get("jwt_audience", "lapak-api"),
            idle_timeout=timedelta(minutes=module_int(env, "session_idle_minutes", 30)),
            absolute_lifetime=timedelta(hours=module_int(env, "session_absolute_hours", 12)),
            max_account_failures=module_int(env, "login_max_account_failures", 5),
            max_ip_failures=module_int(env, "login_max_ip_failures", 20),
            failure_window_seconds=module_int(env, "login_window_seconds", 900),
            lockout_seconds=module_int(env, "login_lockout_seconds", 30),
            max_lockout_seconds=module_int(env, "login_max_lockout_seconds", 900),
            session_cache_seconds=module_int(env, "session_cache_seconds", 10),
            api_key_window_seconds=module_int(env, "api_key_window_seconds", 300),
            api_key_roll_grace=timedelta(hours=module_int(env, "api_key_roll_grace_hours", 24, 0)),
            api_key_max_grace=max_grace,
            api_key_cache_seconds=module_int(env, "api_key_cache_seconds", 10, 0),
        )


def _read(path: str | None, variable: str) -> bytes:
    if not path:
        raise SettingsError(f"{variable} is required for asymmetric JWT algorithms")
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SettingsError(f"{variable}: cannot read {path}: {error.strerror}") from None
