"""A seeded, randomized run of mixed money operations, then the ledger is checked whole.

Blnk's invariant fuzz and hordak's accounting equation, on Lapak's own services against the real
PostgreSQL primary: orders (with two sellers' products and the platform's own), further
payments, confirmations, partial and full refunds, cancellations, wallet credits and spends
(some overdrawing on purpose) and staff adjustments, in a random order. Refusals are part of the
mix (an over-refund, a spend above the wallet, a cancel of a paid order): each must leave every
balance exactly as it was. At the end ``lapak ledger verify`` must find no unbalanced
transaction, no running-balance mismatch, no chain break, and every account's cached balance
must equal the sum of its entries recomputed in SQL.

``LAPAK_TEST_LEDGER_OPERATIONS`` (default 10,000) sets the length; the seed is fixed, so a
failure replays the same way.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app.db import Session, transaction
from app.errors import DomainError
from app.security import Principal
from modules.ledger.models import DEBIT_NORMAL, Account, Entry
from modules.ledger.services import LegRequest, TransactionRequest, post_transaction
from modules.marketplace import refunds, services
from modules.marketplace.models import Product
from modules.marketplace.services import LineRequest, OrderRequest, PaymentRequest
from modules.user.services import create_user

OPERATIONS = int(os.environ.get("LAPAK_TEST_LEDGER_OPERATIONS", "10000"))
SEED = 20261129
D = Decimal


@dataclass
class World:
    staff: Principal
    customers: list[Principal]
    products: list[str]
    orders: list[dict[str, Any]] = field(default_factory=list)
    #: (payment uuid, amount) of confirmed payments.
    confirmed: list[tuple[uuid.UUID, Decimal]] = field(default_factory=list)
    #: (payment uuid) registered, not confirmed.
    open_payments: list[uuid.UUID] = field(default_factory=list)
    #: Orders placed with a first instalment only.
    partly_paid: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def principal(role: str, email: str) -> Principal:
    user = create_user(email, role=role, password=None, active=True, name=email)
    return Principal(user.id, user.uuid, user.email, role)


def build_world(app: Flask, rng: random.Random) -> World:
    with app.app_context():
        staff = principal("staff", "staff@example.test")
        sellers = [principal("seller", f"seller{i}@example.test") for i in range(2)]
        customers = [principal("customer", f"customer{i}@example.test") for i in range(12)]
        products = []
        with transaction() as session:
            for index in range(6):
                seller = sellers[index % 2].user_id if index < 4 else None
                price = D(rng.randrange(1_000, 90_000)) + D(rng.choice(["0", "0.50", "0.99"]))
                product = Product(name=f"P{index}", list_price=price, seller_id=seller)
                session.add(product)
                session.flush()
                products.append(str(product.uuid))
        return World(staff, customers, products)


def place(world: World, rng: random.Random) -> None:
    customer = rng.choice(world.customers)
    lines = [
        LineRequest(product, D(rng.choice(["1", "2", "0.5", "3.125"])))
        for product in rng.sample(world.products, rng.randint(1, 3))
    ]
    partial = rng.random() < 0.3
    placed: dict[str, Any] = {}

    def render(made: services.Placed) -> dict[str, Any]:
        placed.update(
            order=made.order.uuid,
            invoice=made.invoice.uuid,
            total=made.invoice.amount_total,
            payment=made.payment.uuid,
        )
        return {}

    amount = None
    if partial:
        amount = D("1.00")  # a first instalment; the rest is registered later
    services.place_order(
        customer, OrderRequest(lines, PaymentRequest("bank_transfer", amount)), None, render
    )
    world.orders.append({**placed, "customer": customer})
    world.open_payments.append(placed["payment"])
    if partial:
        world.partly_paid.append(world.orders[-1])


def pay_rest(world: World, rng: random.Random) -> None:
    if not world.partly_paid:
        return
    order = world.partly_paid.pop(rng.randrange(len(world.partly_paid)))
    made: dict[str, Any] = {}

    def render(payment: Any) -> dict[str, Any]:
        made["payment"] = payment.uuid
        return {}

    services.register_payment(world.staff, order["invoice"], PaymentRequest("cash"), None, render)
    world.open_payments.append(made["payment"])


def confirm(world: World, rng: random.Random) -> None:
    if not world.open_payments:
        return
    payment_uuid = world.open_payments.pop(rng.randrange(len(world.open_payments)))
    payment = services.confirm_payment(world.staff, payment_uuid)
    if payment.state == "paid":
        world.confirmed.append((payment_uuid, payment.amount))


def refund(world: World, rng: random.Random) -> None:
    if not world.confirmed:
        return
    payment_uuid, amount = rng.choice(world.confirmed)
    choice = rng.random()
    if choice < 0.4:
        wanted = None  # what remains
    elif choice < 0.9:
        wanted = max(
            D("0.01"), (amount * D(rng.choice(["0.1", "0.25", "0.5"]))).quantize(D("0.01"))
        )
    else:
        wanted = amount + D("1.00")  # more than the payment: refused
    refunds.create_refund(
        world.staff, payment_uuid, refunds.RefundRequest("randomized", wanted), None, lambda _: {}
    )


def cancel(world: World, rng: random.Random) -> None:
    order = rng.choice(world.orders)
    services.cancel_order(rng.choice([world.staff, order["customer"]]), order["order"])


def wallet(world: World, rng: random.Random) -> None:
    customer = rng.choice(world.customers)
    operation = rng.choice(["CREDIT_ADD", "SIGNUP_CREDIT", "CREDIT_SPEND", "CREDIT_SPEND"])
    post_transaction(
        world.staff,
        TransactionRequest(
            operation=operation,
            nonce=uuid.uuid4().hex,
            currency="IDR",
            holder=customer.user_uuid,
            amount=D(rng.randrange(1, 50_000)),
        ),
    )


def adjust(world: World, rng: random.Random) -> None:
    customer = rng.choice(world.customers)
    amount = D(rng.randrange(1, 20_000))
    legs = [
        {"purpose": "adjustment", "debit": amount},
        {"purpose": "wallet", "holder": customer.user_uuid, "credit": amount},
    ]
    if rng.random() < 0.5:  # take back instead (refused when the wallet holds less)
        legs = [
            {"purpose": "wallet", "holder": customer.user_uuid, "debit": amount},
            {"purpose": "adjustment", "credit": amount},
        ]
    post_transaction(
        world.staff,
        TransactionRequest(
            operation="ADJUSTMENT",
            nonce=uuid.uuid4().hex,
            currency="IDR",
            legs=[LegRequest(**leg) for leg in legs],
        ),
    )


STEPS: list[tuple[Callable[[World, random.Random], None], int]] = [
    (place, 30),
    (pay_rest, 6),
    (confirm, 25),
    (refund, 14),
    (cancel, 5),
    (wallet, 12),
    (adjust, 8),
]


def snapshot() -> dict[int, Decimal]:
    return {row.id: row.balance for row in Session().execute(select(Account.id, Account.balance))}


def test_a_randomized_run_keeps_the_ledger_consistent(app: Flask) -> None:
    rng = random.Random(SEED)
    world = build_world(app, rng)
    functions, weights = zip(*STEPS, strict=True)
    with app.app_context():
        for index in range(OPERATIONS):
            step = rng.choices(functions, weights)[0]
            check_refusal = index % 10 == 0
            before = snapshot() if check_refusal else None
            Session.remove()
            try:
                step(world, rng)
                outcome = "done"
            except DomainError as error:
                outcome = f"refused:{error.code}"
                if before is not None:
                    assert snapshot() == before, f"{step.__name__} was refused but moved money"
            finally:
                Session.remove()
            key = f"{step.__name__}:{outcome}"
            world.counts[key] = world.counts.get(key, 0) + 1

        runner = app.test_cli_runner()
        result = runner.invoke(args=["ledger", "verify"])
        assert result.exit_code == 0, result.output
        assert "unbalanced transactions: 0;" in result.output
        assert "running-balance mismatches: 0;" in result.output

        # Every cached balance equals its entries, summed in SQL, on its kind's side.
        rows = Session().execute(
            select(Entry.account_id, func.sum(Entry.debit) - func.sum(Entry.credit)).group_by(
                Entry.account_id
            )
        )
        sums = {account_id: signed for account_id, signed in rows}
        for account in Session().scalars(select(Account)):
            signed = sums.get(account.id, D(0))
            expected = signed if account.kind in DEBIT_NORMAL else -signed
            assert account.balance == expected, account.code
            assert account.allow_negative or account.balance >= 0, account.code
    done = {key: count for key, count in world.counts.items() if key.endswith(":done")}
    # The mix really happened: every kind of step succeeded many times.
    for function in functions:
        assert done.get(f"{function.__name__}:done", 0) > OPERATIONS // 200, world.counts
