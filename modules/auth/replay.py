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

With the key cache (:mod:`.key_cache`) a request whose key is cached reads no database at all,
so the first rule needs help. The outage rule: a process that fell back to the database for a
signed request while Redis was down owes Redis a marker, ``lapak:auth:replay:outage``; it writes
it as soon as Redis answers again (first in its next signed request's pipeline, ahead of that
request's own read of the marker; else from a timer that tries every second), with a TTL of twice
the signing window (a forward-dated request accepted during the outage stays valid that long);
it stops trying once that long has passed since its last fallback. Every signed request reads
the marker in the same pipeline as its key and its ``SET NX``; while the marker exists, a request
whose key came from the cache also checks ``auth_api_replay`` (one extra read, only in that
window). A miss reads the table anyway.

What this does not cover: processes that disagree about Redis for a long time (a network
partition between some workers and Redis while others still reach it). A request accepted by a
worker that reaches Redis, signed after another worker lost it, can be replayed once to the
latter. Nor a process that accepted signatures through the database and ended before Redis
came back: its marker is never written (the digests stay in the database, read on cache misses).
Nor the moment between Redis answering again and the marker landing (about a second, from the
timer): a process that saw no outage itself and finds the key cached trusts Redis alone then.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from redis import Redis, RedisError
from redis.client import Pipeline
from sqlalchemy import Engine, delete, exists, select
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


#: Exists while signatures accepted through the database (during an outage) may be replayed.
OUTAGE_MARKER = "lapak:auth:replay:outage"
#: How often a process that owes the marker tries to write it while no request comes.
MARKER_RETRY_SECONDS = 1.0


class ReplayStore:
    def __init__(
        self,
        redis: Redis | None,
        outage: RedisOutage | None = None,
        primary: Callable[[], Engine] = _primary,
        window_seconds: int = 300,
    ) -> None:
        self.redis = redis
        self.outage = outage or RedisOutage()
        self.primary = primary
        #: The outage marker lives this long: a request accepted now stays valid at most two
        #: windows (its timestamp may be a window ahead).
        self.marker_seconds = 2 * window_seconds + 1
        #: Unix time at which this process found Redis down (None while it answers).
        self._down_since: float | None = None
        #: Monotonic time until which this process owes Redis the outage marker (None: owes
        #: nothing): it checked signed requests in the database while Redis was down.
        self._marker_owed_until: float | None = None
        self._marker_timer: threading.Timer | None = None
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

    # --- the replay check inside another pipeline (the key cache's) --------------------------

    def queue(self, pipe: Pipeline, digest: str, until: float, now: float) -> bool:
        """Add the ``SET NX`` of ``digest`` and the read of the outage marker to ``pipe``
        (after writing the marker if this process owes it); whether the marker is written.
        Hand the pipeline's replies from here on to :meth:`answered`."""
        owed = self._marker_owed()
        if owed:
            pipe.set(OUTAGE_MARKER, b"1", ex=self.marker_seconds)
        pipe.set(self.key(digest), b"1", nx=True, ex=max(int(until - now) + 1, 1))
        pipe.exists(OUTAGE_MARKER)
        return owed

    def answered(self, replies: list[Any], wrote_marker: bool) -> tuple[bool, bool]:
        """Redis answered :meth:`queue`'s commands: (first use there, the marker exists)."""
        self._down_since = None
        if wrote_marker:
            self._marker_written()
        offset = 1 if wrote_marker else 0
        return bool(replies[offset]), bool(replies[offset + 1])

    def accepted_on_redis(self, digest: str, timestamp: int, until: float, now: float) -> Verdict:
        """The request passed every check and Redis had not seen ``digest``: keep a
        forward-dated one in the database too (see :meth:`_on_redis`)."""
        if timestamp > now:
            return self._insert(digest, until)
        return FIRST

    def seen_in_database(self, digest: str) -> bool:
        """Whether ``digest`` was accepted through the database (read while the marker lives)."""
        table = ApiReplay.__table__
        with self.primary().connect() as connection:
            if connection.dialect.name == "postgresql":
                # One statement: a transaction would add nothing but a ROLLBACK round trip.
                connection.execution_options(isolation_level="AUTOCOMMIT")
            return bool(connection.scalar(select(exists().where(table.c.digest == digest))))

    def forget(self, digest: str) -> None:
        """Best effort: a request refused after its ``SET NX`` does not use up its signature
        (a client may send it again after a 503)."""
        redis = self.redis
        if redis is not None:
            self.outage.guarded(_FALLBACK, lambda: redis.delete(self.key(digest)), lambda: 0)

    # --- Redis and the database --------------------------------------------------------------

    def _on_redis(
        self, redis: Redis, digest: str, timestamp: int, until: float, now: float
    ) -> Verdict:
        pipe = redis.pipeline(transaction=False)
        wrote_marker = self.queue(pipe, digest, until, now)
        first, _ = self.answered(pipe.execute(), wrote_marker)
        if not first:
            return REPLAYED
        return self.accepted_on_redis(digest, timestamp, until, now)

    def _during_outage(self, digest: str, timestamp: int, until: float, now: float) -> Verdict:
        with self._lock:
            if self._down_since is None:
                self._down_since = now
            down_since = self._down_since
        # Whatever the verdict: this process (or another) may accept signatures through the
        # database now, and a process that saw the outage protects itself on its next request.
        self._owe_marker()
        if timestamp <= down_since:
            return BEFORE_OUTAGE
        return self._insert(digest, until)

    # --- the outage marker -------------------------------------------------------------------

    def _owe_marker(self) -> None:
        with self._lock:
            self._marker_owed_until = time.monotonic() + self.marker_seconds
            if self._marker_timer is None:
                self._schedule_marker_locked()

    def _marker_owed(self) -> bool:
        until = self._marker_owed_until
        if until is None:
            return False
        if time.monotonic() >= until:
            self._marker_owed_until = None  # every request it stood for is out of the window
            return False
        return True

    def _marker_written(self) -> None:
        with self._lock:
            self._marker_owed_until = None

    def close(self) -> None:
        """Stop the marker's timer (the app is ending; a process that ends owes nothing)."""
        with self._lock:
            timer, self._marker_timer = self._marker_timer, None
            self._marker_owed_until = None
        if timer is not None:
            timer.cancel()

    def _schedule_marker_locked(self) -> None:
        timer = threading.Timer(MARKER_RETRY_SECONDS, self._write_marker_later)
        timer.daemon = True
        self._marker_timer = timer
        timer.start()

    def _write_marker_later(self) -> None:
        """Timer: write the owed marker as soon as Redis answers, even if no request comes.

        Tried every second on its own (not through the shared outage state, which waits a
        failure out for seconds): the sooner the marker is there, the shorter the time in which
        a process that did not see the outage trusts its cache alone.
        """
        redis = self.redis
        if redis is not None and self._marker_owed():
            try:
                redis.set(OUTAGE_MARKER, b"1", ex=self.marker_seconds)
            except RedisError:
                pass  # still down: try again in a second
            else:
                self._marker_written()
        with self._lock:
            if self._marker_timer is None:
                return  # closed meanwhile
            self._marker_timer = None
            if self._marker_owed():
                self._schedule_marker_locked()

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
