"""Live updates: committed events reach browsers through Server-Sent Events.

``GET /api/v1/events/stream`` streams the outbox's events (``core_outbox_event``, committed
only) that the caller may see, each with its outbox id as the SSE id, so a reconnect with
``Last-Event-ID`` replays what was missed. One poller per process reads the outbox and fans out
to the streams it serves; each stream checks its session every few seconds and ends when the
session does.
"""

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="live",
    version="0.1.0",
    summary="Live updates: committed events streamed to browsers (Server-Sent Events)",
    depends=("user", "auth", "marketplace", "webhook"),
    settings=(
        "live_poll_ms",
        "live_heartbeat_seconds",
        "live_session_check_seconds",
        "live_stream_max_seconds",
        "live_gap_timeout_seconds",
        "live_streams_per_user",
        "live_replay_max_events",
        "live_replays",
    ),
)


def load(hooks: ModuleHooks) -> None:
    from . import api, config

    hooks.setup(config.install)
    hooks.blueprint(api.blp, prefix="events")
