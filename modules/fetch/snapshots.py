"""The last good response of each feed: in Redis for every worker, in the database for good.

A snapshot is the body exactly as the source sent it (zlib-compressed) with when and from where
it was fetched, and its SHA-256, which tells a process whether the version it has already
cleaned is still the current one without moving the body.

Redis holds one hash per feed key (``lapak:fetch:feed:<key>``: ``source``, ``url``,
``fetched_at``, ``digest``, ``size``, ``body``) for ``LAPAK_FETCH_KEEP_SECONDS``; the
``fetch_feed_snapshot`` table holds the same, so a flushed or unreachable Redis, or the embedded
mode without one, still has the last good copy. A body read from the table is put back in Redis.
While Redis is down the table serves alone, with a warning now and then (not per request).
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import undefer

from app.db import Session, get_database
from app.jobs import RedisOutage

from .models import FeedSnapshot
from .sources import Feed

log = logging.getLogger(__name__)

#: Fast rather than small: a 45 MB feed compresses about 4x in ~0.3 s at level 1.
COMPRESSION_LEVEL = 1
_META_FIELDS = ("source", "url", "fetched_at", "digest", "size")


@dataclass(frozen=True)
class SnapshotInfo:
    """A kept snapshot, without its body."""

    key: str
    source: str
    url: str
    fetched_at: datetime
    digest: str
    size: int


def digest_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class SnapshotStore:
    def __init__(
        self, redis: Redis | None, keep_seconds: int, outage: RedisOutage | None = None
    ) -> None:
        self.redis = redis
        self.keep_seconds = keep_seconds
        self.outage = outage or RedisOutage()

    @staticmethod
    def redis_key(key: str) -> str:
        return f"lapak:fetch:feed:{key}"

    def info(self, key: str) -> SnapshotInfo | None:
        """The kept snapshot's description, from Redis, else from the database."""
        cached = self._redis_info(key)
        if cached is not None:
            return cached
        row = (
            Session()
            .execute(
                select(
                    FeedSnapshot.source,
                    FeedSnapshot.url,
                    FeedSnapshot.fetched_at,
                    FeedSnapshot.digest,
                    FeedSnapshot.size,
                ).where(FeedSnapshot.key == key)
            )
            .first()
        )
        if row is None:
            return None
        return SnapshotInfo(key, row.source, row.url, row.fetched_at, row.digest, row.size)

    def body(self, info: SnapshotInfo) -> bytes | None:
        """The body of exactly the snapshot ``info`` describes, or None if it was replaced."""
        compressed = self._redis_body(info)
        if compressed is None:
            row = (
                Session()
                .scalars(
                    select(FeedSnapshot)
                    .options(undefer(FeedSnapshot.body))
                    .where(FeedSnapshot.key == info.key, FeedSnapshot.digest == info.digest)
                )
                .first()
            )
            if row is None:
                return None
            compressed = row.body
            self._redis_put(info, compressed)
        return zlib.decompress(compressed)

    def save(self, feed: Feed, fetched_at: datetime, body: bytes) -> SnapshotInfo:
        """Keep ``body`` as the feed's last good response, in the database and in Redis."""
        info = SnapshotInfo(feed.key, feed.source, feed.url, fetched_at, digest_of(body), len(body))
        compressed = zlib.compress(body, COMPRESSION_LEVEL)
        values = {
            "key": info.key,
            "source": info.source,
            "url": info.url,
            "fetched_at": info.fetched_at,
            "digest": info.digest,
            "size": info.size,
            "body": compressed,
        }
        dialect = get_database().primary.dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(FeedSnapshot).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={name: statement.excluded[name] for name in values if name != "key"},
            # A slower fetch that finishes last must not replace a newer snapshot.
            where=FeedSnapshot.fetched_at <= statement.excluded.fetched_at,
        )
        # Its own transaction on the primary, whatever the caller's session is doing: the
        # snapshot is a fact about the source, and read-only views serve the feed.
        with get_database().primary.begin() as connection:
            connection.execute(statement)
        self._redis_put(info, compressed)
        return info

    # -- Redis --------------------------------------------------------------------------------

    def _redis_info(self, key: str) -> SnapshotInfo | None:
        redis = self.redis
        if redis is None:
            return None
        values = self.outage.guarded(
            "feeds are read from the database",
            lambda: redis.hmget(self.redis_key(key), _META_FIELDS),
            lambda: None,
        )
        if values is None or any(value is None for value in values):
            return None
        source, url, fetched_at, digest, size = (value.decode() for value in values)
        try:
            when, length = datetime.fromisoformat(fetched_at), int(size)
        except ValueError:
            return None  # written by another version: the database has it
        return SnapshotInfo(key, source, url, when, digest, length)

    def _redis_body(self, info: SnapshotInfo) -> bytes | None:
        redis = self.redis
        if redis is None:
            return None
        values = self.outage.guarded(
            "feeds are read from the database",
            lambda: redis.hmget(self.redis_key(info.key), ("digest", "body")),
            lambda: None,
        )
        if values is None:
            return None
        digest, body = values
        if body is None or digest is None or digest.decode() != info.digest:
            return None
        return body

    def _redis_put(self, info: SnapshotInfo, compressed: bytes) -> None:
        redis = self.redis
        if redis is None:
            return
        self.outage.guarded(
            "feeds are kept in the database only",
            lambda: self._put(redis, info, compressed),
            lambda: None,
        )

    def _put(self, redis: Redis, info: SnapshotInfo, compressed: bytes) -> None:
        name = self.redis_key(info.key)
        current = redis.hget(name, "fetched_at")
        try:
            if current is not None and datetime.fromisoformat(current.decode()) > info.fetched_at:
                return
        except ValueError:
            pass  # written by another version: replace it
        with redis.pipeline() as pipe:  # MULTI: a reader never sees half a snapshot
            pipe.hset(
                name,
                mapping={
                    "source": info.source,
                    "url": info.url,
                    "fetched_at": info.fetched_at.isoformat(),
                    "digest": info.digest,
                    "size": info.size,
                    "body": compressed,
                },
            )
            pipe.expire(name, self.keep_seconds)
            pipe.execute()
