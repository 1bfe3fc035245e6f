"""Sign-up throttling: at most ``LAPAK_SELLER_SIGNUP_MAX_PER_IP`` sign-ups per client IP in each
``LAPAK_SELLER_SIGNUP_WINDOW_SECONDS``, refused with 429 and ``Retry-After`` before any password
is hashed (sign-up is public, and each one costs an argon2 hash and a user row).

Every attempt that reaches the check counts, whatever its outcome (a taken email too), so the
limit also bounds how many emails one address can probe. As with the login throttle
(:mod:`modules.auth.throttle`), Redis holds the counts; without Redis (embedded mode), or while
it is down, they live in this process (the outage is logged once, not per request). The IP is
the client's as the app computes it (``LAPAK_TRUSTED_PROXY_HOPS``).
"""

from __future__ import annotations

import math
import threading
import time

from redis import Redis

from app.errors import TooManyRequests
from app.jobs import RedisOutage

_FALLBACK = "seller sign-ups are counted in each process"


class SignUpThrottled(TooManyRequests):
    code = "sign-up-throttled"
    title = "Too many sign-ups from this address; try again later"


class SignUpThrottle:
    def __init__(
        self, limit: int, window_seconds: int, redis: Redis | None, outage: RedisOutage
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.redis = redis
        self.outage = outage
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def take(self, ip: str | None) -> None:
        """Count one sign-up from ``ip``; :class:`SignUpThrottled` if it is past the limit."""
        key = f"lapak:seller:sign-up:ip:{ip or 'unknown'}"
        redis = self.redis
        if redis is None:
            count, wait = self._in_memory(key)
        else:
            count, wait = self.outage.guarded(
                _FALLBACK, lambda: self._on_redis(redis, key), lambda: self._in_memory(key)
            )
        if count > self.limit:
            raise SignUpThrottled(
                f"try again in {wait} seconds", headers={"Retry-After": str(wait)}, retry_after=wait
            )

    def _on_redis(self, redis: Redis, key: str) -> tuple[int, int]:
        """The window's count with this sign-up, and the seconds left of the window."""
        pipe = redis.pipeline()  # MULTI: the window starts with the first sign-up
        pipe.set(key, 0, ex=self.window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
        return int(count), max(int(ttl), 1)

    def _in_memory(self, key: str) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            count, since = self._counts.get(key, (0, now))
            if now - since >= self.window_seconds:
                count, since = 0, now
            self._counts[key] = (count + 1, since)
        return count + 1, max(math.ceil(since + self.window_seconds - now), 1)
