"""Reading feeds: fresh from the source, from the kept copy, or stale when the source is down.

:meth:`FeedService.snapshot` answers with a cleaned feed and how current it is:

1. the kept snapshot (:mod:`.snapshots`) while it is younger than ``LAPAK_FETCH_FRESH_SECONDS``;
2. otherwise the source, through the SSRF-safe client; a good answer replaces the kept copy;
3. if the source fails (5xx, timeout, unreachable, a body that is not a JSON list), the kept copy
   flagged ``stale`` with the reason, and the source is left alone for
   ``LAPAK_FETCH_RETRY_SECONDS`` (default 30) so an outage does not cost every request the whole
   timeout; without a kept copy, the failure itself (a 502 or 504 naming the source).

Cleaning a large feed takes a while, so each process keeps the cleaned form of the last few
feeds it served (:class:`PreparedFeed`), keyed by the body's digest: all workers share the kept
body through Redis, and each cleans a version once.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from flask import Flask, current_app
from redis import Redis

from app.config import Settings, module_int
from app.db import utcnow

from .cleaning import Cleaned, Listing, clean
from .client import (
    FetchPolicy,
    FetchResult,
    Resolver,
    SourceFailed,
    SourceTimeout,
    UnsafeUrl,
    fetch_json,
)
from .demo import DEMO_SETTING, DEMO_URL, read_demo_feed
from .snapshots import SnapshotInfo, SnapshotStore
from .sources import Feed, SourceSettings

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 30
#: Cleaned feeds kept per process; a cleaned 200k-row feed is roughly 150 MB.
PREPARED_FEEDS_KEPT = 4
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PreparedFeed:
    """A kept body, cleaned: listings newest first, with columns for fast filtering.

    The order is by listing time, newest first, then by uuid: total and stable, so a cursor
    (the last item's :meth:`sort_key`) finds its place again in any later version of the feed.
    """

    def __init__(self, info: SnapshotInfo, received: int, cleaned: Cleaned) -> None:
        self.info = info
        self.received = received
        self.cleaned = cleaned
        listings = cleaned.listings
        # Sorted by numpy on two key arrays: a Python sort of 200k key tuples is ~5x slower.
        listed = _micros_array(listing.listed_at for listing in listings)
        uuids = np.array([listing.uuid for listing in listings], dtype=str)
        order = np.lexsort((uuids, -listed))
        self.ordered: list[Listing] = [listings[i] for i in order.tolist()]
        self._newest_first = -listed[order]
        self._uuids = uuids[order]
        self._listed = listed[order]
        self._order = order
        self._columns: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()
        #: Results computed from this version (aggregates per grouping and rate).
        self.memo: dict[Any, Any] = {}

    @classmethod
    def from_rows(cls, info: SnapshotInfo, rows: list[Any]) -> PreparedFeed:
        return cls(info, len(rows), clean(rows))

    @staticmethod
    def sort_key(listing: Listing) -> tuple[int, str]:
        """The listing's place in :attr:`ordered`: (-microseconds since the epoch, uuid)."""
        return (-micros(listing.listed_at), listing.uuid)

    def position_after(self, key: tuple[int, str]) -> int:
        """The index in :attr:`ordered` of the first listing after ``key`` (a sort key)."""
        newest_first, uuid = key
        low = int(np.searchsorted(self._newest_first, newest_first, side="left"))
        high = int(np.searchsorted(self._newest_first, newest_first, side="right"))
        return low + int(np.searchsorted(self._uuids[low:high], uuid, side="right"))

    def columns(self) -> dict[str, np.ndarray]:
        """Filterable columns aligned with :attr:`ordered` (built on first use)."""
        with self._lock:
            if self._columns is None:
                listings = self.cleaned.listings
                self._columns = {
                    name: np.array([getattr(item, name) for item in listings], dtype=object)[
                        self._order
                    ]
                    for name in ("province", "city", "commodity")
                }
                self._columns["listed_at"] = self._listed
            return self._columns


def _micros_array(moments: Iterable[datetime]) -> np.ndarray:
    """Microseconds since the epoch of aware datetimes, as int64, exactly."""
    index = pd.DatetimeIndex(list(moments), dtype="datetime64[us, UTC]")
    return index.asi8.copy()


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (a float timestamp would round)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Snapshot:
    """A feed as served to one request."""

    feed: Feed
    info: SnapshotInfo
    prepared: PreparedFeed
    stale: bool
    #: Why the source was not used, when ``stale``.
    stale_reason: str | None = None

    @property
    def fetched_at(self) -> datetime:
        return self.info.fetched_at

    def age_seconds(self) -> int:
        return max(0, int((utcnow() - self.info.fetched_at).total_seconds()))


class FeedService:
    def __init__(
        self,
        settings: SourceSettings,
        policy: FetchPolicy,
        store: SnapshotStore,
        redis: Redis | None,
        retry_seconds: int = DEFAULT_RETRY_SECONDS,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.redis = redis
        self.retry_seconds = retry_seconds
        self.resolve = resolve
        self._prepared: OrderedDict[str, PreparedFeed] = OrderedDict()
        self._prepared_lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._down_until: dict[str, tuple[float, str]] = {}

    def snapshot(self, source: str | None, url: str | None = None) -> Snapshot:
        """The feed ``source`` (or the ad-hoc ``url`` read as it), cleaned; see the module doc."""
        feed = self.settings.feed(source, url)
        info = self.store.info(feed.key)
        if info is not None and self._fresh(info):
            return self._serve(feed, info)
        with self._fetch_lock(feed.key):
            info = self.store.info(feed.key)  # another thread may have fetched meanwhile
            if info is not None and self._fresh(info):
                return self._serve(feed, info)
            return self._fetch(feed, kept=info)

    def refresh_due(self) -> list[str]:
        """Fetch the configured sources whose kept copy is no longer fresh; returns their names.

        Only sources read at least once (they have a kept copy): a configured feed nobody uses
        is not polled.
        """
        refreshed = []
        for name in self.settings.sources:
            feed = self.settings.feed(name)
            info = self.store.info(feed.key)
            if info is None or self._fresh(info):
                continue
            try:
                snapshot = self.snapshot(name)
            except (SourceFailed, SourceTimeout) as failure:
                log.warning("feed %s: refresh failed (%s)", name, failure.detail)
                continue
            if not snapshot.stale:
                refreshed.append(name)
        return refreshed

    # -- steps --------------------------------------------------------------------------------

    def _fetch(self, feed: Feed, kept: SnapshotInfo | None) -> Snapshot:
        down = self._known_down(feed.key) if kept is not None else None
        if down is not None:
            return self._serve(feed, kept, stale_reason=down)  # type: ignore[arg-type]
        try:
            result = self._fetch_rows(feed)
        except (SourceFailed, SourceTimeout) as failure:
            reason = failure.detail or failure.title
            log.warning("feed %s: %s", feed.source, reason, extra={"feed_key": feed.key})
            if kept is None:
                raise self._with_hint(feed, failure) from None
            self._mark_down(feed.key, reason)
            return self._serve(feed, kept, stale_reason=reason)
        info = self.store.save(feed, utcnow(), result.content)
        prepared = self._remember(PreparedFeed.from_rows(info, result.data))
        return Snapshot(feed, info, prepared, stale=False)

    def _with_hint(
        self, feed: Feed, failure: SourceFailed | SourceTimeout
    ) -> SourceFailed | SourceTimeout:
        """``failure`` for a configured source with no kept copy, naming the setting to change."""
        if feed.adhoc:
            return failure  # the caller's own URL: nothing in the settings to change
        demo = self.settings.demo_source()
        if demo is not None and demo != feed.source:
            instead = f"or read the bundled demo feed with ?source={demo}"
        else:
            instead = f"or use the bundled demo feed: {DEMO_SETTING}"
        detail = (
            f"{failure.detail or failure.title} (the source {feed.source!r} is "
            f"{self.settings.shown_url(feed.source)}, and no earlier copy of it is kept); set "
            f"LAPAK_FETCH_SOURCES to a feed this server can reach, {instead}"
        )
        return type(failure)(detail, headers=failure.headers, **failure.extra)

    def _fetch_rows(self, feed: Feed) -> FetchResult:
        if feed.url == DEMO_URL:
            return read_demo_feed(feed.source)  # from the package: no network, no client
        # The URL's allow-list holds for each hop, in the client, as the address rules do.
        policy = replace(self.policy, allowed_hosts=feed.allowed_hosts)
        try:
            result = fetch_json(feed.source, feed.url, policy, resolve=self.resolve)
        except UnsafeUrl as refused:
            if feed.adhoc:
                raise  # the caller's URL: their mistake, a 422
            # A configured source that points or redirects somewhere forbidden has failed: the
            # caller could do nothing about it (a 502), and a kept copy can still be served.
            raise SourceFailed(refused.detail, source=feed.source) from None
        if not isinstance(result.data, list):
            raise SourceFailed(
                f"source {feed.source!r} returned a JSON {type(result.data).__name__}, "
                "not a list of rows",
                source=feed.source,
            )
        return result

    def _serve(self, feed: Feed, info: SnapshotInfo, stale_reason: str | None = None) -> Snapshot:
        prepared = self._recall(info)
        if prepared is None:
            body = self.store.body(info)
            if body is None:  # replaced between reading its info and its body: take the new one
                newer = self.store.info(feed.key)
                body = self.store.body(newer) if newer is not None else None
                if newer is None or body is None:
                    raise SourceFailed(
                        f"source {feed.source!r}: the kept copy changed while it was read; retry",
                        source=feed.source,
                    )
                info = newer
            prepared = self._remember(PreparedFeed.from_rows(info, json.loads(body)))
        stale = stale_reason is not None
        return Snapshot(feed, info, prepared, stale=stale, stale_reason=stale_reason)

    def _fresh(self, info: SnapshotInfo) -> bool:
        return (utcnow() - info.fetched_at).total_seconds() < self.settings.fresh_seconds

    # -- per-process memory -------------------------------------------------------------------

    def _recall(self, info: SnapshotInfo) -> PreparedFeed | None:
        with self._prepared_lock:
            prepared = self._prepared.get(info.key)
            if prepared is None or prepared.info.digest != info.digest:
                return None
            self._prepared.move_to_end(info.key)
            return prepared

    def _remember(self, prepared: PreparedFeed) -> PreparedFeed:
        with self._prepared_lock:
            self._prepared[prepared.info.key] = prepared
            self._prepared.move_to_end(prepared.info.key)
            while len(self._prepared) > PREPARED_FEEDS_KEPT:
                self._prepared.popitem(last=False)
        return prepared

    def _fetch_lock(self, key: str) -> threading.Lock:
        with self._prepared_lock:
            return self._fetch_locks.setdefault(key, threading.Lock())

    # -- outage memory, shared through Redis when there is one ---------------------------------

    def _down_key(self, key: str) -> str:
        return f"lapak:fetch:down:{key}"

    def _mark_down(self, key: str, reason: str) -> None:
        if self.retry_seconds <= 0:
            return

        def in_process() -> None:
            self._down_until[key] = (time.monotonic() + self.retry_seconds, reason)

        redis = self.redis
        if redis is None:
            in_process()
            return
        self.store.outage.guarded(
            _OUTAGES_IN_PROCESS,
            lambda: redis.set(self._down_key(key), reason, ex=self.retry_seconds),
            in_process,
        )

    def _known_down(self, key: str) -> str | None:
        def in_process() -> str | None:
            until, reason = self._down_until.get(key, (0.0, ""))
            return reason if time.monotonic() < until else None

        redis = self.redis
        if redis is None:
            return in_process()
        reason = self.store.outage.guarded(
            _OUTAGES_IN_PROCESS, lambda: redis.get(self._down_key(key)), in_process
        )
        return reason.decode() if isinstance(reason, bytes) else reason


#: What feeds do while Redis is down (logged now and then by the app's RedisOutage).
_OUTAGES_IN_PROCESS = "a failing source is remembered in this process only"


def install(app: Flask, settings: Settings) -> FeedService:
    """Build the feed service from settings into ``app.extensions["fetch.feeds"]``."""
    jobs = app.extensions["lapak.jobs"]
    redis = jobs.redis
    source_settings = SourceSettings.from_settings(settings)
    service = FeedService(
        source_settings,
        FetchPolicy.from_settings(settings),
        SnapshotStore(redis, source_settings.keep_seconds, jobs.outage),
        redis,
        retry_seconds=module_int(
            settings.module_env, "fetch_retry_seconds", DEFAULT_RETRY_SECONDS, 0
        ),
    )
    app.extensions["fetch.feeds"] = service
    return service


def feeds() -> FeedService:
    """The current app's feed service."""
    return current_app.extensions["fetch.feeds"]


def refresh_feeds() -> int:
    """Job: fetch the configured sources whose kept copy is no longer fresh."""
    return len(feeds().refresh_due())
