"""The audit module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_AUDIT_REQUEST_LOG`` | ``on``: store a row per API request (``off``: none) |
| ``LAPAK_AUDIT_RETENTION_DAYS`` | ``30``: rows and events older than this are purged |
| ``LAPAK_AUDIT_FLUSH_MS`` | ``500``: the writer writes at least this often |
| ``LAPAK_AUDIT_BATCH_ROWS`` | ``500``: ... or as soon as this many rows wait, in one INSERT |
| ``LAPAK_AUDIT_BACKLOG_ROWS`` | ``50000``: rows kept per process while the database is down; |
|   | beyond, new rows are dropped and counted |
| ``LAPAK_AUDIT_PURGE_BATCH_ROWS`` | ``5000``: rows deleted per purge statement |
| ``LAPAK_AUDIT_HEALTH_CACHE_SECONDS`` | ``15``: a process answers ``/system/health`` with the |
|   | report it made at most this long ago (``0``: a fresh report every time) |
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, current_app

from app.config import Settings, SettingsError, module_int


@dataclass(frozen=True)
class AuditSettings:
    request_log: bool
    retention_days: int
    flush_ms: int
    batch_rows: int
    backlog_rows: int
    purge_batch_rows: int
    health_cache_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditSettings:
        env = settings.module_env
        switch = env.get("audit_request_log", "on").strip().lower()
        if switch not in ("on", "off", "true", "false", "1", "0"):
            raise SettingsError(f"LAPAK_AUDIT_REQUEST_LOG must be on or off, not {switch!r}")
        batch_rows = module_int(env, "audit_batch_rows", 500)
        backlog_rows = module_int(env, "audit_backlog_rows", 50_000)
        if backlog_rows < batch_rows:
            raise SettingsError(
                f"LAPAK_AUDIT_BACKLOG_ROWS must be at least LAPAK_AUDIT_BATCH_ROWS ({batch_rows})"
            )
        return cls(
            request_log=switch in ("on", "true", "1"),
            retention_days=module_int(env, "audit_retention_days", 30),
            flush_ms=module_int(env, "audit_flush_ms", 500, minimum=10),
            batch_rows=batch_rows,
            backlog_rows=backlog_rows,
            purge_batch_rows=module_int(env, "audit_purge_batch_rows", 5000),
            health_cache_seconds=module_int(env, "audit_health_cache_seconds", 15, minimum=0),
        )


def install(app: Flask, settings: Settings) -> None:
    from .writer import BatchWriter

    audit_settings = AuditSettings.from_settings(settings)
    app.extensions["audit.settings"] = audit_settings
    app.extensions["audit.started"] = time.monotonic()
    database = app.extensions["lapak.db"]
    app.extensions["audit.writer"] = BatchWriter(
        database,
        flush_seconds=audit_settings.flush_ms / 1000,
        batch_rows=audit_settings.batch_rows,
        backlog_rows=audit_settings.backlog_rows,
    )
    writer = app.extensions["audit.writer"]
    # Called by whoever ends the app before its process does (the tests' fixtures).
    app.extensions.setdefault("lapak.closers", []).append(writer.close)
    # Called after each job by RQ's work horse, which exits without running atexit.
    app.extensions.setdefault("lapak.flushers", []).append(writer.flush)


def audit_settings() -> AuditSettings:
    return current_app.extensions["audit.settings"]
