"""The replay cache of signed requests: each signature is accepted once within its window.

A signed request stays valid until its ``X-Timestamp`` leaves the window, so its signature is
remembered until then: ``SET NX EX`` in Redis when one is configured (shared by every process),
else a bounded map in this process (the embedded default; and while Redis is down, with a
warning). When the map is full it drops its oldest entries and from then on refuses requests
signed at or before the newest dropped timestamp: bounded memory never re-opens a replay.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from redis import Redis

from app.jobs import RedisOutage

_FALLBACK = "signed requests are checked for replays in each process"
#: Entries the in-process cache keeps (about 150 bytes each).
MAX_ENTRIES = 200_000


class ReplayCache:
    def __init__(
        self,
        redis: Redis | None,
        outage: RedisOutage | None = None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.max_entries = max_entries
        #: digest -> (request timestamp, unix time it may be forgotten), oldest first.
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()
        #: Requests signed at or before this timestamp can no longer be told apart: refused.
        self._floor = -1
        self._lock = threading.Lock()

    @staticmethod
    def key(key_id: str, signature: str) -> str:
        digest = hashlib.sha256(f"{key_id}\n{signature.strip().lower()}".encode()).hexdigest()
        return f"lapak:auth:replay:{digest[:40]}"

    def first_use(
        self, key_id: str, signature: str, timestamp: int, until: float, now: float
    ) -> bool:
        """Record the signature; False if it was seen before (a replay) within the window.

        ``until`` is the unix time after which the request's timestamp is out of the window.
        """
        key = self.key(key_id, signature)
        ttl = max(int(until - now) + 1, 1)
        redis = self.redis
        if redis is None:
            return self._first_use_here(key, timestamp, until, now)
        return self.outage.guarded(
            _FALLBACK,
            lambda: bool(redis.set(key, b"1", nx=True, ex=ttl)),
            lambda: self._first_use_here(key, timestamp, until, now),
        )

    def _first_use_here(self, key: str, timestamp: int, until: float, now: float) -> bool:
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen[1] >= now:
                return False
            if timestamp <= self._floor:
                return False
            self._seen[key] = (timestamp, until)
            self._seen.move_to_end(key)
            if len(self._seen) > self.max_entries:
                self._forget(now)
            return True

    def _forget(self, now: float) -> None:
        """Drop expired entries; if still over 90% full, the oldest ones (raising the floor).
        Down to 90% so that a full cache scans once per many inserts, not on every one."""
        for key in [k for k, (_, until) in self._seen.items() if until < now]:
            del self._seen[key]
        while len(self._seen) > self.max_entries * 9 // 10:
            _, (timestamp, _) = self._seen.popitem(last=False)
            self._floor = max(self._floor, timestamp)
