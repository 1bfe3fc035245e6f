"""Load balancer probes and the list of loaded modules."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from app.errors import RETRY_AFTER_SECONDS
from app.http import API_PREFIX, ProblemSchema, problem, problem_type
from app.openapi import needs_no_dependency

health = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness")
core = Blueprint("core", __name__, url_prefix=API_PREFIX, description="The core of Lapak")


class LiveSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "ok"})


class CheckSchema(ma.Schema):
    ok = ma.fields.Boolean()
    error = ma.fields.String(
        metadata={"description": "unreachable, failed, or not a replica; details are in the log"}
    )
    latency_ms = ma.fields.Float()
    mode = ma.fields.String()
    lag_bytes = ma.fields.Integer(
        allow_none=True,
        metadata={"description": "Replicas: WAL the primary has written and this has not replayed"},
    )
    lag_seconds = ma.fields.Float(
        allow_none=True,
        metadata={
            "description": "Replicas: seconds since the last replayed transaction; 0 when "
            "nothing is left to replay (an idle primary sends nothing, which is no lag)"
        },
    )


class ReadySchema(ma.Schema):
    status = ma.fields.String(
        validate=ma.validate.OneOf(("ok", "degraded")),
        metadata={
            "example": "ok",
            "description": "degraded: a replica is down and its reads go to the primary",
        },
    )
    detail = ma.fields.String(metadata={"description": "When degraded: the checks that failed"})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema))


class NotReadySchema(ProblemSchema):
    checks = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(CheckSchema),
        metadata={"description": "Each dependency's check, the failed ones with their error"},
    )


class ModuleSchema(ma.Schema):
    name = ma.fields.String()
    version = ma.fields.String()
    summary = ma.fields.String()
    depends = ma.fields.List(ma.fields.String())
    order = ma.fields.Integer(metadata={"description": "Position in the load order, from 0"})


class ModuleListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ModuleSchema))


@health.route("/live")
class Live(MethodView):
    @needs_no_dependency
    @health.response(200, LiveSchema)
    def get(self) -> dict[str, str]:
        """The process answers (no dependency is checked)."""
        return {"status": "ok"}


@health.route("/ready")
class Ready(MethodView):
    @health.response(200, ReadySchema)
    @health.alt_response(503, schema=NotReadySchema, description="The primary or Redis is down")
    def get(self) -> dict[str, Any] | Response:
        """The primary, every replica and Redis answer; a replica down only degrades the service.

        Reads fall back to the primary, so a failed replica gives 200 with ``"status":
        "degraded"`` naming it; a 503 problem names the primary or Redis when they are down.
        """
        checks = readiness_checks()
        down = sorted(name for name, check in checks.items() if not check["ok"])
        vital_down = [name for name in down if name in VITAL_CHECKS]
        if vital_down:
            return problem(
                503,
                "Not ready",
                f"unavailable: {', '.join(down)}",
                type_=problem_type("not-ready"),
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                checks=checks,
            )
        if down:
            detail = f"unavailable: {', '.join(down)} (reads use the primary)"
            return {"status": "degraded", "detail": detail, "checks": checks}
        return {"status": "ok", "checks": checks}


#: Without these nothing works; a replica down only moves its reads to the primary.
VITAL_CHECKS = frozenset({"primary", "redis"})


def readiness_checks() -> dict[str, dict[str, Any]]:
    """Each dependency's check, as ``/health/ready`` shows them: the primary, every replica
    (with its lag) and Redis (``{"ok": True, "mode": "embedded"}`` without one)."""
    checks = dict(current_app.extensions["lapak.db"].check())
    checks["redis"] = current_app.extensions["lapak.jobs"].check()
    return checks


def readiness_status(checks: dict[str, dict[str, Any]]) -> str:
    """``ok``, ``degraded`` (a replica down: reads use the primary) or ``not-ready``."""
    down = {name for name, check in checks.items() if not check["ok"]}
    if down & VITAL_CHECKS:
        return "not-ready"
    return "degraded" if down else "ok"


@core.route("/modules")
class Modules(MethodView):
    @needs_no_dependency
    @core.response(200, ModuleListSchema)
    def get(self) -> dict[str, Any]:
        """The loaded modules in load order, with their versions."""
        manifests = current_app.extensions["lapak.registry"].manifests
        return {
            "items": [
                {
                    "name": m.name,
                    "version": m.version,
                    "summary": m.summary,
                    "depends": list(m.depends),
                    "order": index,
                }
                for index, m in enumerate(manifests)
            ]
        }
