"""What crosses the HTTP boundary of ``/api/v1/webhooks``."""

from __future__ import annotations

import marshmallow as ma

from app.http import JsonBoolean, PageArgs, page_schema

from .audience import EVENT_AUDIENCE
from .models import DELIVERY_STATES

URL_LENGTH = 2000
EVENT_TYPES_HELP = (
    "Event types to receive (empty: every event you may see). Sellers may choose among "
    "the order, invoice, payment, payment_link, refund, settlement and webhook_endpoint "
    "events; admins among all: " + ", ".join(sorted(EVENT_AUDIENCE))
)


class EndpointCreateSchema(ma.Schema):
    url = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=URL_LENGTH),
        metadata={"description": "http(s) URL on a public address; redirects are not followed"},
    )
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))
    event_types = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=100)),
        load_default=list,
        validate=ma.validate.Length(max=len(EVENT_AUDIENCE)),
        metadata={"description": EVENT_TYPES_HELP},
    )
    enabled = JsonBoolean(load_default=True)


class EndpointUpdateSchema(ma.Schema):
    url = ma.fields.String(validate=ma.validate.Length(min=1, max=URL_LENGTH))
    description = ma.fields.String(validate=ma.validate.Length(max=500))
    event_types = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=100)),
        validate=ma.validate.Length(max=len(EVENT_AUDIENCE)),
        metadata={"description": EVENT_TYPES_HELP},
    )
    enabled = JsonBoolean(metadata={"description": "Enabling clears the failure record"})


class EndpointSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    owner = ma.fields.UUID(attribute="owner.uuid", metadata={"description": "The owner's id"})
    url = ma.fields.String()
    description = ma.fields.String()
    event_types = ma.fields.List(ma.fields.String())
    enabled = ma.fields.Boolean()
    disabled_reason = ma.fields.String(
        allow_none=True,
        metadata={"description": "gone: it answered 410; failing: failed for days"},
    )
    failing_since = ma.fields.DateTime(allow_none=True)
    previous_secret_until = ma.fields.DateTime(
        allow_none=True,
        metadata={"description": "Until then the previous secret signs deliveries too"},
    )
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class EndpointWithSecretSchema(EndpointSchema):
    secret = ma.fields.String(
        metadata={"description": "whsec_...: shown this once; verify our signatures with it"}
    )


EndpointPageSchema = page_schema(EndpointSchema)


class AttemptSchema(ma.Schema):
    series = ma.fields.Integer(metadata={"description": "1, then one more per redelivery"})
    number = ma.fields.Integer()
    attempted_at = ma.fields.DateTime()
    status_code = ma.fields.Integer(allow_none=True)
    latency_ms = ma.fields.Integer()
    response_excerpt = ma.fields.String(
        allow_none=True, metadata={"description": "The first KB of the answer"}
    )
    error = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(metadata={"description": "sent, retry, failed or disabled"})


class DeliverySchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    endpoint = ma.fields.UUID(attribute="endpoint.uuid")
    event_id = ma.fields.UUID(
        attribute="message.event_id", metadata={"description": "The webhook-id header"}
    )
    event_type = ma.fields.String(attribute="message.event_type")
    status = ma.fields.String(metadata={"description": "pending, sent or failed"})
    series = ma.fields.Integer()
    attempts = ma.fields.Integer(metadata={"description": "Attempts in the current series"})
    next_attempt_at = ma.fields.DateTime(allow_none=True)
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    queued_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()


class DeliveryDetailSchema(DeliverySchema):
    attempt_log = ma.fields.List(
        ma.fields.Nested(AttemptSchema), data_key="attempt_log",
        metadata={"description": "Every attempt, oldest first"},
    )  # fmt: skip


DeliveryPageSchema = page_schema(DeliverySchema)


class DeliveryQuerySchema(PageArgs):
    endpoint = ma.fields.UUID(load_default=None)
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATES))
