"""The GraphQL types: what the REST API shows, under the same names, in the same formats.

Every object is built from the REST schema's own dump of the record (``Order.of_summary(row)``
renders a listed order exactly as ``GET /marketplace/orders`` does), so a GraphQL answer and a
REST answer cannot drift: building a type from a dump with a field the type lacks fails at
once. Field names are the REST API's (snake_case): a client reads the same keys either way.
Nested lists (an order's lines, invoices and payments; an invoice's lines and payments; a
payment's provider transactions) are fields with resolvers, batched per request by
:mod:`.loaders`; references upwards (an invoice's ``order``, a payment's ``invoice``) are ids,
as in REST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NewType

import strawberry
from strawberry.scalars import JSON

from app.dumping import fast_dump
from modules.marketplace.schemas import (
    InvoiceLineSchema,
    InvoiceSchema,
    LineSchema,
    OrderSummarySchema,
    PaymentSchema,
    order_summary,
)
from modules.payment import api as payment_api
from modules.payment.schemas import ProviderTransactionSchema
from modules.seller.schemas import BalanceSchema

from .rest import require_scope, scope_of

if TYPE_CHECKING:
    from .loaders import Context

#: Decimal numbers, date-times and dates travel as the strings the REST API writes.
DecimalText = NewType("DecimalText", str)
DateTimeText = NewType("DateTimeText", str)
DateText = NewType("DateText", str)


def _as_written(value: Any) -> Any:
    return value


SCALARS = {
    DecimalText: strawberry.scalar(
        name="Decimal",
        description="A decimal number as a string, as the REST API writes it: money with two "
        'places rounded half-up ("37000.00"), quantities and rates with their own digits',
        serialize=_as_written,
        parse_value=str,
    ),
    DateTimeText: strawberry.scalar(
        name="DateTime",
        description="An RFC 3339 date-time in UTC",
        serialize=_as_written,
        parse_value=str,
    ),
    DateText: strawberry.scalar(
        name="Date", description="An ISO 8601 date", serialize=_as_written, parse_value=str
    ),
}

_SUMMARY = fast_dump(OrderSummarySchema())
_LINE = fast_dump(LineSchema())
_INVOICE_LINE = fast_dump(InvoiceLineSchema())
# Its lines are a field of their own (batched), not the nested list of the REST answer.
_INVOICE = fast_dump(InvoiceSchema(exclude=("lines",)))
_PAYMENT = fast_dump(PaymentSchema())
_TRANSACTION = fast_dump(ProviderTransactionSchema())
_BALANCE = fast_dump(BalanceSchema())
#: Provider transactions are read over REST with this scope only: under a payment as well.
TRANSACTIONS_READ = scope_of(payment_api.TransactionItem.get)


def _context(info: strawberry.Info[Context, None]) -> Context:
    return info.context


@strawberry.type(description="A line of an order or an invoice: the product, priced and taxed")
class Line:
    product: strawberry.ID | None = strawberry.field(
        description="The product; null on a standalone invoice's line"
    )
    name: str
    quantity: DecimalText
    price_unit: DecimalText
    price_subtotal: DecimalText
    price_tax: DecimalText
    price_total: DecimalText

    @classmethod
    def of(cls, line: Any) -> Line:
        return cls(**_LINE(line))


@strawberry.type(description="A line of an invoice or credit note, with its own PPN percent")
class InvoiceLine(Line):
    tax_percent: DecimalText | None = strawberry.field(
        description="The line's PPN percent; null on an order's older lines (the order's)"
    )

    @classmethod
    def of(cls, line: Any) -> InvoiceLine:
        return cls(**_INVOICE_LINE(line))


@strawberry.type(
    description="A provider transaction (as GET /api/v1/payments/{id} shows it): money moving "
    "through a payment provider for an invoice, or into the payer's wallet"
)
class ProviderTransaction:
    id: strawberry.ID
    reference: str | None
    provider: str
    state: str
    state_message: str | None
    kind: str
    invoice: strawberry.ID | None
    invoice_number: str | None
    customer: strawberry.ID | None
    payment: strawberry.ID | None
    token: strawberry.ID | None
    amount: DecimalText
    fee: DecimalText
    net: DecimalText
    currency: str
    provider_reference: str | None
    late_success: bool
    action: JSON | None = strawberry.field(
        description="What the payer does next: shown to the payer and staff, null for others"
    )
    expires_at: DateTimeText
    last_state_change: DateTimeText
    created_at: DateTimeText

    @classmethod
    def of(cls, transaction: Any) -> ProviderTransaction:
        return cls(**_TRANSACTION(transaction))


@strawberry.type(description="A payment registered against an invoice")
class Payment:
    id: strawberry.ID
    number: str | None
    state: str
    invoice: strawberry.ID
    customer: strawberry.ID | None
    method: str
    amount: DecimalText
    currency: str
    reference: str | None
    created_at: DateTimeText
    confirmed_at: DateTimeText | None
    cancelled_at: DateTimeText | None
    key: strawberry.Private[int]

    @classmethod
    def of(cls, payment: Any) -> Payment:
        return cls(key=payment.id, **_PAYMENT(payment))

    @strawberry.field(
        description="The provider transactions confirming this payment that you may see"
    )
    async def transactions(self, info: strawberry.Info[Context, None]) -> list[ProviderTransaction]:
        context = _context(info)
        require_scope(context.actor, TRANSACTIONS_READ)
        return await context.loaders.payment_transactions.load(self.key)


@strawberry.type(description="A customer invoice (out_invoice) or credit note (out_refund)")
class Invoice:
    id: strawberry.ID
    number: str | None
    move_type: str
    state: str
    payment_state: str
    order: strawberry.ID | None = strawberry.field(
        description="The order invoiced; null: a standalone invoice"
    )
    customer: strawberry.ID | None = strawberry.field(
        description="The customer; null: a payer without an account"
    )
    payer_name: str | None
    payer_email: str | None
    seller: strawberry.ID | None = strawberry.field(
        description="The seller who issued a standalone invoice; null: the platform"
    )
    memo: str | None
    currency: str
    invoice_date: DateText
    invoice_date_due: DateText
    amount_untaxed: DecimalText
    amount_tax: DecimalText
    amount_total: DecimalText
    amount_residual: DecimalText
    reversed_entry: strawberry.ID | None
    created_at: DateTimeText
    key: strawberry.Private[int]

    @classmethod
    def of(cls, move: Any) -> Invoice:
        return cls(key=move.id, **_INVOICE(move))

    @strawberry.field(description="Its lines, in order")
    async def lines(self, info: strawberry.Info[Context, None]) -> list[InvoiceLine]:
        return await _context(info).loaders.invoice_lines.load(self.key)

    @strawberry.field(description="The payments registered against it, oldest first")
    async def payments(self, info: strawberry.Info[Context, None]) -> list[Payment]:
        return await _context(info).loaders.invoice_payments.load(self.key)


@strawberry.type(description="A sale order, as GET /api/v1/marketplace/orders lists it")
class Order:
    id: strawberry.ID
    number: str | None
    state: str
    customer: strawberry.ID | None
    currency: str
    currency_rate: DecimalText | None
    tax_percent: DecimalText | None
    date_order: DateTimeText
    amount_untaxed: DecimalText
    amount_tax: DecimalText
    amount_total: DecimalText
    cancelled_at: DateTimeText | None
    payment_state: str | None = strawberry.field(description="Its invoice's")
    key: strawberry.Private[int]

    @classmethod
    def of_summary(cls, row: Any) -> Order:
        """A row of the order listing (``services.ORDER_SUMMARIES``)."""
        return cls(key=row[0], **order_summary(row))

    @classmethod
    def of(cls, order: Any) -> Order:
        return cls(key=order.id, **_SUMMARY(order))

    @strawberry.field(description="Its lines, in order")
    async def lines(self, info: strawberry.Info[Context, None]) -> list[Line]:
        return await _context(info).loaders.order_lines.load(self.key)

    @strawberry.field(description="Its invoice and credit notes, oldest first")
    async def invoices(self, info: strawberry.Info[Context, None]) -> list[Invoice]:
        return await _context(info).loaders.order_invoices.load(self.key)

    @strawberry.field(description="The payments of its invoices, oldest first")
    async def payments(self, info: strawberry.Info[Context, None]) -> list[Payment]:
        return await _context(info).loaders.order_payments.load(self.key)


@strawberry.type(description="A page of orders, newest first")
class OrderPage:
    items: list[Order]
    next_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last"
    )


@strawberry.type(description="A page of provider transactions, newest first")
class TransactionPage:
    items: list[ProviderTransaction]
    next_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last"
    )


@strawberry.type(
    description="A seller's balances from their ledger accounts, as GET "
    "/api/v1/sellers/me/balance shows them"
)
class SettlementSummary:
    seller: strawberry.ID
    currency: str
    available: DecimalText
    pending: DecimalText
    owed: DecimalText
    next_release_at: DateTimeText | None
    next_release_amount: DecimalText | None
    next_payout_on: DateText | None

    @classmethod
    def of(cls, seller: Any, balance: Any) -> SettlementSummary:
        return cls(seller=strawberry.ID(str(seller)), **_BALANCE(balance))


@strawberry.input(description="Filters of the order listing, as GET /marketplace/orders takes them")
class OrderFilter:
    state: str | None = None
    payment_state: str | None = None
    customer: strawberry.ID | None = None
    from_: str | None = strawberry.field(
        name="from", default=None, description="A date or an RFC 3339 date-time (UTC if naive)"
    )
    to: str | None = strawberry.field(
        default=None, description="A date (the whole day) or an RFC 3339 date-time, included"
    )
    total_min: str | None = strawberry.field(default=None, description="A decimal string")
    total_max: str | None = strawberry.field(default=None, description="A decimal string")
    number: str | None = strawberry.field(default=None, description="Part of the order number")


@strawberry.input(
    description="Filters of the transaction listing, as GET /api/v1/payments takes them"
)
class TransactionFilter:
    state: str | None = None
    provider: str | None = None
    customer: strawberry.ID | None = None
    from_: str | None = strawberry.field(
        name="from", default=None, description="A date or an RFC 3339 date-time (UTC if naive)"
    )
    to: str | None = strawberry.field(
        default=None, description="A date (the whole day) or an RFC 3339 date-time, included"
    )
    amount_min: str | None = strawberry.field(default=None, description="A decimal string")
    amount_max: str | None = strawberry.field(default=None, description="A decimal string")
