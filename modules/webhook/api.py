"""``/api/v1/webhooks``: endpoints (create, list, read, change, delete, rotate the secret, send
a test ``ping``) and their deliveries (list, read with attempts, redeliver).

Sellers and admins, and API keys with ``webhooks:read`` / ``webhooks:write``. Sellers reach only
their own endpoints and deliveries; admins all. Reads run inside ``@read_only()``.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import Page, PageArgs, ProblemSchema
from app.security import authenticate, requires

from . import services
from .models import WebhookDelivery, WebhookEndpoint
from .schemas import (
    DeliveryDetailSchema,
    DeliveryPageSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    EndpointCreateSchema,
    EndpointPageSchema,
    EndpointSchema,
    EndpointUpdateSchema,
    EndpointWithSecretSchema,
)

blp = Blueprint(
    "webhook",
    __name__,
    description="Webhooks signed to the Standard Webhooks specification: endpoints, their "
    "secrets, and the deliveries with every attempt.",
)

OWNERS = ("seller", "admin")
READ, WRITE = "webhooks:read", "webhooks:write"
EXAMPLE = {
    "url": "https://shop.example.com/lapak/webhooks",
    "description": "Orders into our ERP",
    "event_types": ["order.confirmed", "payment.confirmed", "refund.succeeded"],
}


@blp.route("/endpoints")
class Endpoints(MethodView):
    @requires(*OWNERS, scope=READ)
    @read_only()
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, EndpointPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """Your webhook endpoints, oldest first (admins: everyone's)"""
        return services.list_endpoints(authenticate(), limit=args["limit"], cursor=args["cursor"])

    @requires(*OWNERS, scope=WRITE)
    @blp.arguments(EndpointCreateSchema, example=EXAMPLE)
    @blp.response(201, EndpointWithSecretSchema)
    @blp.alt_response(422, schema=ProblemSchema,
                      description="webhook-url-refused, unknown-event-type")  # fmt: skip
    def post(self, body: dict[str, Any]) -> Any:
        """Add an endpoint; its secret is in this answer only

        Deliveries carry ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
        (``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` with the secret's bytes after
        ``whsec_``). The URL must reach a public address.
        """
        created = services.create_endpoint(authenticate(), body)
        location = url_for("webhook.Endpoint", endpoint_id=created.endpoint.uuid)
        return created, 201, {"Location": location}


@blp.route("/endpoints/<uuid:endpoint_id>")
class Endpoint(MethodView):
    @requires(*OWNERS, scope=READ)
    @read_only()
    @blp.response(200, EndpointSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-endpoint-not-found")
    def get(self, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """Show an endpoint (never its secret)"""
        return services.get_endpoint(authenticate(), endpoint_id)

    @requires(*OWNERS, scope=WRITE)
    @blp.arguments(EndpointUpdateSchema, example={"enabled": True})
    @blp.response(200, EndpointSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-endpoint-not-found")
    def patch(self, body: dict[str, Any], endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """Change the URL, description, event types or enabled flag"""
        return services.update_endpoint(authenticate(), endpoint_id, body)

    @requires(*OWNERS, scope=WRITE)
    @blp.response(204)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-endpoint-not-found")
    def delete(self, endpoint_id: uuid.UUID) -> None:
        """Delete an endpoint with its deliveries"""
        services.delete_endpoint(authenticate(), endpoint_id)


@blp.route("/endpoints/<uuid:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @requires(*OWNERS, scope=WRITE)
    @blp.response(200, EndpointWithSecretSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-endpoint-not-found")
    def post(self, endpoint_id: uuid.UUID) -> services.EndpointWithSecret:
        """A new secret, shown this once; the previous one keeps signing for a while

        During the overlap (``previous_secret_until``) each delivery carries two signatures.
        """
        return services.rotate_secret(authenticate(), endpoint_id)


@blp.route("/endpoints/<uuid:endpoint_id>/test")
class TestEndpoint(MethodView):
    @requires(*OWNERS, scope=WRITE)
    @blp.response(202, DeliverySchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-endpoint-not-found")
    @blp.alt_response(409, schema=ProblemSchema, description="webhook-endpoint-disabled")
    def post(self, endpoint_id: uuid.UUID) -> WebhookDelivery:
        """Send a ``ping`` event to the endpoint now; follow its delivery"""
        return services.send_test(authenticate(), endpoint_id)


@blp.route("/deliveries")
class Deliveries(MethodView):
    @requires(*OWNERS, scope=READ)
    @read_only()
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """Deliveries, newest first, of your endpoints (admins: all)"""
        filters = services.DeliveryFilter(endpoint=args["endpoint"], status=args["status"])
        return services.list_deliveries(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/deliveries/<uuid:delivery_id>")
class Delivery(MethodView):
    @requires(*OWNERS, scope=READ)
    @read_only()
    @blp.response(200, DeliveryDetailSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-delivery-not-found")
    def get(self, delivery_id: uuid.UUID) -> WebhookDelivery:
        """A delivery with every attempt (status code, latency, the answer's first KB)"""
        return services.get_delivery(authenticate(), delivery_id)


@blp.route("/deliveries/<uuid:delivery_id>/redeliver")
class Redeliver(MethodView):
    @requires(*OWNERS, scope=WRITE)
    @blp.response(202, DeliverySchema)
    @blp.alt_response(404, schema=ProblemSchema, description="webhook-delivery-not-found")
    @blp.alt_response(
        409, schema=ProblemSchema, description="webhook-delivery-pending, webhook-endpoint-disabled"
    )
    def post(self, delivery_id: uuid.UUID) -> WebhookDelivery:
        """Send the delivery again (a new series of attempts, the same webhook-id)"""
        return services.redeliver(authenticate(), delivery_id)
