"""``lapak ledger backfill`` posts the history an older Lapak wrote without the ledger, once.

The history is written here as that version wrote it: orders, invoices (no commission, lines
without their seller), payments and credit notes, straight into the tables, no posting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import Session, transaction, utcnow
from modules.ledger.models import Transaction
from modules.ledger.verify import verify
from modules.marketplace.models import (
    AccountMove,
    AccountMoveLine,
    Payment,
    Product,
    SaleOrder,
    SaleOrderLine,
)
from tests.modules.conftest import Caller

from .conftest import MadeProduct, post
from .test_ledger import nonzero

D = Decimal
TAX = D("0.11")


def old_order(
    customer_id: int,
    lines: list[tuple[str, str]],
    payments: list[tuple[str, str]],
    *,
    cancelled: bool = False,
    minutes_ago: int = 60,
) -> None:
    """An order as the pre-ledger marketplace wrote it; ``payments``: (amount, state)."""
    session = Session()
    at = utcnow() - timedelta(minutes=minutes_ago)
    products = [session.scalars(select(Product).where(Product.uuid == p)).one() for p, _ in lines]
    amounts = []
    for product, (_, quantity) in zip(products, lines, strict=True):
        subtotal = (product.list_price * D(quantity)).quantize(D("0.01"))
        amounts.append((product, D(quantity), subtotal, (subtotal * TAX).quantize(D("0.01"))))
    untaxed = sum(a[2] for a in amounts)
    tax = sum(a[3] for a in amounts)

    def line_fields(index: int) -> dict[str, Any]:
        product, quantity, subtotal, line_tax = amounts[index]
        return {
            "sequence": index,
            "product_id": product.id,
            "name": product.name,
            "quantity": quantity,
            "price_unit": product.list_price,
            "price_subtotal": subtotal,
            "price_tax": line_tax,
            "price_total": subtotal + line_tax,
        }

    order = SaleOrder(
        state="cancel" if cancelled else "sale",
        customer_id=customer_id,
        created_by_id=customer_id,
        currency="IDR",
        currency_rate=D(1),
        tax_percent=D(11),
        date_order=at,
        amount_untaxed=untaxed,
        amount_tax=tax,
        amount_total=untaxed + tax,
        lines=[SaleOrderLine(**line_fields(i)) for i in range(len(amounts))],
    )
    session.add(order)
    session.flush()
    paid = sum(D(amount) for amount, state in payments if state != "canceled")
    invoice = AccountMove(
        move_type="out_invoice",
        state="posted",
        payment_state="reversed" if cancelled else ("paid" if paid == untaxed + tax else "partial"),
        order_id=order.id,
        customer_id=customer_id,
        currency="IDR",
        invoice_date=at.date(),
        invoice_date_due=at.date(),
        amount_untaxed=untaxed,
        amount_tax=tax,
        amount_total=untaxed + tax,
        amount_residual=D(0) if cancelled else untaxed + tax - paid,
        created_at=at,
        lines=[AccountMoveLine(**line_fields(i)) for i in range(len(amounts))],
    )
    session.add(invoice)
    session.flush()
    invoice.name = f"INV/OLD/{invoice.id:05d}"
    for index, (amount, state) in enumerate(payments):
        session.add(
            Payment(
                name=f"PAY/OLD/{invoice.id}-{index}",
                state=state,
                invoice_id=invoice.id,
                customer_id=customer_id,
                method="cash",
                amount=D(amount),
                currency="IDR",
                created_at=at,
                confirmed_at=at + timedelta(minutes=index + 1) if state == "paid" else None,
            )
        )
    if cancelled:
        session.add(
            AccountMove(
                name=f"RINV/OLD/{invoice.id:05d}",
                move_type="out_refund",
                state="posted",
                payment_state="paid",
                order_id=order.id,
                customer_id=customer_id,
                currency="IDR",
                invoice_date=at.date(),
                invoice_date_due=at.date(),
                amount_untaxed=untaxed,
                amount_tax=tax,
                amount_total=untaxed + tax,
                amount_residual=D(0),
                reversed_entry_id=invoice.id,
                created_at=at + timedelta(minutes=5),
                lines=[AccountMoveLine(**line_fields(i)) for i in range(len(amounts))],
            )
        )


def backfill(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["ledger", "backfill"])
    assert result.exit_code == 0, result.output
    return result.output


def test_backfill_posts_the_old_history_once_and_the_live_code_carries_on(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    make_user: Callable[..., tuple[int, Any, str]],
    make_product: Callable[..., MadeProduct],
) -> None:
    seller_a, seller_b = make_user(role="seller")[0], make_user(role="seller")[0]
    a = make_product("10000", name="BANDENG", seller_id=seller_a)
    b = make_product("20000", name="LELE", seller_id=seller_b)
    own = make_product("5000", name="TONGKOL")
    three = [(a.id, "1"), (b.id, "2"), (own.id, "1")]  # 61,050.00 (see test_ledger)
    with app.app_context(), transaction():
        old_order(customer.user_id, three, [("61050.00", "paid")], minutes_ago=90)
        old_order(
            customer.user_id, three, [("20000.00", "paid"), ("41050.00", "in_process")],
            minutes_ago=60,
        )  # fmt: skip
        old_order(
            customer.user_id, three, [("61050.00", "canceled")], cancelled=True, minutes_ago=30
        )

    # Before the backfill, money cannot move on the old invoices: their receivable was never
    # posted, and confirming now would take it from the customer's other invoices.
    with app.app_context():
        waiting = str(
            Session().scalars(select(Payment.uuid).where(Payment.state == "in_process")).one()
        )
    refused = post(client, staff, f"/payments/{waiting}/confirm")
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["type"].endswith(":ledger-backfill-needed")
    with app.app_context():
        assert Session().scalars(select(Transaction.id)).first() is None

    assert backfill(app).strip() == "marketplace: 6 transaction(s) posted"
    assert backfill(app).strip() == "marketplace: 0 transaction(s) posted"
    with app.app_context():
        assert verify().ok
        assert list(
            Session().scalars(select(Transaction.operation).order_by(Transaction.id))
        ) == [  # in the order it happened
            "INVOICE_POST",
            "PAYMENT_CAPTURE",
            "INVOICE_POST",
            "PAYMENT_CAPTURE",
            "INVOICE_POST",
            "INVOICE_REVERSAL",
        ]
        # The split is fixed on the old invoices that were split: commission, lines' sellers.
        split = Session().scalars(
            select(AccountMove.commission_percent)
            .where(AccountMove.move_type == "out_invoice")
            .order_by(AccountMove.id)
        )
        assert list(split) == [D("5.00"), D("5.00"), None]
        sellers = set(Session().scalars(select(AccountMoveLine.seller_id)))
        assert sellers == {seller_a, seller_b, None}
    assert nonzero(app) == {
        f"receivable:{customer.user_id}": D("41050.00"),
        "clearing_cash": D("81050.00"),
        f"seller_pending:{seller_a}": D("12612.20"),  # 9,500.00 + 3,112.20
        f"seller_pending:{seller_b}": D("50448.81"),  # 38,000.00 + 12,448.81
        "commission_income": D("3319.00"),  # 2,500.00 + 819.00
        "sales_income": D("6638.00"),
        "sales_clearing": D("36981.99"),
        "tax_payable": D("12100.00"),
    }

    # The live code confirms the old payment still in process on top of the backfilled history.
    with app.app_context():
        pending = Session().scalars(select(Payment.uuid).where(Payment.state == "in_process"))
        pending_id = str(pending.one())
    response = post(client, staff, f"/payments/{pending_id}/confirm")
    assert response.status_code == 200, response.get_json()
    balances = nonzero(app)
    assert balances[f"seller_pending:{seller_a}"] == D("19000.00")
    assert balances[f"seller_pending:{seller_b}"] == D("76000.00")
    assert "sales_clearing" not in balances
    assert f"receivable:{customer.user_id}" not in balances
    assert backfill(app).strip() == "marketplace: 0 transaction(s) posted"
    with app.app_context():
        assert verify().ok
