"""What crosses the HTTP boundary: the filters of the two listings, their rows, the health
report."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma

from app.http import PageArgs, page_schema

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _moment(description: str) -> ma.fields.AwareDateTime:
    return ma.fields.AwareDateTime(
        default_timezone=UTC, load_default=None, metadata={"description": description}
    )


class RequestQuerySchema(PageArgs):
    since = _moment("Requests answered at or after this time (RFC 3339)")
    before = _moment("Requests answered before this time (RFC 3339)")
    status = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=100, max=599))
    route = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=200),
        metadata={
            "description": "The route template, as rows show it",
            "example": "/api/v1/marketplace/orders/<uuid:order_id>",
        },
    )
    method = ma.fields.String(load_default=None, validate=ma.validate.OneOf(METHODS))
    user = ma.fields.UUID(
        load_default=None, metadata={"description": "Admins: the calling user's id"}
    )
    api_key = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "The calling API key's public id", "example": "lpk_3f9a..."},
    )


class RequestLogSchema(ma.Schema):
    at = ma.fields.AwareDateTime(metadata={"description": "When the answer was sent"})
    route = ma.fields.String(metadata={"description": "Route template; never the raw path"})
    method = ma.fields.String()
    status = ma.fields.Integer()
    latency_ms = ma.fields.Float()
    user = ma.fields.UUID(allow_none=True, metadata={"description": "The calling user, if any"})
    api_key_id = ma.fields.String(
        allow_none=True, metadata={"description": "The API key that signed it, if one did"}
    )
    ip = ma.fields.String(allow_none=True)
    request_id = ma.fields.String(allow_none=True)


class EventQuerySchema(PageArgs):
    since = _moment("Events at or after this time (RFC 3339)")
    before = _moment("Events before this time (RFC 3339)")
    event = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"example": "auth.login"},
    )
    outcome = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"example": "failure"},
    )


class AuditEventSchema(ma.Schema):
    at = ma.fields.AwareDateTime()
    event = ma.fields.String(metadata={"example": "auth.login"})
    outcome = ma.fields.String(metadata={"example": "locked"})
    actor = ma.fields.UUID(
        allow_none=True, metadata={"description": "The authenticated caller who caused it"}
    )
    ip = ma.fields.String(allow_none=True)
    request_id = ma.fields.String(allow_none=True)
    fields = ma.fields.Dict(
        metadata={"description": "What the event says (never a password, token or signature)"}
    )


RequestLogPageSchema = page_schema(RequestLogSchema)
AuditEventPageSchema = page_schema(AuditEventSchema)


class WindowSchema(ma.Schema):
    requests = ma.fields.Integer()
    client_errors = ma.fields.Integer(metadata={"description": "4xx answers"})
    server_errors = ma.fields.Integer(metadata={"description": "5xx answers"})
    client_error_rate = ma.fields.Float(allow_none=True)
    server_error_rate = ma.fields.Float(allow_none=True)
    latency_p50_ms = ma.fields.Float(allow_none=True)
    latency_p95_ms = ma.fields.Float(allow_none=True)


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "ok, degraded or not-ready"})
    version = ma.fields.String()
    uptime_seconds = ma.fields.Float(metadata={"description": "Of the process that answered"})
    modules = ma.fields.List(ma.fields.Dict())
    checks = ma.fields.Dict(metadata={"description": "The readiness checks of /health/ready"})
    replicas = ma.fields.Dict(metadata={"description": "Per replica: ok, lag_bytes, lag_seconds"})
    requests = ma.fields.Dict(
        metadata={
            "description": "last_hour and last_day from the API log: counts, 4xx and 5xx rates, "
            "p50 and p95 latency in ms (or error when they cannot be read)"
        }
    )
    outbox = ma.fields.Dict(metadata={"description": "pending, failed, oldest_pending_age_seconds"})
    jobs = ma.fields.Dict(
        metadata={
            "description": "Per queue: queued, started, scheduled, failed (RQ registries; "
            "the in-process runner's figures without Redis)"
        }
    )
    sections = ma.fields.Dict(
        metadata={"description": "Sections added by modules (hooks.health_section)"}
    )
