"""A seller's balances and the hold: a share of a payment confirmed at T is pending until
T + LAPAK_SETTLEMENT_HOLD_DAYS x 24 h, then one job run makes it available, exactly once.

The order: the seller's 1 x 10,000 (the marketplace's 5% commission): their share is 9,500.00.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import clock
from app.clock import travel
from app.config import SettingsError
from modules.seller import jobs
from tests.conftest import wait_for_replica
from tests.modules.conftest import Caller, login
from tests.modules.marketplace.conftest import MadeProduct, order_body, place
from tests.modules.marketplace.test_ledger import assert_consistent, balances, confirm
from tests.modules.marketplace.test_ledger import refund as refund_payment
from tests.servers import Services

from .conftest import call, ok, problem, sql

D = Decimal
HOLD = timedelta(days=7)
SHARE = D("9500.00")


def sell(
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
    quantity: str = "1",
) -> tuple[str, datetime]:
    """A confirmed order of ``product``: its payment's id and the confirmation's time."""
    placed = place(client, customer, order_body((product.id, quantity)))
    confirm(client, staff, placed["payment"]["id"])
    (confirmed_at,) = sql(
        services,
        "SELECT created_at FROM ledger_transaction WHERE operation = 'PAYMENT_CAPTURE' "
        "ORDER BY id DESC LIMIT 1",
    )[0]
    return placed["payment"]["id"], confirmed_at


def again(client: FlaskClient, caller: Caller) -> Caller:
    response = login(client, caller.email)
    assert response.status_code == 200, response.get_json()
    return replace(caller, token=response.get_json()["access_token"])


def until(moment: datetime) -> timedelta:
    """How far to travel for the clock to read ``moment`` (as nearly as a running clock can)."""
    return moment - clock.now()


def release(app: Flask) -> int:
    with app.app_context():
        return jobs.release_due_holds()


def balance(client: FlaskClient, services: Services, seller: Caller) -> dict[str, Any]:
    wait_for_replica(services)
    return ok(call(client, seller, "GET", "/me/balance"))


@pytest.fixture
def product(seller: Caller, make_product: Callable[..., MadeProduct]) -> MadeProduct:
    return make_product("10000", name="BANDENG", seller_id=seller.user_id)


def test_a_share_becomes_available_exactly_when_its_hold_is_over(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    seller: Caller,
    product: MadeProduct,
) -> None:
    _, confirmed_at = sell(client, customer, staff, product, services)
    shown = balance(client, services, seller)
    assert (shown["pending"], shown["available"], shown["owed"]) == ("9500.00", "0.00", "0.00")
    assert datetime.fromisoformat(shown["next_release_at"]) == confirmed_at + HOLD
    assert shown["next_release_amount"] == "9500.00"
    assert shown["next_payout_on"] is None

    with travel(until(confirmed_at + HOLD - timedelta(seconds=1))):
        assert release(app) == 0
    assert balances(app)[f"seller_pending:{seller.user_id}"] == SHARE

    with travel(until(confirmed_at + HOLD)):
        assert release(app) == 1
        assert release(app) == 0  # the second run finds it released
    shown = balance(client, services, seller)
    assert (shown["pending"], shown["available"]) == ("0.00", "9500.00")
    assert shown["next_release_at"] is None
    released = "SELECT operation, nonce FROM ledger_transaction WHERE operation = 'HOLD_RELEASE'"
    entry = _pending_entry(services, seller.user_id)
    assert sql(services, released) == [("HOLD_RELEASE", str(entry))]
    assert_consistent(app)


def test_two_runs_at_once_release_a_share_once(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    seller: Caller,
    product: MadeProduct,
) -> None:
    sell(client, customer, staff, product, services)
    sell(client, customer, staff, product, services, quantity="2")
    moved: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            moved.append(release(app))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    with travel(HOLD + timedelta(minutes=1)):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert sum(moved) == 2  # two credits, each released by one of the runs
    assert balances(app)[f"seller_available:{seller.user_id}"] == SHARE * 3
    assert balances(app)[f"seller_pending:{seller.user_id}"] == 0
    assert sql(services, "SELECT count(*) FROM ledger_transaction "
                         "WHERE operation = 'HOLD_RELEASE'") == [(2,)]  # fmt: skip
    assert_consistent(app)


def test_a_refund_before_the_release_is_not_released_and_other_credits_keep_their_hold(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    seller: Caller,
    product: MadeProduct,
) -> None:
    first, first_at = sell(client, customer, staff, product, services)
    with travel(timedelta(days=3)):  # the tokens have expired by then: log in again
        customer, staff = again(client, customer), again(client, staff)
        _, second_at = sell(client, customer, staff, product, services)
        # Half of the first payment back: half of its share leaves pending.
        answer = refund_payment(client, staff, first, "5550.00")
        assert answer.status_code == 201, answer.get_json()
    pending = f"seller_pending:{seller.user_id}"
    assert balances(app)[pending] == SHARE * 2 - D("4750.00")

    with travel(until(first_at + HOLD)):
        assert release(app) == 1
    # What the refund left of the first share, not a cent of the second (still on hold).
    assert balances(app)[f"seller_available:{seller.user_id}"] == D("4750.00")
    assert balances(app)[pending] == SHARE

    with travel(until(second_at + HOLD)):
        assert release(app) == 1
    assert balances(app)[f"seller_available:{seller.user_id}"] == D("14250.00")
    assert balances(app)[pending] == 0
    assert_consistent(app)


def test_a_share_refunded_in_full_before_its_release_moves_nothing(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    seller: Caller,
    product: MadeProduct,
) -> None:
    payment, confirmed_at = sell(client, customer, staff, product, services)
    assert refund_payment(client, staff, payment).status_code == 201
    with travel(until(confirmed_at + HOLD)):
        assert release(app) == 0
        assert release(app) == 0
    assert sql(services, "SELECT amount, transaction_id FROM seller_hold_release") == [
        (D("0.00"), None)
    ]
    assert sql(services, "SELECT count(*) FROM ledger_transaction "
                         "WHERE operation = 'HOLD_RELEASE'") == [(0,)]  # fmt: skip
    assert_consistent(app)


def test_a_seller_reads_their_own_balance_and_staff_read_any(
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    seller: Caller,
    log_in_as: Callable[..., Caller],
    product: MadeProduct,
) -> None:
    sell(client, customer, staff, product, services)
    other = log_in_as("seller")
    wait_for_replica(services)
    assert ok(call(client, other, "GET", "/me/balance"))["pending"] == "0.00"
    assert ok(call(client, staff, "GET", f"/{seller.uuid}/balance"))["pending"] == "9500.00"
    problem(call(client, other, "GET", f"/{seller.uuid}/balance"), 403, "forbidden")
    problem(call(client, customer, "GET", f"/{seller.uuid}/balance"), 403, "forbidden")
    problem(call(client, staff, "GET", f"/{customer.uuid}/balance"), 404, "seller-not-found")
    problem(call(client, customer, "GET", "/me/balance"), 403, "forbidden")
    problem(call(client, staff, "GET", "/me/balance"), 403, "forbidden")
    problem(call(client, None, "GET", "/me/balance"), 401, "unauthenticated")


def _pending_entry(services: Services, seller_id: int) -> int:
    return sql(
        services,
        "SELECT e.id FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id "
        "WHERE a.code = %s AND e.credit > 0",
        f"seller_pending:IDR:{seller_id}",
    )[0][0]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("settlement_hold_days", "-1", "LAPAK_SETTLEMENT_HOLD_DAYS must be at least 0"),
        ("settlement_hold_days", "366", "LAPAK_SETTLEMENT_HOLD_DAYS must be at most 365"),
        ("settlement_hold_days", "seven", "LAPAK_SETTLEMENT_HOLD_DAYS"),
        ("settlement_minimum", "EUR:10", "LAPAK_SETTLEMENT_MINIMUM: 'EUR' is not one of"),
        ("settlement_minimum", "IDR:0", "the IDR minimum must be a positive amount"),
        ("settlement_minimum", "IDR:1.234", "the IDR minimum must be a positive amount"),
        ("settlement_minimum", "IDR:5,IDR:6", "once each"),
    ],
)
def test_bad_settlement_settings_refuse_to_start(
    make_embedded_app: Callable[..., Flask], name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        make_embedded_app(module_env={name: value})


def test_the_settlement_settings_are_read(make_embedded_app: Callable[..., Flask]) -> None:
    app = make_embedded_app(
        module_env={"settlement_hold_days": "3", "settlement_minimum": "USD:2.50, IDR:50000"}
    )
    settings = app.extensions["seller.settings"]
    assert settings.hold == timedelta(days=3)
    assert settings.settlement_minimum == {"USD": D("2.50"), "IDR": D("50000.00")}
    assert settings.payout_adapter == "manual"
