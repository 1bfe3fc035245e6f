"""What one GraphQL request reads in batches: a DataLoader per nested list, made per request.

Every ``order.lines`` of a page asks :attr:`Loaders.order_lines` for its order's lines; the
loader collects the keys of the whole page and reads them in one statement. So a page of orders
with their lines, invoices, payments and transactions costs one statement per kind of list,
however long the page.

The parents were read through the services' visibility (``list_orders``, ``get_order``,
``get_invoice``, ``get_payment``), and what belongs to a visible order is shown with it, as
``GET /orders/{id}`` shows its invoices and payments. Provider transactions keep the payment
module's own rule (``visible_transactions``) even under a visible payment, as in REST.

The batch functions are coroutines for the DataLoader but read synchronously, on the request's
session (its replica inside ``read_only``): the event loop only orders the resolvers, which
run one at a time on the request's thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import defaultload
from strawberry.dataloader import DataLoader

from app.db import Session
from app.security import Principal
from modules.marketplace.models import (
    AccountMove,
    AccountMoveLine,
    Payment,
    SaleOrderLine,
)
from modules.payment.models import PaymentTransaction
from modules.payment.services import visible_transactions

from .types import Invoice, InvoiceLine, Line, Order, ProviderTransaction
from .types import Payment as PaymentType

T = TypeVar("T")


def _grouped(
    statement: Select[Any],
    key_of: Callable[[Any], Hashable],
    make: Callable[[Any], T],
) -> Callable[[list[int]], Awaitable[list[list[T]]]]:
    """A batch function: ``statement`` (with an ``ids`` expanding parameter) read once for all
    the keys, its rows grouped by ``key_of`` and made into ``make(row)``, in the keys' order."""

    async def load(keys: list[int]) -> list[list[T]]:
        grouped: dict[Hashable, list[T]] = defaultdict(list)
        for record in Session().scalars(statement, {"ids": keys}):
            grouped[key_of(record)].append(make(record))
        return [grouped.get(key, []) for key in keys]

    return load


def _ids(column: Any) -> Any:
    return column.in_(bindparam("ids", expanding=True))


def _shallow(*relationships: Any) -> list[Any]:
    """Options that load each of ``relationships`` as the model says (joined: the REST schema
    shows its id), but not the relationships of what they load in turn (the models join those
    too, for other readers): a batch of payments joins its invoices, not their orders."""
    return [defaultload(relationship).lazyload("*") for relationship in relationships]


_ORDER_LINES = (
    select(SaleOrderLine)
    .options(*_shallow(SaleOrderLine.product))
    .where(_ids(SaleOrderLine.order_id))
    .order_by(SaleOrderLine.order_id, SaleOrderLine.sequence)
)
_INVOICE_LINES = (
    select(AccountMoveLine)
    .options(*_shallow(AccountMoveLine.product))
    .where(_ids(AccountMoveLine.move_id))
    .order_by(AccountMoveLine.move_id, AccountMoveLine.sequence)
)
#: As ``services.invoices_of``: the invoice and its credit notes, oldest first.
_ORDER_INVOICES = (
    select(AccountMove)
    .options(*_shallow(AccountMove.order))
    .where(_ids(AccountMove.order_id))
    .order_by(AccountMove.id)
)
#: As ``services.get_order``: the payments of all the order's moves, oldest first.
_ORDER_PAYMENTS = (
    select(Payment, AccountMove.order_id)
    .options(*_shallow(Payment.invoice))
    .join(AccountMove, AccountMove.id == Payment.invoice_id)
    .where(_ids(AccountMove.order_id))
    .order_by(Payment.id)
)
_INVOICE_PAYMENTS = (
    select(Payment)
    .options(*_shallow(Payment.invoice))
    .where(_ids(Payment.invoice_id))
    .order_by(Payment.id)
)


async def _order_payments(keys: list[int]) -> list[list[PaymentType]]:
    grouped: dict[int, list[PaymentType]] = defaultdict(list)
    for payment, order_id in Session().execute(_ORDER_PAYMENTS, {"ids": keys}):
        grouped[order_id].append(PaymentType.of(payment))
    return [grouped.get(key, []) for key in keys]


def _transactions_of(actor: Principal) -> Callable[[list[int]], Awaitable[list[list[Any]]]]:
    statement = (
        visible_transactions(actor)
        .options(
            *_shallow(
                PaymentTransaction.invoice,
                PaymentTransaction.account_payment,
                PaymentTransaction.token,
            )
        )
        .where(_ids(PaymentTransaction.account_payment_id))
        .order_by(PaymentTransaction.id)
    )
    return _grouped(statement, lambda tx: tx.account_payment_id, ProviderTransaction.of)


@dataclass
class Loaders:
    """The DataLoaders of one request (each caches what it read for that request only)."""

    actor: Principal
    order_lines: DataLoader[int, list[Line]] = field(init=False)
    order_invoices: DataLoader[int, list[Invoice]] = field(init=False)
    order_payments: DataLoader[int, list[PaymentType]] = field(init=False)
    invoice_lines: DataLoader[int, list[InvoiceLine]] = field(init=False)
    invoice_payments: DataLoader[int, list[PaymentType]] = field(init=False)
    payment_transactions: DataLoader[int, list[ProviderTransaction]] = field(init=False)

    def __post_init__(self) -> None:
        self.order_lines = DataLoader(_grouped(_ORDER_LINES, lambda line: line.order_id, Line.of))
        self.order_invoices = DataLoader(
            _grouped(_ORDER_INVOICES, lambda move: move.order_id, Invoice.of)
        )
        self.order_payments = DataLoader(_order_payments)
        self.invoice_lines = DataLoader(
            _grouped(_INVOICE_LINES, lambda line: line.move_id, InvoiceLine.of)
        )
        self.invoice_payments = DataLoader(
            _grouped(_INVOICE_PAYMENTS, lambda payment: payment.invoice_id, PaymentType.of)
        )
        self.payment_transactions = DataLoader(_transactions_of(self.actor))

    def know_order(self, order: Order, invoices: Sequence[Any], payments: Iterable[Any]) -> None:
        """What ``get_order`` read already: its invoices and payments are not read again."""
        self.order_invoices.prime(order.key, [Invoice.of(move) for move in invoices])
        self.order_payments.prime(order.key, [PaymentType.of(payment) for payment in payments])


@dataclass(frozen=True)
class Context:
    """``info.context`` of every resolver: who asks, and this request's loaders."""

    actor: Principal
    loaders: Loaders

    @classmethod
    def for_actor(cls, actor: Principal) -> Context:
        return cls(actor, Loaders(actor))
