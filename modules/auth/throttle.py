"""Login throttling: per-account and per-IP failure counts with growing lockouts.

Failures are counted for the email as typed (normalised and hashed, so unknown emails are
throttled exactly like real ones and no email lands in Redis in clear) and for the client IP.
Past the limit, the key is locked for ``lockout_seconds`` doubling with each further failure up
to the maximum; a locked login is refused before any password check, with ``Retry-After``.
Redis holds the counters; without Redis (embedded mode) they live in this process, and so they
do while Redis is down: logins go on, limited per process, with a warning (not one per request),
and the counters go back to Redis once it answers again.

An attempt is counted as a failure *before* its password is checked (:meth:`reserve`), with an
atomic increment, and a success gives that count back: so parallel attempts each see their own
number, and a burst gets no more password checks than the limit.

The same counting serves any public secret that can be guessed (a payment link's token): another
module builds its own :class:`LoginThrottle` with its own ``namespace`` (its keys), limits and
``refusal`` (its problem type), the secret's hash standing for the email.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from redis import Redis

from app.errors import TooManyRequests
from app.jobs import RedisOutage

T = TypeVar("T")
NAMESPACE = "lapak:auth:throttle"


class ThrottleLimits(Protocol):
    """The limits a throttle counts by (``AuthSettings`` has them for logins)."""

    max_account_failures: int
    max_ip_failures: int
    failure_window_seconds: int
    lockout_seconds: int
    max_lockout_seconds: int


class LoginLocked(TooManyRequests):
    code = "login-locked"
    title = "Too many failed logins; try again later"


def _locked(wait: int) -> LoginLocked:
    return LoginLocked(
        f"try again in {wait} seconds", headers={"Retry-After": str(wait)}, retry_after=wait
    )


# Give back a successful attempt's count, and lift the lock if that count was what set it: a
# lock set by earlier failures would have refused this attempt before its password was checked.
_GIVE_BACK = """
if not redis.call('GET', KEYS[1]) then return 0 end
local failures = redis.call('DECR', KEYS[1])
if failures < tonumber(ARGV[1]) then redis.call('DEL', KEYS[2]) end
return failures
"""


@dataclass
class _MemoryStore:
    counts: dict[str, tuple[int, float]] = field(default_factory=dict)
    locks: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LoginThrottle:
    def __init__(
        self,
        settings: ThrottleLimits,
        redis: Redis | None,
        outage: RedisOutage | None = None,
        *,
        namespace: str = NAMESPACE,
        refusal: Callable[[int], TooManyRequests] = _locked,
        counted: str = "login failures",
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.namespace = namespace
        self.refusal = refusal
        #: What the outage warning says is counted in each process meanwhile.
        self._fallback = f"{counted} are counted in each process"
        self._memory = _MemoryStore()

    def _store(self, on_redis: Callable[[Redis], T], in_memory: Callable[[], T]) -> T:
        """Use Redis when there is one and it answers, else this process's counters."""
        redis = self.redis
        if redis is None:
            return in_memory()
        return self.outage.guarded(self._fallback, lambda: on_redis(redis), in_memory)

    def check(self, email_key: str, ip: str | None) -> None:
        """Raise :class:`LoginLocked` if the account or the IP is locked out."""
        wait = max(self._locked_for(key) for key in self._keys(email_key, ip))
        if wait > 0:
            raise self.refusal(wait)

    def reserve(self, email_key: str, ip: str | None) -> None:
        """Count this attempt as failed before its password is checked.

        Raises :class:`LoginLocked` when the account or the IP is locked, or when this attempt
        is past a limit (which locks the key). :meth:`succeeded` gives the count back.
        """
        self.check(email_key, ip)
        account_key, ip_key = self._keys(email_key, ip)
        limits = [(account_key, self.settings.max_account_failures)]
        if ip_key != account_key:
            limits.append((ip_key, self.settings.max_ip_failures))
        for key, limit in limits:
            if self._count(key, limit) > limit:
                raise self.refusal(max(self._locked_for(key), 1))

    def succeeded(self, email_key: str, ip: str | None) -> None:
        """Forget the account's failures; give back the IP's count for this attempt."""
        account_key, ip_key = self._keys(email_key, ip)
        limit = self.settings.max_ip_failures

        def on_redis(redis: Redis) -> None:
            redis.delete(f"{account_key}:count", f"{account_key}:lock")
            if ip_key != account_key:
                redis.eval(_GIVE_BACK, 2, f"{ip_key}:count", f"{ip_key}:lock", limit)

        def in_memory() -> None:
            with self._memory.lock:
                self._memory.counts.pop(account_key, None)
                self._memory.locks.pop(account_key, None)
                if ip_key != account_key and ip_key in self._memory.counts:
                    failures, since = self._memory.counts[ip_key]
                    self._memory.counts[ip_key] = (failures - 1, since)
                    if failures - 1 < limit:
                        # Only this attempt's own reservation can have locked it (see _GIVE_BACK).
                        self._memory.locks.pop(ip_key, None)

        self._store(on_redis, in_memory)

    def _keys(self, email_key: str, ip: str | None) -> tuple[str, str]:
        account = self._account_key(email_key)
        return account, f"{self.namespace}:ip:{ip}" if ip else account

    def _account_key(self, email_key: str) -> str:
        digest = hashlib.sha256(email_key.strip().lower().encode()).hexdigest()[:32]
        return f"{self.namespace}:account:{digest}"

    def _lock_seconds(self, failures: int, limit: int) -> int:
        if failures < limit:
            return 0
        lock = self.settings.lockout_seconds * 2 ** min(failures - limit, 20)
        return min(lock, self.settings.max_lockout_seconds)

    def _count(self, key: str, limit: int) -> int:
        """Add one to the key's failures (locking it at the limit); the new count."""
        window = self.settings.failure_window_seconds

        def on_redis(redis: Redis) -> int:
            pipe = redis.pipeline()
            pipe.incr(f"{key}:count")
            pipe.expire(f"{key}:count", window)
            failures = int(pipe.execute()[0])
            lock = self._lock_seconds(failures, limit)
            if lock:
                redis.set(f"{key}:lock", "1", ex=lock)
            return failures

        def in_memory() -> int:
            now = time.monotonic()
            with self._memory.lock:
                failures, since = self._memory.counts.get(key, (0, now))
                if now - since > window:
                    failures, since = 0, now
                failures += 1
                self._memory.counts[key] = (failures, since)
                lock = self._lock_seconds(failures, limit)
                if lock:
                    self._memory.locks[key] = now + lock
            return failures

        return self._store(on_redis, in_memory)

    def _locked_for(self, key: str) -> int:
        def in_memory() -> int:
            with self._memory.lock:
                until = self._memory.locks.get(key, 0.0)
            return max(math.ceil(until - time.monotonic()), 0)

        return self._store(lambda redis: max(int(redis.ttl(f"{key}:lock")), 0), in_memory)
