"""The dashboard's system health panel for staff, from what the core exposes.

The full report (API traffic, latencies, the outbox backlog, uptime) is the audit module's
``GET /api/v1/system/health``; the dashboard does not depend on audit, so its panel shows what
the core itself knows: the readiness checks of ``/health/ready`` (the primary, each replica with
its lag, Redis), the job queues, and the sections modules add with ``hooks.health_section``
(webhook deliveries, the audit log's writer, ...). One source failing leaves the others shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app

from app.db import Session
from app.health import readiness_checks, readiness_status
from app.jobs import get_jobs


@dataclass(frozen=True)
class Check:
    """One dependency: ``primary``, a replica's name, or ``redis``."""

    name: str
    ok: bool
    #: What the check measured or why it failed, as the check words it (``latency_ms``...).
    facts: dict[str, Any]


@dataclass(frozen=True)
class Health:
    #: ``ok``, ``degraded`` (a replica down: its reads use the primary) or ``not-ready``.
    status: str
    checks: list[Check]
    #: Per queue its counts (queued, started, scheduled, failed), or ``{"error": ...}``.
    jobs: dict[str, Any]
    #: Each module's section (``hooks.health_section``), or ``{"error": ...}`` for one that
    #: could not be read.
    sections: dict[str, dict[str, Any]]


def system_health() -> Health:
    """The health panel now. Reads on the session's database (call it outside ``read_only``
    to read the primary's figures, as the audit report does)."""
    checks = readiness_checks()
    jobs = _guarded(lambda: get_jobs().figures().get("queues", {}))
    wiring = current_app.extensions["lapak.registry"].wiring
    return Health(
        status=readiness_status(checks),
        checks=[
            Check(name, bool(check.get("ok")), {k: v for k, v in check.items() if k != "ok"})
            for name, check in checks.items()
        ],
        jobs=jobs,
        sections={name: _guarded(figures) for name, figures in wiring.health_sections.items()},
    )


def _guarded(figures: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """``figures()``, or ``{"error": ...}`` naming what failed (Redis or a table unreachable)."""
    try:
        return dict(figures())
    except Exception as error:  # shown, not raised: the panel is for when things fail
        Session.remove()  # a failed statement leaves nothing behind for the next section
        return {"error": type(error).__name__}
