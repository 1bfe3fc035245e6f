"""``GET /api/v1/events/stream``: the caller's live events as Server-Sent Events."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from app.http import ProblemSchema
from app.security import authenticate, requires

from . import stream
from .schemas import StreamHeadersSchema, StreamQuerySchema

blp = Blueprint(
    "live",
    __name__,
    description="Live updates: committed events as Server-Sent Events, filtered by what the "
    "caller may see, resumable with Last-Event-ID.",
)

EXAMPLE = (
    "retry: 2000\nid: 41\n\n"
    "id: 42\nevent: order.confirmed\n"
    'data: {"id":"0b3e...","type":"order.confirmed","time":"2026-05-04T10:15:02.120000+00:00",'
    '"payload":{"order":"7c1d...","name":"SO/2026/00042","state":"sale"}}\n\n'
    ": heartbeat\nid: 45\n\n"
)


#: One message of the stream, as EventSource hands it over (comments and bare ids are not
#: messages): its ``data`` is JSON, an event's or the reason a session ended.
STREAM_MESSAGE = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "description": "The event's type (order.confirmed ...), session-ended or "
            "replay-truncated",
        },
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The outbox id"},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["id", "type", "time", "payload"],
                        "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "type": {"type": "string"},
                            "time": {"type": "string", "format": "date-time"},
                            "payload": {"type": "object"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["after", "until", "detail"],
                        "properties": {
                            "after": {"type": "string", "pattern": "^[0-9]+$"},
                            "until": {"type": "string", "pattern": "^[0-9]+$"},
                            "detail": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["reason", "detail"],
                        "properties": {
                            "reason": {"type": "string", "example": "session-replaced"},
                            "detail": {"type": "string"},
                        },
                    },
                ]
            },
        },
    },
}


@blp.route("/stream")
class EventStream(MethodView):
    @requires(browser=True)
    @blp.arguments(StreamQuerySchema, location="query")
    @blp.arguments(StreamHeadersSchema, location="headers")
    @blp.response(
        200,
        STREAM_MESSAGE,
        content_type=stream.MIMETYPE,
        description="An endless text/event-stream: per event `id:` (the outbox id), `event:` "
        "(its type) and `data:` (JSON: id, type, time, payload); a `: heartbeat` comment with "
        "the position as `id:` when quiet; `event: session-ended` (data: reason, detail) before "
        "it closes because the session was replaced, ended or expired; `event: "
        "replay-truncated` (data: after, until, detail) instead of a replay for a client more "
        "than LAPAK_LIVE_REPLAY_MAX_EVENTS behind: reload what you show.",
        example=EXAMPLE,
    )
    @blp.alt_response(
        429,
        schema=ProblemSchema,
        description="You hold as many streams on this server as one user may "
        "(LAPAK_LIVE_STREAMS_PER_USER): close one (a browser tab); see Retry-After",
    )
    @blp.alt_response(
        503,
        schema=ProblemSchema,
        description="The database is down, the server's stream process is not answering "
        "(stream-process-down), or the server serves as many streams as it may "
        "(LAPAK_WEB_STREAMS: streams-full); see Retry-After",
    )
    def get(self, query: dict[str, Any], headers: dict[str, Any]) -> Response:
        """Stream the events you may see

        Admins get every committed event, staff every one but users, imports and webhook
        endpoints (as REST shows them); a seller those about their own sales, settlements and
        webhook endpoints; a customer those of their own orders, invoices, payments and refunds.
        Logged-in browsers use their session cookie (EventSource), other clients a bearer
        token; API keys are not accepted (programs get webhooks). The stream ends after an hour
        (reconnect with Last-Event-ID), and for good when the session does.
        """
        last_event_id = headers.get("last_event_id")
        if last_event_id is None:
            last_event_id = query.get("last_event_id")
        return stream.open_stream(authenticate(), last_event_id)
