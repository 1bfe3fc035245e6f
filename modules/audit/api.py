"""``/api/v1/audit``: the API log and audit events; ``/api/v1/system/health``.

Listings run inside ``@read_only()`` on a caught-up replica, as every listing; the health report
reads the primary (the outbox and the last minute's requests as they are now).
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.security import authenticate, requires

from . import health, services
from .schemas import (
    AuditEventPageSchema,
    EventQuerySchema,
    HealthSchema,
    RequestLogPageSchema,
    RequestQuerySchema,
)

blp = Blueprint("audit", __name__, description="Stored API logs and audit events")
system = Blueprint("system", __name__, description="System health for staff and admins")


@blp.route("/requests")
class Requests(MethodView):
    @requires("admin", "seller", scope="audit:read")
    @read_only()
    @blp.arguments(RequestQuerySchema, location="query")
    @blp.response(200, RequestLogPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List API requests, newest first

        Admins see every request and may filter by time, status, route template, method,
        user and API key; sellers see the calls made with their own API keys. A row never holds
        a body, a query string or a credential.
        """
        filters = services.RequestFilter(
            since=args["since"],
            before=args["before"],
            status=args["status"],
            route=args["route"],
            method=args["method"],
            user=args["user"],
            api_key=args["api_key"],
        )
        page = services.list_requests(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/events")
class Events(MethodView):
    @requires("admin")
    @read_only()
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, AuditEventPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List audit events (logins, lockouts, replaced sessions, revocations), newest first"""
        filters = services.EventFilter(
            since=args["since"], before=args["before"], event=args["event"], outcome=args["outcome"]
        )
        page = services.list_events(filters, limit=args["limit"], cursor=args["cursor"])
        return {"items": page.items, "next_cursor": page.next_cursor}


@system.route("/health")
class SystemHealth(MethodView):
    @requires("staff", "admin")
    @system.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """The system's health: readiness, traffic, errors, latency, backlogs

        Uptime, version and modules of the answering process; the readiness checks and replica
        lag; requests, 4xx and 5xx rates and p50/p95 latency over the last hour and day (from
        the API log); the outbox backlog and its oldest event's age; queue depths and failed
        jobs; and the sections other modules add.
        """
        return health.system_health()
