"""What crosses the HTTP boundary: the filters of the two listings, their rows, the health
report."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma

from app.http import PageArgs, page_schema

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_INSTANT = re.compile(INSTANT_PATTERN)
_INSTANT_HELP = "an RFC 3339 date-time with its offset, like 2026-11-29T08:00:00+07:00"


class Instant(ma.fields.Field):
    """An RFC 3339 date-time with its offset (:data:`INSTANT_PATTERN`), loaded in UTC; one that
    UTC cannot hold (year 1 with a positive offset, year 9999 with a negative one) is refused
    here rather than by the database."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.setdefault("metadata", {})
        metadata.update({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN})
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _INSTANT.fullmatch(value):
            raise ma.ValidationError(_INSTANT_HELP)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return moment.astimezone(UTC)
        except ValueError:
            raise ma.ValidationError(_INSTANT_HELP) from None
        except OverflowError:
            raise ma.ValidationError("a time from 0001-01-01 to 9999-12-31 in UTC") from None


def _moment(description: str) -> Instant:
    return Instant(load_default=None, metadata={"description": description})


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
