"""What the event stream reads from a request: where the client wants to resume."""

from __future__ import annotations

import marshmallow as ma

#: Outbox ids are the table's integer keys.
MAX_EVENT_ID = 2**63 - 1

_RESUME = (
    "Resume after this event id (the SSE id of the last event received): every event after it "
    "that you may see is sent first. Without it the stream starts now."
)


class StreamQuerySchema(ma.Schema):
    last_event_id = ma.fields.Integer(
        validate=ma.validate.Range(min=0, max=MAX_EVENT_ID),
        metadata={"description": f"{_RESUME} For clients that cannot set the header; the "
                  "Last-Event-ID header wins."},
    )  # fmt: skip


class StreamHeadersSchema(ma.Schema):
    last_event_id = ma.fields.Integer(
        data_key="Last-Event-ID",
        validate=ma.validate.Range(min=0, max=MAX_EVENT_ID),
        metadata={"description": f"{_RESUME} Browsers send it by themselves on a reconnect."},
    )
