"""The live module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_LIVE_POLL_MS`` | ``500``: each process reads the outbox for new events this often |
| ``LAPAK_LIVE_HEARTBEAT_SECONDS`` | ``15``: a comment line on a quiet stream, so proxies and |
|   | clients keep it and a gone client is noticed; a write to a client that stopped |
|   | reading gives up after two heartbeats, and the stream ends |
| ``LAPAK_LIVE_SESSION_CHECK_SECONDS`` | ``5``: each process checks its streams' sessions this |
|   | often (one query for all) and ends those replaced, ended or expired |
| ``LAPAK_LIVE_STREAM_MAX_SECONDS`` | ``3600``: a stream ends after this long; the client |
|   | reconnects with ``Last-Event-ID`` |
| ``LAPAK_LIVE_GAP_TIMEOUT_SECONDS`` | ``30``: the longest the feed waits for an event id that |
|   | a transaction still running may commit, also where it starts (see :mod:`.outbox`) |

| ``LAPAK_LIVE_REPLAY_MAX_EVENTS`` | ``5000``: a client further behind (in event ids) gets |
|   | ``event: replay-truncated`` instead of a replay (see :mod:`.stream`) |
| ``LAPAK_LIVE_REPLAYS`` | ``4``: streams of a process that replay at once; the others wait |
| ``LAPAK_LIVE_STREAMS_PER_USER`` | ``5``: streams one user may hold open in one server |
|   | process (a few browser tabs); one more is a 429 with ``Retry-After`` |

How many streams a process serves at once is the core's ``LAPAK_WEB_STREAMS`` (under ``lapak
serve``, its stream process serves ``LAPAK_WEB_STREAMS`` x ``LAPAK_WEB_WORKERS``: each "process"
above is then that one process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

from app.config import Settings, module_int

if TYPE_CHECKING:
    from .hub import Hub


@dataclass(frozen=True)
class LiveSettings:
    poll_seconds: float
    heartbeat_seconds: int
    session_check_seconds: int
    stream_max_seconds: int
    gap_timeout_seconds: int
    streams_per_user: int
    replay_max_events: int
    replays: int

    @property
    def write_timeout_seconds(self) -> float:
        """How long a write to a stream's client may wait (see ``stream._bound_writes``)."""
        return 2 * self.heartbeat_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveSettings:
        env = settings.module_env
        return cls(
            poll_seconds=module_int(env, "live_poll_ms", 500, minimum=10) / 1000,
            heartbeat_seconds=module_int(env, "live_heartbeat_seconds", 15),
            session_check_seconds=module_int(env, "live_session_check_seconds", 5),
            stream_max_seconds=module_int(env, "live_stream_max_seconds", 3600),
            gap_timeout_seconds=module_int(env, "live_gap_timeout_seconds", 30),
            streams_per_user=module_int(env, "live_streams_per_user", 5),
            replay_max_events=module_int(env, "live_replay_max_events", 5000),
            replays=module_int(env, "live_replays", 4),
        )


def install(app: Flask, settings: Settings) -> None:
    from .hub import Hub
    from .stream import open_hosted, release_unsent

    live_settings = LiveSettings.from_settings(settings)
    hub = Hub(app, live_settings)
    app.extensions["live.settings"] = live_settings
    app.extensions["live.hub"] = hub
    streams = app.extensions["lapak.streams"]
    streams.on_stop(hub.close_all)
    streams.openers["live"] = open_hosted
    app.teardown_request(release_unsent)


def live_settings() -> LiveSettings:
    return current_app.extensions["live.settings"]


def hub() -> Hub:
    return current_app.extensions["live.hub"]
