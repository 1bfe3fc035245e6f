"""The marketplace's ledger postings, each rule as a worked example with every account's balance.

The order of the examples: two sellers' lines and one of the platform's own.

| line | untaxed | tax 11% | commission 5% | seller's net |
| --- | --- | --- | --- | --- |
| seller A: 1 x 10,000 | 10,000.00 | 1,100.00 | 500.00 | 9,500.00 |
| seller B: 2 x 20,000 | 40,000.00 | 4,400.00 | 2,000.00 | 38,000.00 |
| platform: 1 x 5,000 | 5,000.00 | 550.00 | - | (sales income 5,000.00) |
| **T = 61,050.00** | U = 55,000.00 | X = 6,050.00 | 2,500.00 | |
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.db import Session, transaction
from modules.ledger.models import Account, Transaction
from modules.ledger.posting import Leg, Posting, post
from modules.ledger.verify import verify
from modules.marketplace.postings import part
from modules.marketplace.refunds import _allocate
from tests.modules.conftest import Caller

from .conftest import MadeProduct, assert_problem, get, order_body, place
from .conftest import post as http_post

D = Decimal


def balances(app: Flask) -> dict[str, Decimal]:
    """Every account's balance by ``purpose`` (platform) or ``purpose:holder`` (holders)."""
    with app.app_context():
        accounts = Session().scalars(select(Account)).all()
        found = {}
        for account in accounts:
            key = account.purpose if account.holder_id is None else (
                f"{account.purpose}:{account.holder_id}"
            )  # fmt: skip
            found[key] = account.balance
        return found


def nonzero(app: Flask) -> dict[str, Decimal]:
    return {key: value for key, value in balances(app).items() if value != 0}


def assert_consistent(app: Flask) -> None:
    with app.app_context():
        report = verify()
        assert report.ok, report.problems


def operations(app: Flask) -> list[str]:
    with app.app_context():
        return list(Session().scalars(select(Transaction.operation).order_by(Transaction.id)))


@pytest.fixture
def sellers(make_user: Callable[..., tuple[int, Any, str]]) -> tuple[int, int]:
    return make_user(role="seller")[0], make_user(role="seller")[0]


@pytest.fixture
def three_lines(
    make_product: Callable[..., MadeProduct], sellers: tuple[int, int]
) -> list[tuple[str, str]]:
    seller_a, seller_b = sellers
    a = make_product("10000", name="BANDENG", seller_id=seller_a)
    b = make_product("20000", name="LELE", seller_id=seller_b)
    own = make_product("5000", name="TONGKOL")
    return [(a.id, "1"), (b.id, "2"), (own.id, "1")]


def confirm(client: FlaskClient, staff: Caller, payment_id: str) -> dict[str, Any]:
    response = http_post(client, staff, f"/payments/{payment_id}/confirm")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refund(
    client: FlaskClient, staff: Caller, payment_id: str, amount: str | None = None, **extra: Any
) -> Any:
    body: dict[str, Any] = {"reason": "damaged", **extra}
    if amount is not None:
        body["amount"] = amount
    return http_post(client, staff, f"/payments/{payment_id}/refunds", body)


def test_invoice_posted_then_confirmed_splits_between_two_sellers_and_the_platform(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    sellers: tuple[int, int],
    three_lines: list[tuple[str, str]],
) -> None:
    seller_a, seller_b = sellers
    placed = place(client, customer, order_body(*three_lines))
    assert placed["invoice"]["amount_total"] == "61050.00"
    # INVOICE_POST: DR receivable T; CR sales clearing U, tax payable X.
    assert nonzero(app) == {
        f"receivable:{customer.user_id}": D("61050.00"),
        "sales_clearing": D("55000.00"),
        "tax_payable": D("6050.00"),
    }
    assert_consistent(app)

    confirm(client, staff, placed["payment"]["id"])
    # PAYMENT_CAPTURE: the receivable settled, the shares released, sales clearing emptied.
    assert nonzero(app) == {
        "clearing_bank_transfer": D("61050.00"),
        f"seller_pending:{seller_a}": D("9500.00"),
        f"seller_pending:{seller_b}": D("38000.00"),
        "commission_income": D("2500.00"),
        "sales_income": D("5000.00"),
        "tax_payable": D("6050.00"),
    }
    assert balances(app)[f"receivable:{customer.user_id}"] == 0
    assert balances(app)["sales_clearing"] == 0
    assert operations(app) == ["INVOICE_POST", "PAYMENT_CAPTURE"]
    with app.app_context():
        memo, reference = (
            Session()
            .execute(select(Transaction.memo, Transaction.reference).order_by(Transaction.id))
            .first()
        )
    assert memo == placed["invoice"]["number"]
    assert reference == f"invoice:{placed['invoice']['id']}"
    # Confirming again posts nothing more.
    confirm(client, staff, placed["payment"]["id"])
    assert operations(app) == ["INVOICE_POST", "PAYMENT_CAPTURE"]
    assert_consistent(app)


def test_partial_payments_release_parts_that_add_up_to_each_share(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    sellers: tuple[int, int],
    three_lines: list[tuple[str, str]],
) -> None:
    seller_a, seller_b = sellers
    placed = place(
        client,
        customer,
        order_body(*three_lines, payment={"method": "cash", "amount": "20000"}),
    )
    confirm(client, staff, placed["payment"]["id"])
    # 20,000 of 61,050: each part is round(V x 20000 / 61050).
    assert nonzero(app) == {
        f"receivable:{customer.user_id}": D("41050.00"),
        "clearing_cash": D("20000.00"),
        f"seller_pending:{seller_a}": D("3112.20"),
        f"seller_pending:{seller_b}": D("12448.81"),
        "commission_income": D("819.00"),  # 163.80 + 655.20
        "sales_income": D("1638.00"),
        "sales_clearing": D("36981.99"),  # 55,000 - 18,018.01 released
        "tax_payable": D("6050.00"),
    }
    second = http_post(
        client,
        customer,
        f"/invoices/{placed['invoice']['id']}/payments",
        {"method": "bank_transfer"},
    )
    assert second.status_code == 201, second.get_json()
    confirm(client, staff, second.get_json()["id"])
    # The rest: round(V) - round(V x 20000 / 61050); the parts add up to the whole shares.
    assert nonzero(app) == {
        "clearing_cash": D("20000.00"),
        "clearing_bank_transfer": D("41050.00"),
        f"seller_pending:{seller_a}": D("9500.00"),
        f"seller_pending:{seller_b}": D("38000.00"),
        "commission_income": D("2500.00"),
        "sales_income": D("5000.00"),
        "tax_payable": D("6050.00"),
    }
    assert_consistent(app)


def test_cumulative_parts_always_add_up_to_the_whole() -> None:
    generator = random.Random(11)
    for _ in range(500):
        total = D(generator.randint(1, 10_000_000)) / 100
        value = (total * D(generator.randint(0, 100)) / 100).quantize(D("0.01"))
        cuts = sorted({D(generator.randint(0, int(total * 100))) / 100 for _ in range(5)})
        steps = [D(0), *cuts, total]
        parts = [part(value, a, b, total) for a, b in pairwise(steps)]
        assert sum(parts) == value
        assert all(p >= 0 for p in parts)
        weights = [D(generator.randint(0, 1000)) for _ in range(generator.randint(1, 6))]
        allocated = _allocate(value, weights)
        assert sum(allocated) == value
        assert all(p >= 0 for p in allocated)


def test_cancelling_an_unpaid_order_reverses_its_invoice_on_the_ledger(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    three_lines: list[tuple[str, str]],
) -> None:
    placed = place(client, customer, order_body(*three_lines))
    response = http_post(client, customer, f"/orders/{placed['order']['id']}/cancel")
    assert response.status_code == 200, response.get_json()
    # INVOICE_REVERSAL: the credit note gives back what the receivable held.
    assert nonzero(app) == {}
    assert operations(app) == ["INVOICE_POST", "INVOICE_REVERSAL"]
    assert_consistent(app)


def test_partial_then_full_refund_gives_back_exactly_what_was_captured(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    sellers: tuple[int, int],
    three_lines: list[tuple[str, str]],
) -> None:
    seller_a, seller_b = sellers
    placed = place(client, customer, order_body(*three_lines))
    payment_id = placed["payment"]["id"]
    confirm(client, staff, payment_id)

    first = refund(client, staff, payment_id, "6105.00")  # 10%
    assert first.status_code == 201, first.get_json()
    shown = first.get_json()
    assert shown["state"] == "pending"
    assert shown["amount"] == "6105.00"
    assert shown["credit_note_number"].startswith("RINV/")
    assert nonzero(app) == {
        "clearing_bank_transfer": D("54945.00"),
        f"seller_pending:{seller_a}": D("8550.00"),
        f"seller_pending:{seller_b}": D("34200.00"),
        "commission_income": D("2250.00"),
        "sales_income": D("4500.00"),
        "tax_payable": D("5445.00"),
    }
    note = get(client, staff, f"/invoices/{shown['credit_note']}").get_json()
    assert note["move_type"] == "out_refund"
    assert note["reversed_entry"] == placed["invoice"]["id"]
    assert [note["amount_untaxed"], note["amount_tax"], note["amount_total"]] == [
        "5500.00",
        "605.00",
        "6105.00",
    ]
    assert sum(D(line["price_total"]) for line in note["lines"]) == D("6105.00")
    invoice = get(client, staff, f"/invoices/{placed['invoice']['id']}").get_json()
    assert invoice["payment_state"] == "paid"

    rest = refund(client, staff, payment_id)  # the default: all that remains
    assert rest.status_code == 201, rest.get_json()
    assert rest.get_json()["amount"] == "54945.00"
    assert nonzero(app) == {}
    invoice = get(client, staff, f"/invoices/{placed['invoice']['id']}").get_json()
    assert invoice["payment_state"] == "reversed"
    assert operations(app) == ["INVOICE_POST", "PAYMENT_CAPTURE", "REFUND", "REFUND"]
    # Nothing left: the default amount is refused, an explicit one too.
    assert_problem(refund(client, staff, payment_id), 409, "payment-not-refundable")
    assert_problem(refund(client, staff, payment_id, "0.01"), 422, "refund-exceeds-payment")
    # Every confirmed payment refunded: the order can be cancelled now, posting nothing more.
    cancelled = http_post(client, staff, f"/orders/{placed['order']['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["state"] == "cancel"
    assert len(operations(app)) == 4
    assert_consistent(app)


def test_refunding_the_only_confirmed_part_reverses_the_unpaid_rest_too(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    sellers: tuple[int, int],
    three_lines: list[tuple[str, str]],
) -> None:
    placed = place(
        client,
        customer,
        order_body(*three_lines, payment={"method": "cash", "amount": "20000"}),
    )
    confirm(client, staff, placed["payment"]["id"])
    pending = http_post(
        client, customer, f"/invoices/{placed['invoice']['id']}/payments", {"method": "cash"}
    )
    assert pending.status_code == 201
    # A partial cancel is refused while a confirmed payment is not refunded.
    refused = http_post(client, staff, f"/orders/{placed['order']['id']}/cancel")
    assert_problem(refused, 409)
    done = refund(client, staff, placed["payment"]["id"], "7000.00")
    assert done.status_code == 201, done.get_json()
    done = refund(client, staff, placed["payment"]["id"])
    assert done.get_json()["amount"] == "13000.00"
    # Refunds cover the confirmed 20,000: the invoice is reversed, the payment in process
    # cancelled, and the 41,050 never paid reversed in the same posting.
    assert nonzero(app) == {}
    invoice = get(client, staff, f"/invoices/{placed['invoice']['id']}").get_json()
    assert invoice["payment_state"] == "reversed"
    payment = get(client, staff, f"/payments/{pending.get_json()['id']}").get_json()
    assert payment["state"] == "canceled"
    assert_consistent(app)


def test_a_refund_takes_from_available_then_books_a_receivable_when_pending_was_released(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    sellers: tuple[int, int],
    three_lines: list[tuple[str, str]],
) -> None:
    seller_a, seller_b = sellers
    placed = place(client, customer, order_body(*three_lines))
    confirm(client, staff, placed["payment"]["id"])
    with app.app_context():
        # The seller module's hold release: pending -> available.
        with transaction():
            post(
                Posting(
                    "HOLD_RELEASE",
                    "release-a",
                    (
                        Leg("seller_pending", "IDR", debit=D("9500.00"), holder_id=seller_a),
                        Leg("seller_available", "IDR", credit=D("9500.00"), holder_id=seller_a),
                    ),
                )
            )
        with transaction():  # and 9,000.00 of it paid out (an ADJUSTMENT by staff)
            post(
                Posting(
                    "ADJUSTMENT",
                    "payout-a",
                    (
                        Leg("seller_available", "IDR", debit=D("9000.00"), holder_id=seller_a),
                        Leg("manual_clearing", "IDR", credit=D("9000.00")),
                    ),
                )
            )
    response = refund(client, staff, placed["payment"]["id"])
    assert response.status_code == 201, response.get_json()
    # A's 9,500.00: nothing pending, 500.00 available, 9,000.00 now owed by the seller.
    after = nonzero(app)
    assert after == {
        f"seller_receivable:{seller_a}": D("9000.00"),
        "manual_clearing": D("-9000.00"),
    }
    assert balances(app)[f"seller_pending:{seller_b}"] == 0
    assert balances(app)[f"seller_available:{seller_a}"] == 0
    assert_consistent(app)
