"""The replay store of signed requests: each signature is accepted once within its window.

A signed request stays valid until its ``X-Timestamp`` leaves the window, so its signature is
remembered until then, by a digest of the key id and the signature:

* with Redis, ``SET NX EX`` (shared by every process);
* without Redis (the embedded default: several worker processes on one SQLite file) and while
  Redis is down, a row in ``auth_api_replay``: an ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in
  its own short transaction, accepted only if it inserted the row. Expired rows are purged
  periodically (:func:`forget_expired`).

The two stores must not open a replay across an outage:

* Signatures accepted through the database (during an outage, in any process) are read back
  on every request: the key's row is loaded together with whether the digest is in
  ``auth_api_replay`` (one statement, no extra round trip), so after Redis comes back a replay
  of them is refused too.
* Signatures Redis accepted before the outage cannot be read while it is down. So while this
  process finds Redis down it refuses requests signed at or before the moment it noticed the
  outage (:data:`BEFORE_OUTAGE`; clients sign again with the current time), and a
  forward-dated request (``X-Timestamp`` after the server's clock) accepted through Redis is
  written to the database as well, since it could still be replayed after that moment.

What this does not cover: processes that disagree about Redis for a long time (a network
partition between some workers and Redis while others still reach it). A request accepted by a
worker that reaches Redis, signed after another worker lost it, can be replayed once to the
latter.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from redis import Redis
from sqlalchemy import Engine, delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import get_database, utcnow
from app.jobs import RedisOutage

from .models import ApiReplay

_FALLBACK = "signed requests are checked for replays in the database"

Verdict = Literal["first", "replayed", "before-outage"]
FIRST: Verdict = "first"
REPLAYED: Verdict = "replayed"
#: Signed before this process noticed Redis was down: Redis may have accepted it already.
BEFORE_OUTAGE: Verdict = "before-outage"


def digest(key_id: str, signature: str) -> str:
    """What is remembered of a signed request (hex SHA-256; the signature is not stored)."""
    return hashlib.sha256(f"{key_id}\n{signature.strip().lower()}".encode()).hexdigest()


def _primary() -> Engine:
    return get_database().primary


class ReplayStore:
    def __init__(
        self,
        redis: Redis | None,
        outage: RedisOutage | None = None,
        primary: Callable[[], Engine] = _primary,
    ) -> None:
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.primary = primary
        #: Unix time at which this process found Redis down (None while it answers).
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @staticmethod
    def key(digest: str) -> str:
        return f"lapak:auth:replay:{digest[:40]}"

    def first_use(self, digest: str, timestamp: int, until: float, now: float) -> Verdict:
        """Record the signature's ``digest``: whether this is its first use.

        ``until`` is the unix time after which the request's timestamp is out of the window;
        ``now`` the server's unix time.
        """
        redis = self.redis
        if redis is None:
            return self._insert(digest, until)
        return self.outage.guarded(
            _FALLBACK,
            lambda: self._on_redis(redis, digest, timestamp, until, now),
            lambda: self._during_outage(digest, timestamp, until, now),
        )

    def _on_redis(
        self, redis: Redis, digest: str, timestamp: int, until: float, now: float
    ) -> Verdict:
        first = redis.set(self.key(digest), b"1", nx=True, ex=max(int(until - now) + 1, 1))
        self._down_since = None
        if not first:
            return REPLAYED
        if timestamp > now:
            # Forward-dated: it stays valid past an outage that starts now; the database keeps
            # it too (its "signed before the outage" check would not cover it).
            return self._insert(digest, until)
        return FIRST

    def _during_outage(self, digest: str, timestamp: int, until: float, now: float) -> Verdict:
        with self._lock:
            if self._down_since is None:
                self._down_since = now
            down_since = self._down_since
        if timestamp <= down_since:
            return BEFORE_OUTAGE
        return self._insert(digest, until)

    def _insert(self, digest: str, until: float) -> Verdict:
        engine = self.primary()
        table = ApiReplay.__table__
        row = {"digest": digest, "expires_at": datetime.fromtimestamp(until, UTC)}
        insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(table)
            .values(row)
            .on_conflict_do_nothing(index_elements=["digest"])
            .returning(table.c.digest)  # a row back only if inserted (rowcount is not reliable)
        )
        # Its own short transaction: committed before the view runs, so a concurrent use in
        # another process conflicts with it (or waits for it and then conflicts).
        with engine.begin() as connection:
            inserted = connection.execute(statement).first() is not None
        return FIRST if inserted else REPLAYED


def forget_expired() -> int:
    """Job: delete the replay rows whose requests are out of the window (their timestamp
    check refuses them anyway); how many."""
    table = ApiReplay.__table__
    with get_database().primary.begin() as connection:
        return connection.execute(delete(table).where(table.c.expires_at < utcnow())).rowcount
