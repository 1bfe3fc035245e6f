"""What crosses the HTTP boundary for the marketplace. Money and quantities are decimal strings.

Request schemas refuse unknown fields, so a client cannot slip in ``state``, ``amount_total`` or
anything else the server computes; decimals are strings (or whole numbers) that fit their column
(``app.fields.DecimalString``): a JSON number with a fraction has already been through a float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import marshmallow as ma
from sqlalchemy import Numeric

from app.fields import DecimalString
from app.http import JsonBoolean, PageArgs, ProblemSchema, page_schema
from modules.fetch.analysis import PLACES
from modules.fetch.schemas import Amount, Moment

from .models import (
    CURRENCY_PLACES,
    INVOICE_PAYMENT_STATES,
    MONEY,
    MOVE_STATES,
    MOVE_TYPES,
    ORDER_STATES,
    PAYMENT_STATES,
    QUANTITY,
    REFUND_STATES,
)
from .payments import METHODS

# -- requests -----------------------------------------------------------------------------------


class LineInSchema(ma.Schema):
    product = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "The product's id, or the feed listing's uuid it came from"},
    )
    quantity = DecimalString(
        QUANTITY, required=True, metadata={"description": "More than 0, 3 decimals"}
    )
    price_unit = DecimalString(
        MONEY,
        load_default=None,
        metadata={
            "description": "Optional: the price the client expects; a different catalogue "
            "price is refused with 409 and the current price"
        },
    )


class PaymentInSchema(ma.Schema):
    method = ma.fields.String(
        required=True, validate=ma.validate.OneOf(sorted(METHODS)), metadata={"example": "cash"}
    )
    amount = DecimalString(
        MONEY, load_default=None, metadata={"description": "Default: the whole amount due"}
    )
    reference = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=200),
        metadata={"description": "The transfer's reference, if any"},
    )


class OrderPaymentInSchema(PaymentInSchema):
    """An order's payment: a ``method`` as ever, or a ``provider`` (the ``payment`` module's
    providers: the answer then carries the provider ``transaction`` with its ``action``)."""

    method = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(sorted(METHODS)), metadata={"example": "cash"}
    )
    provider = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "A payment provider's code instead of a method",
                  "example": "demo"},
    )  # fmt: skip


class RefundInSchema(ma.Schema):
    amount = DecimalString(
        MONEY,
        load_default=None,
        metadata={"description": "Default: all that remains refundable on the payment"},
    )
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=500),
        metadata={"description": "Why the money goes back", "example": "Damaged on arrival"},
    )
    destination = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={
            "description": "Where the money goes back: default the payment's own method; "
            "`wallet` sends it to the customer's wallet (done at once)",
            "example": "wallet",
        },
    )


class OrderCreateSchema(ma.Schema):
    lines = ma.fields.List(ma.fields.Nested(LineInSchema), required=True)
    currency = ma.fields.String(
        load_default="IDR",
        validate=ma.validate.OneOf(sorted(CURRENCY_PLACES)),
        metadata={"description": "IDR, or USD converted with the current rate", "example": "IDR"},
    )
    payment = ma.fields.Nested(OrderPaymentInSchema, required=True)
    customer = ma.fields.UUID(
        load_default=None, metadata={"description": "Staff only: the customer ordering"}
    )


class OrderQuerySchema(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(ORDER_STATES))
    payment_state = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(INVOICE_PAYMENT_STATES)
    )
    customer = ma.fields.UUID(load_default=None)
    since = Moment(data_key="from", load_default=None)
    until = Moment(data_key="to", load_default=None)
    total_min = DecimalString(MONEY, load_default=None)
    total_max = DecimalString(MONEY, load_default=None)
    number = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "Part of the order number", "example": "SO/2026/0004"},
    )

    @ma.post_load
    def _bounds(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        since, until = data.pop("since"), data.pop("until")
        data["since"] = since[0] if since else None
        data["before"] = None
        if until is not None:
            moment, whole_day = until
            step = timedelta(days=1) if whole_day else timedelta(microseconds=1)
            data["before"] = moment + step
        return data


#: A tax percent as an invoice line takes it (0 to 99.99).
PERCENT = Numeric(4, 2)


class InvoiceLineInSchema(ma.Schema):
    description = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "What is sold, as printed", "example": "Cold storage, May"},
    )
    quantity = DecimalString(
        QUANTITY, required=True, metadata={"description": "More than 0, 3 decimals"}
    )
    price_unit = DecimalString(
        MONEY,
        required=True,
        metadata={"description": "In the invoice's currency, untaxed", "example": "250000.00"},
    )
    tax_percent = DecimalString(
        PERCENT,
        load_default=None,
        metadata={
            "description": "PPN percent (0 to 99.99); default LAPAK_SALES_TAX_PERCENT",
            "example": "11",
        },
    )


class _InvoiceFieldsSchema(ma.Schema):
    """What a draft invoice holds, for a new one and a change to one."""

    customer = ma.fields.UUID(
        allow_none=True,
        metadata={"description": "A customer's user id; or leave it out and name the payer"},
    )
    payer_name = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "A payer without an account: their name (with payer_email)",
                  "example": "Ibu Sari"},
    )  # fmt: skip
    payer_email = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(min=3, max=254),
        metadata={"description": "A payer without an account: their email",
                  "example": "sari@example.com"},
    )  # fmt: skip
    lines = ma.fields.List(ma.fields.Nested(InvoiceLineInSchema))
    currency = ma.fields.String(
        validate=ma.validate.OneOf(sorted(CURRENCY_PLACES)), metadata={"example": "IDR"}
    )
    due_date = ma.fields.Date(
        allow_none=True,
        metadata={"description": "Today or later (Asia/Jakarta); default: the invoice date plus "
                  "LAPAK_INVOICE_DUE_DAYS", "example": "2026-12-31"},
    )  # fmt: skip
    memo = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(max=2000),
        metadata={"description": "A note for the payer, printed on the invoice"},
    )


class InvoiceCreateSchema(_InvoiceFieldsSchema):
    """A new draft: the customer (or payer), at least one line; the rest has defaults."""

    lines = ma.fields.List(ma.fields.Nested(InvoiceLineInSchema), required=True)
    currency = ma.fields.String(
        load_default="IDR",
        validate=ma.validate.OneOf(sorted(CURRENCY_PLACES)),
        metadata={"example": "IDR"},
    )


class InvoicePatchSchema(_InvoiceFieldsSchema):
    """A change to a draft: only the fields sent change. ``lines`` replaces every line; the
    payer is ``customer``, or ``payer_name`` with ``payer_email``, as a whole."""


class InvoiceQuerySchema(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(MOVE_STATES))
    payment_state = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(INVOICE_PAYMENT_STATES)
    )
    move_type = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(MOVE_TYPES),
        metadata={"description": "out_invoice (invoices) or out_refund (credit notes)"},
    )
    standalone = ma.fields.Boolean(
        load_default=None,
        metadata={"description": "true: only invoices made without an order; false: only "
                  "orders' invoices"},
    )  # fmt: skip
    customer = ma.fields.UUID(load_default=None)
    seller = ma.fields.UUID(
        load_default=None,
        metadata={"description": "Only the standalone invoices this seller issued"},
    )
    number = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "Part of the number", "example": "INV/2026/0004"},
    )


class ProductInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    province = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    city = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    size = DecimalString(QUANTITY, load_default=None)
    list_price = DecimalString(MONEY, required=True, metadata={"description": "In IDR"})
    active = JsonBoolean(load_default=True)
    seller = ma.fields.UUID(load_default=None, metadata={"description": "Admins only"})


class ProductPatchSchema(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))
    province = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    city = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    size = DecimalString(QUANTITY, allow_none=True)
    list_price = DecimalString(MONEY)
    active = JsonBoolean()
    seller = ma.fields.UUID(allow_none=True)


class ProductQuerySchema(PageArgs):
    active = ma.fields.Boolean(load_default=None)
    name = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200))
    province = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200))
    city = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200))
    source = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=50))
    seller = ma.fields.UUID(load_default=None)


class SyncInSchema(ma.Schema):
    source = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=50),
        metadata={"description": "A configured feed source; omit for the default"},
    )


# -- answers ------------------------------------------------------------------------------------


class MarketplaceProblemSchema(ProblemSchema):
    """A marketplace problem: the members a refused order or payment adds to the problem."""

    step = ma.fields.String(
        metadata={
            "enum": ["numbering", "order", "invoice", "payment", "ledger"],
            "description": "The step of placing an order that failed (nothing was saved)",
        }
    )
    line = ma.fields.Integer(metadata={"description": "The index of the order line refused"})
    product = ma.fields.UUID(metadata={"description": "That line's product"})
    current_price = ma.fields.String(
        metadata={
            "description": "The catalogue's price now; order again with it",
            "example": "37000.00",
        }
    )
    currency = ma.fields.String(metadata={"example": "IDR"})
    payment_state = ma.fields.String(
        metadata={"enum": list(INVOICE_PAYMENT_STATES), "description": "Why it takes no payment"}
    )
    residual = ma.fields.String(
        metadata={"description": "The amount still due", "example": "100.00"}
    )
    payment = ma.fields.String(
        metadata={"description": "The confirmed payment's number", "example": "PAY/2026/00001"}
    )
    state = ma.fields.String(metadata={"description": "The payment's state"})
    refundable = ma.fields.String(
        metadata={"description": "What remains refundable on the payment", "example": "100.00"}
    )


def _uuid_of(attribute: str, **kwargs: Any) -> ma.fields.Field:
    return ma.fields.UUID(attribute=attribute, dump_only=True, **kwargs)


class ProductSchema(ma.Schema):
    id = _uuid_of("uuid")
    feed_uuid = ma.fields.String(allow_none=True)
    source = ma.fields.String(allow_none=True)
    name = ma.fields.String()
    province = ma.fields.String(allow_none=True)
    city = ma.fields.String(allow_none=True)
    size = Amount(places=None)
    list_price = Amount(metadata={"description": "IDR"})
    currency = ma.fields.Constant("IDR")
    active = ma.fields.Boolean()
    seller = ma.fields.Function(
        lambda product: product.seller.uuid if product.seller else None,
        metadata={"type": "string", "format": "uuid", "nullable": True},
    )
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class SyncSchema(ma.Schema):
    id = _uuid_of("uuid")
    source = ma.fields.String()
    state = ma.fields.String()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    deactivated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    skipped = ma.fields.Integer()
    stale = ma.fields.Boolean(metadata={"description": "The feed's kept copy was used"})
    error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


def _public_id_of(relation: str, description: str) -> ma.fields.Field:
    """The public id of a related record, or null when there is none."""

    def public_id(record: Any) -> str | None:
        related = getattr(record, relation)
        return None if related is None else str(related.uuid)

    return ma.fields.Function(
        public_id,
        metadata={"type": "string", "format": "uuid", "nullable": True,
                  "description": description},
    )  # fmt: skip


class LineSchema(ma.Schema):
    product = _public_id_of("product", "The product; null on a standalone invoice's line")
    name = ma.fields.String()
    quantity = Amount(places=None)
    price_unit = Amount()
    price_subtotal = Amount()
    price_tax = Amount()
    price_total = Amount()


class OrderSummarySchema(ma.Schema):
    """An order in a listing: no lines, so a page costs one query."""

    id = _uuid_of("uuid")
    number = ma.fields.String(attribute="name", metadata={"example": "SO/2026/00001"})
    state = ma.fields.String(metadata={"enum": list(ORDER_STATES)})
    customer = _uuid_of("customer.uuid")
    currency = ma.fields.String()
    currency_rate = Amount(places=None, metadata={"description": "IDR -> currency"})
    tax_percent = Amount(places=None)
    date_order = ma.fields.DateTime()
    amount_untaxed = Amount()
    amount_tax = Amount()
    amount_total = Amount()
    cancelled_at = ma.fields.DateTime(allow_none=True)
    payment_state = ma.fields.String(
        allow_none=True,
        metadata={"enum": list(INVOICE_PAYMENT_STATES), "description": "The invoice's"},
    )


class OrderSchema(OrderSummarySchema):
    lines = ma.fields.List(ma.fields.Nested(LineSchema))


class InvoiceLineSchema(LineSchema):
    tax_percent = Amount(
        places=None,
        metadata={"description": "The line's PPN percent; null on an order's older lines "
                  "(the order's)"},
    )  # fmt: skip


class InvoiceSummarySchema(ma.Schema):
    """An invoice in a listing: no lines, so a page costs a few queries, not one per row."""

    id = _uuid_of("uuid")
    number = ma.fields.String(
        attribute="name",
        allow_none=True,
        metadata={"example": "INV/2026/00001", "description": "null while a draft"},
    )
    move_type = ma.fields.String(metadata={"enum": ["out_invoice", "out_refund"]})
    state = ma.fields.String(
        metadata={"enum": list(MOVE_STATES),
                  "description": "draft (a standalone invoice being written), posted, cancel "
                  "(a draft given up)"},
    )  # fmt: skip
    payment_state = ma.fields.String(metadata={"enum": list(INVOICE_PAYMENT_STATES)})
    order = _public_id_of("order", "The order invoiced; null: a standalone invoice")
    customer = _public_id_of("customer", "The customer; null: a payer without an account")
    payer_name = ma.fields.String(
        allow_none=True, metadata={"description": "A payer without an account"}
    )
    payer_email = ma.fields.String(
        allow_none=True, metadata={"description": "A payer without an account"}
    )
    seller = _public_id_of(
        "issuer", "The seller who issued a standalone invoice; null: the platform"
    )
    memo = ma.fields.String(allow_none=True)
    currency = ma.fields.String()
    invoice_date = ma.fields.Date()
    invoice_date_due = ma.fields.Date()
    amount_untaxed = Amount()
    amount_tax = Amount()
    amount_total = Amount()
    amount_residual = Amount()
    reversed_entry = ma.fields.Function(
        lambda move: move.reversed_entry.uuid if move.reversed_entry else None,
        metadata={"description": "A credit note's invoice", "type": "string", "nullable": True},
    )
    created_at = ma.fields.DateTime()


class InvoiceSchema(InvoiceSummarySchema):
    lines = ma.fields.List(ma.fields.Nested(InvoiceLineSchema))


class PaymentSchema(ma.Schema):
    id = _uuid_of("uuid")
    number = ma.fields.String(attribute="name", metadata={"example": "PAY/2026/00001"})
    state = ma.fields.String(metadata={"enum": list(PAYMENT_STATES)})
    invoice = _uuid_of("invoice.uuid")
    customer = _public_id_of("customer", "The customer; null: a payer without an account")
    method = ma.fields.String()
    amount = Amount()
    currency = ma.fields.String()
    reference = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    confirmed_at = ma.fields.DateTime(allow_none=True)
    cancelled_at = ma.fields.DateTime(allow_none=True)


class RefundSchema(ma.Schema):
    id = _uuid_of("uuid")
    payment = _uuid_of("payment.uuid")
    credit_note = _uuid_of("credit_note.uuid", metadata={"description": "The RINV credit note"})
    credit_note_number = ma.fields.String(
        attribute="credit_note.name", metadata={"example": "RINV/2026/00001"}
    )
    amount = Amount()
    currency = ma.fields.String()
    reason = ma.fields.String()
    destination = ma.fields.String(
        metadata={
            "description": "The payment method the money goes back through",
            "example": "bank_transfer",
        }
    )
    provider_reference = ma.fields.String(
        allow_none=True,
        metadata={"description": "The provider's reference of the money it sent back"},
    )
    state = ma.fields.String(
        metadata={
            "enum": list(REFUND_STATES),
            "description": "pending: decided and booked; succeeded: the money was sent back",
        }
    )
    created_at = ma.fields.DateTime()
    confirmed_at = ma.fields.DateTime(allow_none=True)


class PlacedSchema(ma.Schema):
    order = ma.fields.Nested(OrderSchema)
    invoice = ma.fields.Nested(InvoiceSchema)
    payment = ma.fields.Nested(PaymentSchema)
    transaction = ma.fields.Dict(
        dump_only=True,
        metadata={"description": "With payment.provider: the provider transaction (as "
                  "GET /api/v1/payments/{id} shows it) and its action for the payer"},
    )  # fmt: skip


class OrderDetailSchema(ma.Schema):
    order = ma.fields.Nested(OrderSchema)
    invoices = ma.fields.List(ma.fields.Nested(InvoiceSchema))
    payments = ma.fields.List(ma.fields.Nested(PaymentSchema))


def _summary_renderer() -> Callable[[Any], dict[str, Any]]:
    """:func:`order_summary`, checked against :class:`OrderSummarySchema` when it is built:
    the same fields in the same order, each formatted as its schema field formats it."""
    expected = {
        "id": "UUID",
        "number": "String",
        "state": "String",
        "customer": "UUID",
        "currency": "String",
        "currency_rate": "Amount:None",
        "tax_percent": "Amount:None",
        "date_order": "DateTime",
        "amount_untaxed": f"Amount:{PLACES}",
        "amount_tax": f"Amount:{PLACES}",
        "amount_total": f"Amount:{PLACES}",
        "cancelled_at": "DateTime",
        "payment_state": "String",
    }
    declared = {}
    for name, field in OrderSummarySchema().dump_fields.items():
        kind = type(field).__name__
        if isinstance(field, Amount):
            kind = f"Amount:{field.places}"
        elif isinstance(field, ma.fields.DateTime) and (field.format or "iso") != "iso":
            kind = f"DateTime:{field.format}"
        declared[name] = kind
    if declared != expected:
        raise RuntimeError(f"order_summary does not render OrderSummarySchema: {declared}")
    cent = Decimal(1).scaleb(-PLACES)

    def render(row: Any) -> dict[str, Any]:
        # Inline, as the fields format them: isoformat() of the UTC time for DateTime, Amount's
        # rounding half-up to PLACES or its own digits, str() for a UUID; text columns come as
        # str. None stays None (id, state and currency are NOT NULL columns).
        (
            _,
            public_id,
            number,
            state,
            customer,
            currency,
            rate,
            tax,
            date_order,
            untaxed,
            taxed,
            total,
            cancelled_at,
            payment_state,
        ) = row
        return {
            "id": str(public_id),
            "number": number,
            "state": state,
            "customer": None if customer is None else str(customer),
            "currency": currency,
            "currency_rate": None if rate is None else format(rate.normalize(), "f"),
            "tax_percent": None if tax is None else format(tax.normalize(), "f"),
            "date_order": None if date_order is None else date_order.astimezone(UTC).isoformat(),
            "amount_untaxed": None
            if untaxed is None
            else format(untaxed.quantize(cent, ROUND_HALF_UP), "f"),
            "amount_tax": None
            if taxed is None
            else format(taxed.quantize(cent, ROUND_HALF_UP), "f"),
            "amount_total": None
            if total is None
            else format(total.quantize(cent, ROUND_HALF_UP), "f"),
            "cancelled_at": None
            if cancelled_at is None
            else cancelled_at.astimezone(UTC).isoformat(),
            "payment_state": payment_state,
        }

    return render


#: The columns of ``services.ORDER_SUMMARIES``, in the order :data:`order_summary` reads them.
ORDER_SUMMARY_COLUMNS = (
    "id",
    "uuid",
    "name",
    "state",
    "customer",
    "currency",
    "currency_rate",
    "tax_percent",
    "date_order",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "cancelled_at",
    "payment_state",
)
#: A row of ``services.ORDER_SUMMARIES`` as :class:`OrderSummarySchema` dumps the order:
#: the listing's items, without a schema's per-field work for every row of every page.
order_summary = _summary_renderer()


def order_summary_page(items: Sequence[Any], next_cursor: str | None) -> dict[str, Any]:
    """The body :data:`OrderPageSchema` dumps, for rows of ``services.ORDER_SUMMARIES``."""
    return {"items": [order_summary(row) for row in items], "next_cursor": next_cursor}


OrderPageSchema = page_schema(OrderSummarySchema)
InvoicePageSchema = page_schema(InvoiceSummarySchema)
RefundPageSchema = page_schema(RefundSchema)
ProductPageSchema = page_schema(ProductSchema)
