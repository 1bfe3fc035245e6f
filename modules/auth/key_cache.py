"""API keys' verification state cached in Redis for a few seconds, with tombstones.

What a signed request needs to know about its key (the key's scopes, expiry, revocation,
signature version, its sealed secret(s) and grace deadline, ``last_used_at``, and its owner's
id, role and active flag) is read from the primary on a miss and cached for ``ttl`` seconds
(``LAPAK_API_KEY_CACHE_SECONDS``; 0 disables the cache). Only the sealed secrets are cached, as
the database holds them; the opened ones stay in the process (``signed_requests._opened``).

A revocation, a roll and any change of the owner (role, active flag) replace the entry with a
tombstone after the change commits, in the same flow as the sessions' (:class:`SessionCache
<.services.SessionCache>`): a request racing with the change cannot cache the old state again,
because the state is only cached where no tombstone is. While Redis is down the tombstones
cannot be written: this process remembers them, never trusts the cache for those keys, and
writes them as soon as Redis answers. Other processes trust an entry cached before the outage at
most until it expires, ``ttl`` seconds after it was cached.

The read itself is not here: :mod:`.signed_requests` sends it in one Redis pipeline together
with the replay check (:meth:`ApiKeyCache.queue_get`), so a cached key costs one round trip.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from flask import current_app
from redis import Redis
from redis.client import Pipeline

from app.db import after_commit
from app.jobs import RedisOutage

TOMBSTONE = b"revoked"
# Cache the state unless a change left its tombstone there (atomically).
_SET_UNLESS_TOMBSTONE = """
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_FALLBACK = "signed requests read their key from the database"


@dataclass(frozen=True)
class KeyState:
    """What verifying a signed request needs of its key and owner (the secrets sealed)."""

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

    _TIMES = ("previous_expires_at", "expires_at", "last_used_at")

    def dumps(self) -> str:
        raw: dict[str, Any] = asdict(self)
        raw["user_uuid"] = str(self.user_uuid)
        for name in self._TIMES:
            value = raw[name]
            raw[name] = value.isoformat() if value is not None else None
        return json.dumps(raw)

    @classmethod
    def loads(cls, text: str | bytes) -> KeyState:
        raw = json.loads(text)
        raw["user_uuid"] = uuid.UUID(raw["user_uuid"])
        for name in cls._TIMES:
            if raw[name] is not None:
                raw[name] = datetime.fromisoformat(raw[name])
        return cls(**raw)

    def used_at(self, when: datetime) -> KeyState:
        return replace(self, last_used_at=when)


class ApiKeyCache:
    """Key states in Redis for ``ttl`` seconds; a no-op without Redis or with ``ttl`` 0."""

    def __init__(self, redis: Redis | None, ttl: int, outage: RedisOutage | None = None) -> None:
        self.redis = redis if ttl > 0 else None
        self.ttl = ttl
        self.outage = outage or RedisOutage()
        self._set = (
            self.redis.register_script(_SET_UNLESS_TOMBSTONE) if self.redis is not None else None
        )
        #: key id -> monotonic time after which a cached state of it has expired anyway.
        self._unwritten_tombstones: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    @staticmethod
    def key(key_id: str) -> str:
        return f"lapak:auth:api_key:{key_id}"

    def usable_for(self, key_id: str) -> bool:
        """Whether the cache may be read for ``key_id`` (no tombstone of it is still owed)."""
        if not self._unwritten_tombstones:
            return True  # the usual case, without a lock
        return self._write_unwritten_tombstones() and key_id not in self._unwritten_tombstones

    def queue_get(self, pipe: Pipeline, key_id: str) -> None:
        """Add the read of ``key_id``'s entry to ``pipe``; its reply goes to :meth:`state_of`."""
        pipe.get(self.key(key_id))

    @staticmethod
    def state_of(reply: bytes | None) -> KeyState | None:
        """The cached state in a reply of :meth:`queue_get` (None: a miss or a tombstone)."""
        if reply is None or reply == TOMBSTONE:
            return None
        try:
            return KeyState.loads(reply)
        except (ValueError, KeyError, TypeError):
            return None  # an entry of another version: read the database

    def put(self, state: KeyState) -> None:
        """Cache ``state`` unless a tombstone of its key is there (or still owed)."""
        script = self._set
        if script is None or not self.usable_for(state.key_id):
            return
        args = [state.dumps(), self.ttl, TOMBSTONE]
        self.outage.guarded(
            _FALLBACK, lambda: script(keys=[self.key(state.key_id)], args=args), lambda: None
        )

    def invalidate(self, key_ids: Iterable[str]) -> None:
        """Replace the entries of ``key_ids`` with tombstones (call after the change commits)."""
        if self.redis is None:
            return
        # The tombstone outlives any state a racing request could still try to cache.
        deadline = time.monotonic() + self.ttl * 3
        with self._lock:
            self._unwritten_tombstones.update(dict.fromkeys(key_ids, deadline))
        self._write_unwritten_tombstones()

    def _unwritten(self) -> dict[str, float]:
        with self._lock:
            now = time.monotonic()
            for key_id in [k for k, until in self._unwritten_tombstones.items() if until <= now]:
                del self._unwritten_tombstones[key_id]
            return dict(self._unwritten_tombstones)

    def _write_unwritten_tombstones(self) -> bool:
        """Write the tombstones still owed to Redis; whether that worked (or none was owed)."""
        redis, owed = self.redis, self._unwritten()
        if redis is None or not owed:
            return True
        now = time.monotonic()

        def write() -> bool:
            pipe = redis.pipeline(transaction=False)
            for key_id, until in owed.items():
                pipe.set(self.key(key_id), TOMBSTONE, ex=max(math.ceil(until - now), 1))
            pipe.execute()
            return True

        written = self.outage.guarded(
            "changed API keys are read from the database by this process until Redis answers",
            write,
            lambda: False,
        )
        if written:
            with self._lock:
                for key_id, until in owed.items():
                    if self._unwritten_tombstones.get(key_id) == until:
                        del self._unwritten_tombstones[key_id]
        return written


def forget_after_commit(key_ids: Iterable[str]) -> None:
    """Tombstone the cached states of ``key_ids`` once the current transaction commits."""
    cache: ApiKeyCache = current_app.extensions["auth"].key_cache
    after_commit(functools.partial(cache.invalidate, list(key_ids)))
