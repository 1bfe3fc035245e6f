"""``lapak demo``: a small catalogue to place orders against without a feed, and the history's
orders paid by bank transfer or cash (:class:`ManualSales`)."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select

from app.db import Session, transaction
from app.demo import HISTORY_DAYS, DemoMoment
from modules.ledger.models import Transaction as LedgerTransaction
from modules.user.demo import DEMO_CUSTOMER_EMAILS, DEMO_LOGINS, DEMO_STAFF_EMAIL, acting_as
from modules.user.models import User

from . import refunds, services
from .models import Product, SaleOrder
from .refunds import RefundRequest
from .services import LineRequest, OrderRequest, PaymentRequest, Placed

DEMO_SOURCE = "demo"
#: Name, province, city, size, price in IDR: the shape and price range of the commodity feed.
DEMO_PRODUCTS = (
    ("BANDENG", "JAWA BARAT", "BANDUNG", "100", "37000"),
    ("LELE", "DKI JAKARTA", "JAKARTA BARAT", "30", "24000"),
    ("KAKAP", "JAWA BARAT", "CILILIN", "100", "116000"),
    ("TONGKOL", "ACEH", "ACEH KOTA", "60", "32500"),
    ("UDANG VANAME", "JAWA TIMUR", "SURABAYA", "50", "81000"),
)


#: Demo products get fixed ids, so the documented example order can be placed against them.
DEMO_NAMESPACE = uuid.UUID("6b1f3c52-2f4e-4d55-9a52-0f2f8e3c1a10")


def demo_product_id(name: str) -> uuid.UUID:
    """The fixed id of the demo product called ``name``."""
    return uuid.uuid5(DEMO_NAMESPACE, name)


def load_demo() -> list[str]:
    """Create the demo products once; later runs leave the catalogue alone."""
    with transaction():
        session = Session()
        existing = session.scalar(
            select(func.count()).select_from(Product).where(Product.source == DEMO_SOURCE)
        )
        if existing:
            return [f"Demo catalogue: {existing} products already there."]
        for name, province, city, size, price in DEMO_PRODUCTS:
            session.add(
                Product(
                    uuid=demo_product_id(name),
                    name=name,
                    province=province,
                    city=city,
                    size=Decimal(size),
                    list_price=Decimal(price),
                    source=DEMO_SOURCE,
                )
            )
    return [
        f"Demo catalogue: {len(DEMO_PRODUCTS)} products "
        "(GET /api/v1/marketplace/products; sync the feed with POST .../products/sync)."
    ]


# -- the history: orders paid by bank transfer or cash ------------------------------------------

#: How the history's transfer and cash references begin (``DEMO-TRF-05``).
HISTORY_REFERENCE = "DEMO-"
#: Moments of the history (:mod:`app.demo`) at which this module's customers order: the odd
#: ones (the payment module's customers pay through the demo gateway at the even ones).
#: Every fourth order is paid in cash at the counter (staff confirm it at once); the others by
#: bank transfer, which staff confirm at the next moment the transfer shows.
CASH_EVERY = 4
#: The transfer of this moment's order never comes: staff cancel the order at
#: :data:`CANCEL_UNPAID_AT`.
UNPAID_AT, CANCEL_UNPAID_AT = 5, 13
#: Half of this moment's order is refunded at :data:`REFUND_AT` (sent back by staff at once).
REFUNDED_AT, REFUND_AT = 9, 17
REFUND_REASON = "two kilos arrived spoiled: half of the order paid back"
#: How often an order's first line is a seller's product, and has a second line.
SELLER_SHARE, SECOND_LINE = 0.6, 0.35


def demo_sellers() -> list[int]:
    """The user ids of the demo's sellers (their products sell in the history)."""
    emails = [email for email, _, role, _ in DEMO_LOGINS if role == "seller"]
    return list(Session().scalars(select(User.id).where(User.email_key.in_(emails))))


def demo_products() -> list[Product]:
    """What the history's customers order: the active products of the demo catalogue and of the
    demo's sellers (never what a feed brought in)."""
    return list(
        Session().scalars(
            select(Product)
            .where(
                Product.active.is_(True),
                or_(Product.source == DEMO_SOURCE, Product.seller_id.in_(demo_sellers())),
            )
            .order_by(Product.id)
        )
    )


def demo_lines(chance: random.Random) -> list[LineRequest]:
    """One or two of the :func:`demo_products`, a few of each; most orders have a seller's
    product (the sellers' balances move), when there are any. None when no demo product is
    active (the history then places no order at that moment)."""
    with transaction():
        products = demo_products()
    if not products:
        return []
    sellers = [product for product in products if product.seller_id is not None]
    first = chance.choice(sellers if sellers and chance.random() < SELLER_SHARE else products)
    picked = [first]
    if chance.random() < SECOND_LINE and len(products) > 1:
        picked.append(chance.choice([product for product in products if product is not first]))
    return [
        LineRequest(product=str(product.uuid), quantity=Decimal(chance.randint(1, 6)))
        for product in picked
    ]


def placed_ids(placed: Placed) -> dict[str, Any]:
    """What the history keeps of an order it placed (``place_order``'s ``render``)."""
    return {
        "order": placed.order.uuid,
        "invoice": placed.invoice.uuid,
        "payment": placed.payment.uuid,
        "total": placed.order.amount_total,
    }


class ManualSales:
    """This module's part of the history (``hooks.demo_history``): customers order and pay by
    bank transfer or cash, staff confirm the money, cancel an order whose transfer never came
    and refund half of another, through the services the API calls."""

    def __init__(self) -> None:
        with transaction():
            self.customers = [acting_as(email) for email in DEMO_CUSTOMER_EMAILS]
            self.staff = acting_as(DEMO_STAFF_EMAIL)
            self.products = bool(demo_products())
        self.users = self.staff is not None and None not in self.customers
        self.wanted = self.users and self.products
        self.chance = random.Random("lapak-demo-marketplace")  # noqa: S311 - demo data
        #: Payments by bank transfer waiting for staff, and the orders placed, by moment.
        self.transfers: list[uuid.UUID] = []
        self.orders: dict[int, dict[str, Any]] = {}
        self.counts = dict.fromkeys(("confirmed", "cancelled", "refunded"), 0)

    def activity(self) -> list[str]:
        return history_before()

    def step(self, moment: DemoMoment) -> None:
        assert self.staff is not None
        index = moment.index
        # Staff's work first: the transfers that came in since the last moment.
        for payment in self.transfers:
            services.confirm_payment(self.staff, payment)
            self.counts["confirmed"] += 1
        self.transfers = []
        if index == CANCEL_UNPAID_AT and UNPAID_AT in self.orders:
            services.cancel_order(self.staff, self.orders[UNPAID_AT]["order"])
            self.counts["cancelled"] += 1
        if index == REFUND_AT and REFUNDED_AT in self.orders:
            self._refund_half(self.orders[REFUNDED_AT])
        if index % 2 == 1:
            self._order(index)

    def _order(self, index: int) -> None:
        assert self.staff is not None
        customer = self.chance.choice(self.customers)
        assert customer is not None
        cash = len(self.orders) % CASH_EVERY == CASH_EVERY - 1
        method = "cash" if cash else "bank_transfer"
        reference = f"{HISTORY_REFERENCE}{'CASH' if cash else 'TRF'}-{index:02d}"
        lines = demo_lines(self.chance)
        if not lines:  # staff deactivated every demo product meanwhile
            return
        request = OrderRequest(
            lines=lines, payment=PaymentRequest(method=method, reference=reference)
        )
        _, placed = services.place_order(customer, request, None, placed_ids)
        self.orders[index] = placed
        if cash:
            services.confirm_payment(self.staff, placed["payment"])
            self.counts["confirmed"] += 1
        elif index != UNPAID_AT:
            self.transfers.append(placed["payment"])

    def _refund_half(self, placed: dict[str, Any]) -> None:
        assert self.staff is not None
        half = (placed["total"] / 2 // 100 * 100).quantize(Decimal("0.01"))
        request = RefundRequest(reason=REFUND_REASON, amount=half)
        _, made = refunds.create_refund(
            self.staff, placed["payment"], request, None, lambda refund: {"refund": refund.uuid}
        )
        refunds.mark_refund_done(self.staff, made["refund"])  # staff sent the money back
        self.counts["refunded"] += 1

    def summary(self) -> list[str]:
        if not self.users:
            return ["Demo orders paid by transfer or cash: left out (the demo users are missing)."]
        if not self.products:
            return [NO_PRODUCT.format(paid="by transfer or cash")]
        return [
            f"Demo orders paid by bank transfer or cash: {len(self.orders)} over the last "
            f"{HISTORY_DAYS} days ({self.counts['confirmed']} confirmed by staff, "
            f"{len(self.transfers)} awaiting its transfer, {self.counts['cancelled']} cancelled "
            f"unpaid, {self.counts['refunded']} half refunded)."
        ]


#: A part's summary when no demo product is active (``paid``: how the part's orders are paid).
NO_PRODUCT = (
    "Demo orders paid {paid}: left out (no demo product is active: activate one of the "
    "catalogue's, source 'demo', with PATCH /api/v1/marketplace/products/{{id}})."
)


def history_before() -> list[str]:
    """The orders and ledger postings this database holds already (``DemoHistory.activity``):
    the demo's history, dated over the last weeks, would go before them."""
    with transaction():
        session = Session()
        orders = session.scalar(select(func.count()).select_from(SaleOrder))
        postings = session.scalar(select(func.count()).select_from(LedgerTransaction))
    return [
        f"{count} {name}{'s' if count != 1 else ''}"
        for count, name in ((orders, "order"), (postings, "ledger transaction"))
        if count
    ]


def start_history() -> ManualSales:
    return ManualSales()
