"""The GraphQL schema: a ``Query`` root only (no mutations), over the REST API's services.

Each root field calls the service its REST endpoint calls, with the caller as the actor, so
visibility is the service's (staff every order, customers their own, sellers those with their
products): there is no second implementation of it here. Arguments are checked by the REST
endpoint's own query schema (``first`` as its ``limit``, ``after`` as its ``cursor``, the
filters by the same names), so a value REST refuses is refused here with the same message.
Root fields are nullable: one refused field (``extensions.code`` says why) leaves the others.

Fields of other modules plug in as classes merged into ``Query`` (see :mod:`.dashboard`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import marshmallow as ma
import strawberry
from strawberry.tools import merge_types

from app.errors import Invalid, PermissionDenied
from app.http import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, cursor_scope
from modules.marketplace import api as marketplace_api
from modules.marketplace import services as marketplace
from modules.marketplace.schemas import OrderQuerySchema
from modules.payment import api as payment_api
from modules.payment import services as payment
from modules.payment.schemas import ProviderTransactionQuerySchema
from modules.seller import api as seller_api
from modules.seller.balances import balance
from modules.seller.profiles import seller_by_uuid
from modules.seller.schemas import BalanceQuerySchema

from . import dashboard
from .limits import limiters
from .loaders import Context
from .rest import read_arguments, require_scope, scope_of
from .types import (
    SCALARS,
    TRANSACTIONS_READ,
    Invoice,
    Order,
    OrderFilter,
    OrderPage,
    Payment,
    ProviderTransaction,
    SettlementSummary,
    TransactionFilter,
    TransactionPage,
)

STAFF_ROLES = ("staff", "admin")
#: The REST listings whose rows and cursors the connections share: a ``next_cursor`` of
#: ``GET /marketplace/orders`` continues in ``orders(after:)``, and the other way round.
ORDERS_LISTING = f"{marketplace_api.blp.name}.{marketplace_api.Orders.__name__}"
TRANSACTIONS_LISTING = f"{payment_api.blp.name}.{payment_api.Transactions.__name__}"
#: The scopes an API key needs for each field: its REST endpoint's (graphql:read is not enough).
ORDERS_READ = scope_of(marketplace_api.Orders.get)
ORDER_READ = scope_of(marketplace_api.OrderItem.get)
INVOICE_READ = scope_of(marketplace_api.InvoiceItem.get)
PAYMENT_READ = scope_of(marketplace_api.PaymentItem.get)
TRANSACTION_LIST_READ = scope_of(payment_api.Transactions.get)
OWN_BALANCE_READ = scope_of(seller_api.OwnBalance.get)
BALANCE_READ = scope_of(seller_api.SellerBalance.get)
_ORDER_QUERY = OrderQuerySchema()
_TRANSACTION_QUERY = ProviderTransactionQuerySchema()
_BALANCE_QUERY = BalanceQuerySchema()
PAGE_SIZE = f"Items per page, 1 to {MAX_PAGE_SIZE}"
AFTER = "The next_cursor of the previous page (of this listing, here or in REST)"

Info = strawberry.Info[Context, None]


def _actor(info: Info, scope: str) -> Any:
    """Who asks, once an API key is found to hold ``scope`` (:mod:`.rest`)."""
    actor = info.context.actor
    require_scope(actor, scope)
    return actor


def _rest_arguments(
    schema: ma.Schema, given: Mapping[str, Any], first: int, after: str | None
) -> dict[str, Any]:
    """``given`` (GraphQL's names) read by a REST listing's query schema."""
    raw = {name.rstrip("_"): value for name, value in given.items()}
    return read_arguments(schema, {**raw, "limit": first, "cursor": after})


def _filters(given: Any) -> dict[str, Any]:
    return dataclasses.asdict(given) if given is not None else {}


def _public_id(value: str, argument: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid(f"{argument} is not an id of Lapak", errors={argument: "a UUID"}) from None


@strawberry.type
class MarketplaceQuery:
    @strawberry.field(description="Sale orders you may see, newest first, filtered")
    def orders(
        self,
        info: Info,
        filter: OrderFilter | None = None,
        first: Annotated[int, strawberry.argument(description=PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    ) -> OrderPage | None:
        actor = _actor(info, ORDERS_READ)
        args = _rest_arguments(_ORDER_QUERY, _filters(filter), first, after)
        filters = marketplace.OrderFilter(
            **{name.name: args[name.name] for name in dataclasses.fields(marketplace.OrderFilter)}
        )
        with cursor_scope(ORDERS_LISTING):
            page = marketplace.list_orders(
                actor, filters, limit=args["limit"], cursor=args["cursor"]
            )
        return OrderPage(items=[Order.of_summary(row) for row in page.items],
                         next_cursor=page.next_cursor)  # fmt: skip

    @strawberry.field(description="One order you may see (null and an error if not)")
    def order(self, info: Info, id: strawberry.ID) -> Order | None:
        detail = marketplace.get_order(_actor(info, ORDER_READ), _public_id(id))
        order = Order.of(detail.order)
        info.context.loaders.know_order(order, detail.invoices, detail.payments)
        return order

    @strawberry.field(description="One invoice or credit note you may see")
    def invoice(self, info: Info, id: strawberry.ID) -> Invoice | None:
        return Invoice.of(marketplace.get_invoice(_actor(info, INVOICE_READ), _public_id(id)))

    @strawberry.field(description="One payment you may see")
    def payment(self, info: Info, id: strawberry.ID) -> Payment | None:
        return Payment.of(marketplace.get_payment(_actor(info, PAYMENT_READ), _public_id(id)))


@strawberry.type
class PaymentQuery:
    @strawberry.field(description="Provider transactions you may see, newest first, filtered")
    def transactions(
        self,
        info: Info,
        filter: TransactionFilter | None = None,
        first: Annotated[int, strawberry.argument(description=PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        after: Annotated[str | None, strawberry.argument(description=AFTER)] = None,
    ) -> TransactionPage | None:
        actor = _actor(info, TRANSACTION_LIST_READ)
        args = _rest_arguments(_TRANSACTION_QUERY, _filters(filter), first, after)
        filters = payment.TransactionFilter(
            **{name.name: args[name.name] for name in dataclasses.fields(payment.TransactionFilter)}
        )
        with cursor_scope(TRANSACTIONS_LISTING):
            page = payment.list_transactions(
                actor, filters, limit=args["limit"], cursor=args["cursor"]
            )
        return TransactionPage(items=[ProviderTransaction.of(tx) for tx in page.items],
                               next_cursor=page.next_cursor)  # fmt: skip

    @strawberry.field(description="One provider transaction you may see")
    def transaction(self, info: Info, id: strawberry.ID) -> ProviderTransaction | None:
        return ProviderTransaction.of(
            payment.get_transaction(_actor(info, TRANSACTIONS_READ), _public_id(id))
        )


@strawberry.type
class SellerQuery:
    @strawberry.field(
        description="A seller's balances: sellers their own (leave seller out), staff any "
        "seller's (name them)"
    )
    def settlement_summary(
        self, info: Info, currency: str = "IDR", seller: strawberry.ID | None = None
    ) -> SettlementSummary | None:
        # Who reads which balance: as GET /sellers/me/balance (sellers) and
        # GET /sellers/{id}/balance (staff) let them, scopes checked first as there.
        own = info.context.actor.has_role("seller")
        if not own and not info.context.actor.has_role(*STAFF_ROLES):
            raise PermissionDenied("balances are for sellers and staff")
        actor = _actor(info, OWN_BALANCE_READ if own else BALANCE_READ)
        try:
            currency = _BALANCE_QUERY.load({"currency": currency})["currency"]
        except ma.ValidationError as error:
            raise Invalid("the currency is not one Lapak keeps", errors=error.messages) from None
        if own:
            if seller is not None and _public_id(seller, "seller") != actor.user_uuid:
                raise PermissionDenied("sellers read their own balance only")
            return SettlementSummary.of(actor.user_uuid, balance(actor.user_id, currency))
        if seller is None:
            raise Invalid("staff name the seller", errors={"seller": "required for staff"})
        found = seller_by_uuid(_public_id(seller, "seller"))
        return SettlementSummary.of(found.uuid, balance(found.id, currency))


Query = merge_types("Query", (MarketplaceQuery, PaymentQuery, SellerQuery, *dashboard.QUERIES))


class LapakSchema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Logged by :mod:`.services` instead: a query's own errors are the client's (not
        logged), anything else is raised to the app's handler, which logs it once."""


schema = LapakSchema(
    query=Query,
    extensions=limiters(),
    config=strawberry.schema.config.StrawberryConfig(
        # The REST API's names (amount_total, next_cursor): the same keys either way.
        auto_camel_case=False,
        scalar_map=SCALARS,
    ),
)
