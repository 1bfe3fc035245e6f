"""Password hashing (argon2id), the password policy, and timing-safe checks.

Parameters come from ``LAPAK_PASSWORD_TIME_COST``, ``LAPAK_PASSWORD_MEMORY_KIB`` and
``LAPAK_PASSWORD_PARALLELISM`` (defaults: argon2-cffi's RFC 9106 low-memory profile) and are
refused below OWASP's minimum for argon2id (m=19 MiB, t=2, p=1). A hash made with other
parameters still verifies and is replaced at the next successful login; so does a bcrypt hash
imported from an earlier system.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int

OWASP_MIN_MEMORY_KIB = 19_456
OWASP_MIN_TIME_COST = 2
MIN_PASSWORD_LENGTH = 10
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_PASSWORD_LENGTH = 128


@dataclass(frozen=True)
class Passwords:
    """The hasher of one application, and a dummy hash to spend the same time on unknown users."""

    hasher: PasswordHasher
    dummy_hash: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        env = settings.module_env
        time_cost = module_int(env, "password_time_cost", 3)
        memory_kib = module_int(env, "password_memory_kib", 65_536)
        parallelism = module_int(env, "password_parallelism", 4)
        if memory_kib < OWASP_MIN_MEMORY_KIB or time_cost < OWASP_MIN_TIME_COST:
            raise SettingsError(
                "LAPAK_PASSWORD_MEMORY_KIB / LAPAK_PASSWORD_TIME_COST are below OWASP's minimum "
                f"for argon2id (memory >= {OWASP_MIN_MEMORY_KIB} KiB, time cost >= "
                f"{OWASP_MIN_TIME_COST})"
            )
        hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        return cls(hasher, hasher.hash("lapak dummy password, never valid"))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no hash, spends the same time and says False."""
        if password_hash is None:
            self._burn(password)
            return False
        if password_hash.startswith(BCRYPT_PREFIXES):
            return _verify_bcrypt(password_hash, password)
        try:
            return self.hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _burn(self, password: str) -> None:
        with contextlib.suppress(VerificationError):
            self.hasher.verify(self.dummy_hash, password)


def _verify_bcrypt(password_hash: str, password: str) -> bool:
    """A bcrypt hash imported from an earlier system (it is replaced by argon2id at login).

    bcrypt only ever looked at the first 72 bytes, so that is what the old system hashed.
    """
    try:
        return bcrypt.checkpw(password.encode()[:72], password_hash.encode())
    except ValueError:
        return False


def passwords() -> Passwords:
    """The current application's :class:`Passwords`."""
    return current_app.extensions["user.passwords"]


def policy_errors(password: str, email: str | None = None) -> list[str]:
    """Why ``password`` is not acceptable (empty list when it is)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        problems.append("must not be only spaces")
    if email:
        lowered = password.strip().lower()
        if lowered in (email.lower(), email.lower().split("@")[0]):
            problems.append("must not be your email address")
    return problems


def install(app: Flask, settings: Settings) -> None:
    """Validate the password settings at start and keep this app's hasher."""
    app.extensions["user.passwords"] = Passwords.from_settings(settings)
