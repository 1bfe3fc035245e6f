"""``/api/v1/paylinks``: payment links for staff and sellers: create (the URL in that answer
only), list, read, revoke. The public pay page is :mod:`.pages` (``/pay/<token>``).

Staff and admins reach every link; a seller the links of the standalone invoices they issued
(made and revoked while they are verified); API keys with ``paylinks:read`` /
``paylinks:write``. ``POST`` takes an ``Idempotency-Key``. Reads run
inside ``@read_only()``.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import NO_STORE, Page, ProblemSchema
from app.security import authenticate, requires
from modules.marketplace import idempotency

from . import services
from .models import PaymentLink
from .schemas import (
    CreatedLinkSchema,
    LinkCreateSchema,
    LinkPageSchema,
    LinkQuerySchema,
    LinkSchema,
)

blp = Blueprint(
    "paylinks",
    __name__,
    description="Payment links: a secret URL (/pay/<token>) through which anyone pays a posted "
    "invoice without an account, through a payment provider.",
)

MAKERS = services.MAKERS
READ, WRITE = "paylinks:read", "paylinks:write"
_LINK = LinkSchema()
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "description": "Optional. Retrying with the same key and body answers the same link and URL; "
    "the same key with another body is 422.",
    "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
}


@blp.route("")
class Links(MethodView):
    @requires(*MAKERS, scope=READ)
    @read_only()
    @blp.arguments(LinkQuerySchema, location="query")
    @blp.response(200, LinkPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List payment links, newest first (never their tokens)

        Staff see all; sellers the links of the invoices they issued.
        """
        filters = services.LinkFilter(invoice=args["invoice"], status=args["status"])
        return services.list_links(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )

    @requires(*MAKERS, scope=WRITE)
    @blp.arguments(LinkCreateSchema)
    @blp.response(201, CreatedLinkSchema)
    @blp.doc(parameters=[IDEMPOTENCY_PARAMETER])
    @blp.alt_response(404, schema=ProblemSchema, description="No such invoice (or not yours)")
    @blp.alt_response(409, schema=ProblemSchema, description="invoice-not-payable")
    def post(self, body: dict[str, Any]) -> Response:
        """Create a payment link for a posted invoice; its URL is in this answer only

        The amount defaults to what is due and may be less, never more; the link expires in 7
        days unless told, and is single use unless told. Emits ``payment_link.created``.
        """
        actor = authenticate()
        idempotent = idempotency.request_for(
            actor.user_id, "paylinks", request.headers.get("Idempotency-Key"),
            request.get_json(),
        )  # fmt: skip
        created = services.create_link(actor, services.LinkRequest(**body), idempotent, _LINK.dump)
        url = services.pay_url(created.token)
        response = jsonify({**created.body, "url": url})
        response.status_code = created.status
        response.headers["Location"] = url_for("paylinks.Link", link_id=created.body["id"])
        response.headers.update(NO_STORE)
        return response


@blp.route("/<uuid:link_id>")
class Link(MethodView):
    @requires(*MAKERS, scope=READ)
    @read_only()
    @blp.response(200, LinkSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="payment-link-not-found")
    def get(self, link_id: uuid.UUID) -> PaymentLink:
        """Show a payment link (never its token)"""
        return services.get_link(authenticate(), link_id)


@blp.route("/<uuid:link_id>/revoke")
class Revoke(MethodView):
    @requires(*MAKERS, scope=WRITE)
    @blp.response(200, LinkSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="payment-link-not-found")
    @blp.alt_response(409, schema=ProblemSchema, description="payment-link-not-active")
    def post(self, link_id: uuid.UUID) -> PaymentLink:
        """Revoke a link: it takes no more payments (one already started goes on)

        Revoking a revoked link changes nothing; a used or closed one is a 409.
        """
        return services.revoke_link(authenticate(), link_id)
