"""What crosses the HTTP boundary of ``/api/v1/paylinks``."""

from __future__ import annotations

import marshmallow as ma

from app.fields import DecimalString
from app.http import JsonBoolean, PageArgs, page_schema
from modules.fetch.schemas import Amount
from modules.marketplace.models import MONEY

from .models import LINK_STATUSES
from .services import status_of


class LinkCreateSchema(ma.Schema):
    invoice = ma.fields.UUID(
        required=True, metadata={"description": "The posted invoice the link pays"}
    )
    amount = DecimalString(
        MONEY,
        load_default=None,
        metadata={"description": "What one payment through the link pays: more than 0, at "
                  "most what is due (default: all that is due)"},
    )  # fmt: skip
    expires_at = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "When the link stops working (default: in "
                  "LAPAK_PAYLINK_DEFAULT_DAYS, 7 days; at most LAPAK_PAYLINK_MAX_DAYS ahead)"},
    )  # fmt: skip
    single_use = JsonBoolean(
        load_default=True,
        metadata={"description": "true: one successful payment uses it up; false: it takes "
                  "payments until the invoice is paid (each at most its amount)"},
    )  # fmt: skip


class LinkSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid", dump_only=True)
    invoice = ma.fields.UUID(attribute="invoice.uuid", dump_only=True)
    invoice_number = ma.fields.String(
        attribute="invoice.name", allow_none=True, metadata={"example": "INV/2026/00001"}
    )
    amount = Amount(metadata={"description": "What one payment through it pays at most"})
    currency = ma.fields.String()
    single_use = ma.fields.Boolean()
    status = ma.fields.Function(
        lambda link: status_of(link),
        metadata={"type": "string", "enum": list(LINK_STATUSES),
                  "description": "active; expired (past expires_at); revoked; used (a single-"
                  "use link's payment succeeded); closed (its invoice was paid, reversed or "
                  "cancelled)"},
    )  # fmt: skip
    closed_reason = ma.fields.String(allow_none=True)
    uses = ma.fields.Integer(metadata={"description": "Successful payments through it"})
    amount_paid = Amount()
    expires_at = ma.fields.DateTime()
    created_at = ma.fields.DateTime()
    created_by = ma.fields.Function(
        lambda link: str(link.created_by.uuid) if link.created_by is not None else None,
        allow_none=True,
        metadata={"type": "string", "format": "uuid",
                  "description": "Who made it (null: the platform, for a printed invoice)"},
    )  # fmt: skip
    ended_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "When it was revoked, used or closed"}
    )


class CreatedLinkSchema(LinkSchema):
    url = ma.fields.String(
        metadata={"description": "The pay page, /pay/<token>: in this answer only (and its "
                  "replay for a repeated Idempotency-Key); reading or listing links never shows "
                  "it. Anyone holding it can pay: send it to the payer only"},
    )  # fmt: skip


LinkPageSchema = page_schema(LinkSchema)


class LinkQuerySchema(PageArgs):
    invoice = ma.fields.UUID(load_default=None, metadata={"description": "One invoice's links"})
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(LINK_STATUSES))
