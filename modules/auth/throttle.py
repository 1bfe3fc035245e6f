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
``refusal`` (its problem type), the secret's hash standing for the email, or with
``per_account=False`` to count per client IP only (where each guess is a new "account", so
counting it locks nothing but lets anyone holding a real one lock it for everybody).

The counters kept in this process (no Redis, or while it is down) are bounded: once they hold
``memory_keys`` keys, those whose window or lockout has passed are dropped, and if that is not
enough the oldest counts, then the lockouts ending soonest, down to nine tenths of the bound.
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
#: How many keys (counts and lockouts) the in-process counters hold at most.
MEMORY_KEYS = 100_000


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
    """This process's counters: key -> (failures, window start), key -> locked until (both on
    ``time.monotonic``). Callers hold ``lock``."""

    max_keys: int = MEMORY_KEYS
    counts: dict[str, tuple[int, float]] = field(default_factory=dict)
    locks: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bound(self, now: float, window: float) -> None:
        """Past ``max_keys``: drop what has expired, then (a flood of addresses) the oldest
        counts and the lockouts ending soonest, down to nine tenths of the bound."""
        if len(self.counts) + len(self.locks) <= self.max_keys:
            return
        self.counts = {k: v for k, v in self.counts.items() if now - v[1] <= window}
        self.locks = {k: until for k, until in self.locks.items() if until > now}
        excess = len(self.counts) + len(self.locks) - self.max_keys * 9 // 10
        if excess <= 0:
            return
        for key in sorted(self.counts, key=lambda k: self.counts[k][1])[:excess]:
            del self.counts[key]
            excess -= 1
        for key in sorted(self.locks, key=self.locks.__getitem__)[: max(excess, 0)]:
            del self.locks[key]


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
        per_account: bool = True,
        memory_keys: int = MEMORY_KEYS,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.namespace = namespace
        self.refusal = refusal
        #: False: failures are counted per client IP only (the account key is ignored).
        self.per_account = per_account
        #: What the outage warning says is counted in each process meanwhile.
        self._fallback = f"{counted} are counted in each process"
        self._memory = _MemoryStore(max_keys=memory_keys)

    def _store(self, on_redis: Callable[[Redis], T], in_memory: Callable[[], T]) -> T:
        """Use Redis when there is one and it answers, else this process's counters."""
        redis = self.redis
        if redis is None:
            return in_memory()
        return self.outage.guarded(self._fallback, lambda: on_redis(redis), in_memory)

    def check(self, email_key: str, ip: str | None) -> None:
        """Raise :class:`LoginLocked` if the account or the IP is locked out."""
        wait = max(self._locked_for(key) for key, _ in self._limits(email_key, ip))
        if wait > 0:
            raise self.refusal(wait)

    def reserve(self, email_key: str, ip: str | None) -> None:
        """Count this attempt as failed before its password is checked.

        Raises :class:`LoginLocked` when the account or the IP is locked, or when this attempt
        is past a limit (which locks the key). :meth:`succeeded` gives the count back.
        """
        self.check(email_key, ip)
        for key, limit in self._limits(email_key, ip):
            if self._count(key, limit) > limit:
                raise self.refusal(max(self._locked_for(key), 1))

    def succeeded(self, email_key: str, ip: str | None) -> None:
        """Forget the account's failures; give back the IP's count for this attempt."""
        account_key = self._account_key(email_key) if self.per_account else None
        ip_key = self._ip_key(ip)
        limit = self.settings.max_ip_failures

        def on_redis(redis: Redis) -> None:
            if account_key is not None:
                redis.delete(f"{account_key}:count", f"{account_key}:lock")
            if ip_key is not None:
                redis.eval(_GIVE_BACK, 2, f"{ip_key}:count", f"{ip_key}:lock", limit)

        def in_memory() -> None:
            memory = self._memory
            with memory.lock:
                if account_key is not None:
                    memory.counts.pop(account_key, None)
                    memory.locks.pop(account_key, None)
                if ip_key is not None and ip_key in memory.counts:
                    failures, since = memory.counts[ip_key]
                    if failures <= 1:
                        del memory.counts[ip_key]
                    else:
                        memory.counts[ip_key] = (failures - 1, since)
                    if failures - 1 < limit:
                        # Only this attempt's own reservation can have locked it (see _GIVE_BACK).
                        memory.locks.pop(ip_key, None)

        self._store(on_redis, in_memory)

    def _limits(self, email_key: str, ip: str | None) -> list[tuple[str, int]]:
        """The keys this attempt counts against, with their limits."""
        limits = []
        if self.per_account:
            limits.append((self._account_key(email_key), self.settings.max_account_failures))
        ip_key = self._ip_key(ip)
        if ip_key is not None:
            limits.append((ip_key, self.settings.max_ip_failures))
        return limits

    def _ip_key(self, ip: str | None) -> str | None:
        """The IP's key; None without an IP when the account is counted (counting only per IP,
        requests without one share a key)."""
        if not ip and self.per_account:
            return None
        return f"{self.namespace}:ip:{ip or 'unknown'}"

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
                self._memory.bound(now, window)
            return failures

        return self._store(on_redis, in_memory)

    def _locked_for(self, key: str) -> int:
        def in_memory() -> int:
            with self._memory.lock:
                until = self._memory.locks.get(key, 0.0)
            return max(math.ceil(until - time.monotonic()), 0)

        return self._store(lambda redis: max(int(redis.ttl(f"{key}:lock")), 0), in_memory)
