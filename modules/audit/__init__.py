"""API logs, stored audit events and the system health report.

Every API request leaves one row (route template, method, status, latency, caller, IP, request
id; never a body, a query string or a credential), and every :func:`app.log.audit` line (logins,
lockouts, replaced sessions, revocations) one event. Both are written off the request path by a
batched writer (:mod:`modules.audit.writer`) and purged after the retention period.
"""

from datetime import timedelta

from app.registry import Manifest, ModuleHooks

manifest = Manifest(
    name="audit",
    version="0.1.0",
    summary="Stored API logs and audit events, retention, system health",
    depends=("user", "auth"),
    settings=(
        "audit_request_log",
        "audit_retention_days",
        "audit_flush_ms",
        "audit_batch_rows",
        "audit_backlog_rows",
        "audit_purge_batch_rows",
        "audit_health_cache_seconds",
    ),
)

#: How often the retention purge runs (it deletes in bounded batches until nothing is due).
PURGE_EVERY = timedelta(hours=1)


def load(hooks: ModuleHooks) -> None:
    from . import api, capture, config, services

    hooks.setup(config.install)
    hooks.scope(
        "audit:read",
        "Read the stored API logs: a seller's key, the calls of the seller's own keys",
        roles=("seller", "admin"),
    )
    hooks.request_observer(capture.observe_request)
    hooks.audit_sink(capture.keep_audit_event)
    hooks.blueprint(api.blp)
    hooks.blueprint(api.system, prefix="system")
    hooks.health_section("audit_log", capture.writer_figures)
    hooks.periodic(services.purge_expired, PURGE_EVERY)
