"""Settlements: withdrawals of the available balance, paid out by staff (or failed: the money
back), weekly payouts, who may do what, and the bank account never shown whole.

Each sale is the seller's 1 x 10,000 at the marketplace's 5%: a share of 9,500.00.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import clock
from app.clock import travel
from app.db import Session, transaction
from app.vault import Unsealed
from modules.ledger.verify import verify
from modules.marketplace.config import marketplace_settings
from modules.seller import jobs, payouts, settlements
from modules.seller.models import WEEKDAYS
from modules.seller.payouts import PayoutOrder, PayoutOutcome
from modules.user.services import create_user
from tests.conftest import wait_for_replica
from tests.modules.conftest import PASSWORD, Caller, bearer, login
from tests.modules.marketplace.conftest import MadeProduct, order_body, place
from tests.modules.marketplace.test_ledger import assert_consistent, balances, confirm
from tests.modules.marketplace.test_ledger import refund as refund_payment
from tests.servers import Services

from .conftest import ACCOUNT_NUMBER, BANK, call, ok, problem, sql
from .test_balances import HOLD, release, sell, until

D = Decimal
SETTLEMENTS = "/api/v1/settlements"
WHOLE_NUMBER = ACCOUNT_NUMBER.replace("-", "")


def settle(client: FlaskClient, caller: Caller | None, path: str = "", method: str = "POST",
           **kw: Any):  # fmt: skip
    headers = dict(caller.headers) if caller is not None else {}
    headers.update(kw.pop("headers", {}))
    return client.open(f"{SETTLEMENTS}{path}", method=method, headers=headers, **kw)


@pytest.fixture(autouse=True)
def minimum(config: dict[str, Any]) -> None:
    """Settlements of 5,000.00 and more (a share is 9,500.00; the default minimum 10,000.00)."""
    config["module_env"] = {**config.get("module_env", {}), "settlement_minimum": "IDR:5000"}


@pytest.fixture
def product(seller: Caller, make_product: Callable[..., MadeProduct]) -> MadeProduct:
    return make_product("10000", name="BANDENG", seller_id=seller.user_id)


@pytest.fixture
def funded(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
) -> Callable[[str], tuple[str, datetime]]:
    """Sell ``quantity`` of the seller's product and let its hold pass: it is available."""

    def fund(quantity: str = "1") -> tuple[str, datetime]:
        payment, confirmed_at = sell(client, customer, staff, product, services, quantity)
        with travel(until(confirmed_at + HOLD + timedelta(seconds=1))):
            assert release(app) == 1
        return payment, confirmed_at

    return fund


@pytest.fixture
def verified(seller: Caller, to_state: Callable[[Caller, str], dict[str, Any]]) -> Caller:
    to_state(seller, "verified")
    return seller


def available(app: Flask, seller: Caller) -> Decimal:
    return balances(app).get(f"seller_available:{seller.user_id}", D("0.00"))


def test_a_share_on_hold_cannot_be_withdrawn_and_once_released_it_can(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    verified: Caller,
    product: MadeProduct,
) -> None:
    _, confirmed_at = sell(client, customer, staff, product, services)
    with travel(until(confirmed_at + HOLD - timedelta(seconds=1))):
        assert release(app) == 0
    refused = settle(client, verified, json={"amount": "9500.00"})
    problem(refused, 422, "insufficient-balance")
    problem(settle(client, verified, json={}), 422, "settlement-below-minimum")
    assert sql(services, "SELECT count(*) FROM seller_settlement") == [(0,)]

    with travel(until(confirmed_at + HOLD)):
        assert release(app) == 1
    made = ok(settle(client, verified, json={}), 201)  # all that is available
    with app.app_context():  # numbered by the year in the marketplace's time zone
        year = (
            datetime.fromisoformat(made["created_at"])
            .astimezone(marketplace_settings().timezone)
            .year
        )
    assert (made["name"], made["amount"], made["state"]) == (f"STL/{year}/00001", "9500.00",
                                                             "pending")  # fmt: skip
    assert made["bank_account"]["number"] == "•••• 3977"
    assert made["completed_at"] is None
    assert available(app, verified) == 0
    assert balances(app)["payout_clearing"] == D("9500.00")
    assert sql(services, "SELECT name FROM core_outbox_event WHERE name LIKE 'settlement.%%'") == [
        ("settlement.created",)
    ]
    assert_consistent(app)


def test_an_idempotency_key_replays_the_first_withdrawal(
    app: Flask,
    client: FlaskClient,
    services: Services,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    funded("2")
    key = {"Idempotency-Key": "withdraw-1"}
    first = ok(settle(client, verified, json={"amount": "10000.00"}, headers=key), 201)
    again = ok(settle(client, verified, json={"amount": "10000.00"}, headers=key), 201)
    assert again == first
    reused = settle(client, verified, json={"amount": "20000.00"}, headers=key)
    problem(reused, 422, "idempotency-key-reused")
    assert available(app, verified) == D("9000.00")
    assert sql(services, "SELECT count(*) FROM seller_settlement") == [(1,)]


def test_twenty_withdrawals_at_once_never_overdraw(
    app: Flask, services: Services, verified: Caller, funded: Callable[..., Any]
) -> None:
    funded("3")  # 28,500.00 available: five withdrawals of 5,000.00 fit
    statuses: list[int] = []
    start = threading.Barrier(20)

    def withdraw() -> None:
        client = app.test_client()
        start.wait()
        statuses.append(settle(client, verified, json={"amount": "5000.00"}).status_code)

    threads = [threading.Thread(target=withdraw) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [422] * 15
    assert available(app, verified) == D("3500.00")
    names = sql(services, "SELECT name FROM seller_settlement ORDER BY name")
    assert [name for (name,) in names] == [f"STL/{clock.now().year}/{n:05d}" for n in range(1, 6)]
    assert_consistent(app)


def test_a_failed_payout_gives_the_money_back_and_a_completed_one_is_timed(
    app: Flask,
    client: FlaskClient,
    services: Services,
    staff: Caller,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    funded("2")
    first = ok(settle(client, verified, json={"amount": "10000.00"}), 201)
    second = ok(settle(client, verified, json={"amount": "9000.00"}), 201)
    assert available(app, verified) == 0

    problem(settle(client, verified, f"/{first['id']}/fail", json={"reason": "x"}), 403,
            "forbidden")  # fmt: skip
    problem(settle(client, staff, f"/{first['id']}/fail", json={}), 422, "validation-failed")
    # Completed or failed only once staff have started the transfer.
    for done_at_once, body in (("fail", {"reason": "x"}), ("complete", {})):
        problem(settle(client, staff, f"/{first['id']}/{done_at_once}", json=body), 409,
                "invalid-settlement-transition")  # fmt: skip
    ok(settle(client, staff, f"/{first['id']}/processing", json={}))
    failed = ok(settle(client, staff, f"/{first['id']}/fail", json={"reason": "account closed"}))
    assert (failed["state"], failed["failure_reason"]) == ("failed", "account closed")
    assert available(app, verified) == D("10000.00")
    problem(settle(client, staff, f"/{first['id']}/complete", json={}), 409,
            "invalid-settlement-transition")  # fmt: skip

    ok(settle(client, staff, f"/{second['id']}/processing", json={}))
    before = clock.now()
    done = ok(settle(client, staff, f"/{second['id']}/complete", json={"reference": "BCA-991"}))
    after = clock.now()
    completed_at = datetime.fromisoformat(done["completed_at"])
    assert before <= completed_at <= after
    assert (done["state"], done["payout_reference"]) == ("completed", "BCA-991")
    # Asking again changes nothing.
    assert (
        ok(settle(client, staff, f"/{second['id']}/complete", json={}))["completed_at"]
        == (done["completed_at"])
    )
    assert balances(app)["payout_clearing"] == 0
    assert balances(app)["payout_bank"] == D("-9000.00")
    assert available(app, verified) == D("10000.00")
    names = sql(services, "SELECT name FROM core_outbox_event WHERE name LIKE 'settlement.%%' "
                          "ORDER BY id")  # fmt: skip
    assert [name for (name,) in names] == [
        "settlement.created", "settlement.created", "settlement.failed", "settlement.completed"
    ]  # fmt: skip
    assert sql(
        services,
        "SELECT operation FROM ledger_transaction WHERE operation LIKE 'PAYOUT%%' ORDER BY id",
    ) == [
        ("PAYOUT",),
        ("PAYOUT",),
        ("PAYOUT_REVERSAL",),
        ("PAYOUT_COMPLETE",),
    ]
    assert_consistent(app)


class FakeBank:
    """An adapter that pays at once, as a bank's API would."""

    code = "fakebank"
    automatic = True

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.orders: list[PayoutOrder] = []

    def send(self, order: PayoutOrder) -> PayoutOutcome:
        self.orders.append(order)
        return PayoutOutcome(self.answer, reference=f"FB-{len(self.orders)}")


@pytest.mark.parametrize("answer", ["completed", "failed"])
def test_an_automatic_adapter_sends_each_pending_settlement_once(
    app: Flask,
    client: FlaskClient,
    services: Services,
    verified: Caller,
    funded: Callable[..., Any],
    answer: str,
) -> None:
    funded()
    bank = FakeBank(answer)
    payouts.register(app, bank)
    settings = app.extensions["seller.settings"]
    app.extensions["seller.settings"] = replace(settings, payout_adapter="fakebank")
    made = ok(settle(client, verified, json={}), 201)
    assert made["payout_adapter"] == "fakebank"
    with app.app_context():
        assert jobs.send_automatic_payouts() == 1
        assert jobs.send_automatic_payouts() == 0
    assert [(o.settlement, o.account_number) for o in bank.orders] == [(made["name"], WHOLE_NUMBER)]
    assert WHOLE_NUMBER not in repr(bank.orders[0])
    assert isinstance(bank.orders[0].account_number, Unsealed)
    assert WHOLE_NUMBER not in repr(bank.orders[0].account_number)
    assert sql(
        services, "SELECT state, payout_reference, completed_at IS NOT NULL FROM seller_settlement"
    ) == [(answer, "FB-1", answer == "completed")]
    paid = D("9500.00") if answer == "completed" else 0
    assert balances(app).get("payout_bank", D("0.00")) == -paid
    assert available(app, verified) == D("9500.00") - paid
    assert_consistent(app)


@pytest.mark.parametrize("change", ["account", "review"])
def test_an_automatic_payout_goes_only_to_the_verified_account_it_was_made_for(
    app: Flask,
    client: FlaskClient,
    services: Services,
    verified: Caller,
    funded: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    change: str,
) -> None:
    funded()
    bank = FakeBank("completed")
    payouts.register(app, bank)
    settings = app.extensions["seller.settings"]
    app.extensions["seller.settings"] = replace(settings, payout_adapter="fakebank")
    made = ok(settle(client, verified, json={}), 201)
    if change == "account":  # same bank and holder, another number: the last four differ
        other = {**BANK, "account_number": "7700-1234-5678"}
        ok(call(client, verified, "PATCH", "/me", json={"bank_account": other}))
    else:
        sql(services, "UPDATE seller_profile SET kyc_state = 'pending' RETURNING id")
    with app.app_context():
        assert jobs.send_automatic_payouts() == 0
    assert bank.orders == []
    [(state, reason)] = sql(services, "SELECT state, failure_reason FROM seller_settlement")
    assert state == "failed"
    assert ("account changed" if change == "account" else "KYC review is pending") in reason
    assert available(app, verified) == D("9500.00")
    assert f"settlement {made['name']} not sent" in caplog.text
    assert "7700" not in caplog.text
    assert_consistent(app)


class FlakyBank(FakeBank):
    """Raises on the first order, then pays with a reference longer than the column."""

    def send(self, order: PayoutOrder) -> PayoutOutcome:
        self.orders.append(order)
        if len(self.orders) == 1:
            raise ConnectionError("the bank hung up")
        return PayoutOutcome("completed", reference="R" * 150)


def test_a_failing_adapter_leaves_its_settlement_processing_and_the_others_are_sent(
    app: Flask,
    client: FlaskClient,
    services: Services,
    staff: Caller,
    verified: Caller,
    funded: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    funded("2")
    bank = FlakyBank("completed")
    payouts.register(app, bank)
    settings = app.extensions["seller.settings"]
    app.extensions["seller.settings"] = replace(settings, payout_adapter="fakebank")
    first = ok(settle(client, verified, json={"amount": "10000.00"}), 201)
    second = ok(settle(client, verified, json={"amount": "9000.00"}), 201)
    with app.app_context():
        assert jobs.send_automatic_payouts() == 1
        assert jobs.send_automatic_payouts() == 0  # the first is not sent again
    assert [o.settlement for o in bank.orders] == [first["name"], second["name"]]
    assert sql(
        services, "SELECT name, state, payout_reference FROM seller_settlement ORDER BY id"
    ) == [(first["name"], "processing", None), (second["name"], "completed", "R" * 100)]
    [logged] = [r for r in caplog.records if "the bank hung up" in (r.exc_text or "")]
    assert logged.levelno == logging.ERROR
    assert first["name"] in logged.getMessage()

    # Staff find it with the bank gone and fail it; the bank then says it paid after all.
    ok(settle(client, staff, f"/{first['id']}/fail", json={"reason": "no answer from the bank"}))
    caplog.clear()
    with app.app_context():
        settlements.record_outcome(uuid.UUID(first["id"]), "completed", "LATE-1", None)
    assert sql(services, "SELECT state FROM seller_settlement WHERE name = %s", first["name"]) == [
        ("failed",)
    ]
    [conflict] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert first["name"] in conflict.getMessage()
    assert "LATE-1" in conflict.getMessage()
    [(payload,)] = sql(services, "SELECT payload FROM core_outbox_event "
                                 "WHERE name = 'settlement.outcome_conflict'")  # fmt: skip
    assert (payload["reported"], payload["state"]) == ("completed", "failed")
    assert available(app, verified) == D("10000.00")
    assert_consistent(app)


@pytest.fixture
def payout_setting(config: dict[str, Any], request: pytest.FixtureRequest) -> str:
    """``LAPAK_SETTLEMENT_PAYOUT_ADAPTER`` for the app (ask for it before ``app``)."""
    env = {**config.get("module_env", {}), "settlement_payout_adapter": request.param}
    config["module_env"] = env
    return request.param


@pytest.mark.parametrize("payout_setting", ["fakebank"], indirect=True)
def test_an_adapter_registered_after_the_seller_module_can_be_configured(
    payout_setting: str,
    app: Flask,
    client: FlaskClient,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    # The app started although no "fakebank" existed at the seller module's setup.
    funded()
    bank = FakeBank("completed")
    payouts.register(app, bank)  # as a module loaded after seller does in its own setup
    made = ok(settle(client, verified, json={}), 201)
    assert made["payout_adapter"] == payout_setting
    with app.app_context():
        assert jobs.send_automatic_payouts() == 1
    assert [o.settlement for o in bank.orders] == [made["name"]]
    assert_consistent(app)


@pytest.mark.parametrize("payout_setting", ["swift"], indirect=True)
def test_an_unknown_payout_adapter_makes_and_sends_nothing_and_says_which_setting(
    payout_setting: str,
    app: Flask,
    client: FlaskClient,
    services: Services,
    verified: Caller,
    funded: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    funded()
    refused = settle(client, verified, json={})
    body = problem(refused, 503, "payout-adapter-not-configured")
    assert refused.headers["Retry-After"]
    assert body["setting"] == "LAPAK_SETTLEMENT_PAYOUT_ADAPTER"
    assert "'swift' is not a payout adapter (one of manual)" in body["detail"]
    assert sql(services, "SELECT count(*) FROM seller_settlement") == [(0,)]
    assert available(app, verified) == D("9500.00")
    with app.app_context():
        assert jobs.send_automatic_payouts() == 0
        assert jobs.pay_out_weekly() == 0
    assert caplog.text.count("LAPAK_SETTLEMENT_PAYOUT_ADAPTER: 'swift'") == 2


def test_the_database_refuses_a_second_settlement_of_the_same_number(
    services: Services, verified: Caller, funded: Callable[..., Any], client: FlaskClient
) -> None:
    funded()
    made = ok(settle(client, verified, json={"amount": "5000.00"}), 201)
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql(
            services,
            "INSERT INTO seller_settlement (uuid, name, seller_id, currency, amount, state,"
            " bank_code, bank_holder_name, bank_account_last4, payout_adapter, created_at,"
            " updated_at) SELECT gen_random_uuid(), name, seller_id, currency, 1, 'pending',"
            " bank_code, bank_holder_name, bank_account_last4, payout_adapter, now(), now()"
            " FROM seller_settlement WHERE name = %s",
            made["name"],
        )


def test_a_seller_cancels_their_pending_settlement(
    app: Flask, client: FlaskClient, verified: Caller, funded: Callable[..., Any]
) -> None:
    funded()
    made = ok(settle(client, verified, json={}), 201)
    canceled = ok(settle(client, verified, f"/{made['id']}/cancel"))
    assert canceled["state"] == "canceled"
    assert available(app, verified) == D("9500.00")
    problem(settle(client, verified, f"/{made['id']}/processing", json={}), 403, "forbidden")
    assert_consistent(app)


def test_a_settlement_staff_are_paying_can_no_longer_be_canceled(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    funded()
    made = ok(settle(client, verified, json={}), 201)
    ok(settle(client, staff, f"/{made['id']}/processing", json={}))
    for who in (verified, staff):
        problem(settle(client, who, f"/{made['id']}/cancel"), 409, "invalid-settlement-transition")
    assert available(app, verified) == 0
    problem(settle(client, verified, json={"amount": "9500.00"}), 422, "insufficient-balance")
    assert_consistent(app)


def test_who_may_withdraw_and_read_settlements(
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    verified: Caller,
    log_in_as: Callable[..., Caller],
    to_state: Callable[[Caller, str], dict[str, Any]],
    funded: Callable[..., Any],
) -> None:
    funded()
    unverified, bankless, other = log_in_as("seller"), log_in_as("seller"), log_in_as("seller")
    to_state(unverified, "pending")
    refused = problem(settle(client, unverified, json={}), 403, "withdrawal-not-allowed")
    assert refused["reason"] == "not-verified"
    refused = problem(settle(client, bankless, json={}), 403, "withdrawal-not-allowed")
    assert refused["reason"] == "no-bank-account"
    problem(settle(client, customer, json={}), 403, "forbidden")
    problem(settle(client, staff, json={}), 403, "forbidden")
    problem(settle(client, None, json={}), 401, "unauthenticated")
    made = ok(settle(client, verified, json={}), 201)

    wait_for_replica(services)
    problem(settle(client, other, f"/{made['id']}", "GET"), 404, "settlement-not-found")
    problem(settle(client, other, f"/{made['id']}/cancel"), 404, "settlement-not-found")
    problem(settle(client, customer, f"/{made['id']}", "GET"), 403, "forbidden")
    assert ok(settle(client, other, "", "GET"))["items"] == []
    assert [s["id"] for s in ok(settle(client, verified, "", "GET"))["items"]] == [made["id"]]
    assert ok(settle(client, verified, f"/{made['id']}", "GET"))["name"] == made["name"]
    listed = settle(client, staff, "", "GET", query_string={"seller": str(verified.uuid),
                                                            "state": "pending"})  # fmt: skip
    assert [s["id"] for s in ok(listed)["items"]] == [made["id"]]
    listed = settle(client, staff, "", "GET", query_string={"state": "completed"})
    assert ok(listed)["items"] == []
    listed = settle(client, staff, "", "GET", query_string={"seller": str(customer.uuid)})
    assert ok(listed)["items"] == []


def test_the_bank_account_never_appears_whole_in_answers_events_or_logs(
    app: Flask,
    client: FlaskClient,
    services: Services,
    staff: Caller,
    verified: Caller,
    funded: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    funded("2")
    answers = [settle(client, verified, json={"amount": "10000.00"})]
    made = answers[0].get_json()
    answers.append(settle(client, staff, f"/{made['id']}/processing", json={}))
    answers.append(settle(client, staff, f"/{made['id']}/fail", json={"reason": "closed"}))
    answers.append(settle(client, verified, json={}))
    wait_for_replica(services)
    answers.append(settle(client, staff, "", "GET"))
    answers.append(settle(client, verified, f"/{made['id']}", "GET"))
    for answer in answers:
        assert answer.status_code in (200, 201), answer.get_json()
        assert WHOLE_NUMBER not in answer.get_data(as_text=True)
        assert WHOLE_NUMBER[:-4] not in answer.get_data(as_text=True)
    events = sql(services, "SELECT payload::text FROM core_outbox_event")
    assert all(WHOLE_NUMBER[:-4] not in payload for (payload,) in events)
    assert WHOLE_NUMBER[:-4] not in caplog.text
    assert ACCOUNT_NUMBER not in caplog.text


def test_a_weekly_payout_day_makes_one_settlement_of_all_available(
    app: Flask,
    client: FlaskClient,
    services: Services,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    funded()
    with app.app_context():
        today = clock.now().astimezone(marketplace_settings().timezone).date()
    schedule = {"interval": "weekly", "weekday": WEEKDAYS[today.weekday()]}
    ok(call(client, verified, "PATCH", "/me", json={"payout_schedule": schedule}))
    wait_for_replica(services)
    assert ok(call(client, verified, "GET", "/me/balance"))["next_payout_on"] == today.isoformat()
    with app.app_context():
        assert payouts.pay_out_weekly(limit=0) == 0  # capped: the next run takes it
        assert jobs.pay_out_weekly() == 1
        assert jobs.pay_out_weekly() == 0
    assert sql(services, "SELECT amount, scheduled_for, state FROM seller_settlement") == [
        (D("9500.00"), today, "pending")
    ]
    assert available(app, verified) == 0
    wait_for_replica(services)
    next_week = (today + timedelta(days=7)).isoformat()
    assert ok(call(client, verified, "GET", "/me/balance"))["next_payout_on"] == next_week
    assert_consistent(app)


def test_a_refund_after_the_payout_leaves_a_receivable_that_the_next_share_pays_back(
    app: Flask,
    client: FlaskClient,
    services: Services,
    customer: Caller,
    staff: Caller,
    verified: Caller,
    product: MadeProduct,
    funded: Callable[..., Any],
) -> None:
    payment, _ = funded()
    made = ok(settle(client, verified, json={}), 201)
    ok(settle(client, staff, f"/{made['id']}/processing", json={}))
    ok(settle(client, staff, f"/{made['id']}/complete", json={}))
    assert refund_payment(client, staff, payment).status_code == 201
    owed = f"seller_receivable:{verified.user_id}"
    pending = f"seller_pending:{verified.user_id}"
    assert balances(app)[owed] == D("9500.00")
    wait_for_replica(services)
    shown = ok(call(client, verified, "GET", "/me/balance"))
    assert (shown["owed"], shown["pending"], shown["available"]) == ("9500.00", "0.00", "0.00")

    sell(client, customer, staff, product, services)  # 9,500.00: all of it pays the debt
    assert (balances(app)[owed], balances(app)[pending]) == (0, 0)
    placed = place(client, customer, order_body((product.id, "2")))
    confirm(client, staff, placed["payment"]["id"])  # 19,000.00: nothing owed, all pending
    assert (balances(app)[owed], balances(app)[pending]) == (0, D("19000.00"))
    assert_consistent(app)


def test_a_failed_payout_pays_back_what_a_refund_left_owed_first(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    verified: Caller,
    funded: Callable[..., Any],
) -> None:
    payment, _ = funded()
    made = ok(settle(client, verified, json={}), 201)
    assert refund_payment(client, staff, payment, "5550.00").status_code == 201  # 4,750.00 owed
    owed = f"seller_receivable:{verified.user_id}"
    assert balances(app)[owed] == D("4750.00")
    ok(settle(client, staff, f"/{made['id']}/processing", json={}))
    ok(settle(client, staff, f"/{made['id']}/fail", json={"reason": "account closed"}))
    assert balances(app)[owed] == 0
    assert available(app, verified) == D("4750.00")
    assert_consistent(app)


def test_the_embedded_default_runs_holds_withdrawals_and_payouts(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    with app.app_context(), transaction():
        for role in ("staff", "customer", "seller"):
            create_user(f"{role}@example.test", role=role, password=PASSWORD)
    client = app.test_client()
    staff, customer, seller = (
        bearer(login(client, f"{role}@example.test").get_json()["access_token"])
        for role in ("staff", "customer", "seller")
    )
    ok(client.patch("/api/v1/sellers/me", json={"bank_account": BANK}, headers=seller))
    ok(client.post("/api/v1/sellers/me/kyc", headers=seller))
    with app.app_context():
        seller_id, seller_uuid = (
            Session().execute(text("SELECT id, uuid FROM user_account WHERE role = 'seller'")).one()
        )
    ok(client.post(f"/api/v1/sellers/{uuid.UUID(seller_uuid)}/kyc/approve", headers=staff))
    product = ok(client.post("/api/v1/marketplace/products", headers=seller,
                             json={"name": "BANDENG", "list_price": "10000"}), 201)  # fmt: skip
    order = ok(client.post("/api/v1/marketplace/orders", headers=customer,
                           json=order_body((product["id"], "1"))), 201)  # fmt: skip
    payment = order["payment"]["id"]
    ok(client.post(f"/api/v1/marketplace/payments/{payment}/confirm", headers=staff))
    problem(client.post(SETTLEMENTS, json={"amount": "9500.00"}, headers=seller), 422,
            "insufficient-balance")  # fmt: skip
    with travel(HOLD + timedelta(minutes=1)), app.app_context():
        assert jobs.release_due_holds() == 1
        assert jobs.release_due_holds() == 0
    shown = ok(client.get("/api/v1/sellers/me/balance", headers=seller))
    assert (shown["available"], shown["pending"]) == ("9500.00", "0.00")
    made = ok(client.post(SETTLEMENTS, json={}, headers=seller), 201)
    ok(client.post(f"{SETTLEMENTS}/{made['id']}/processing", json={}, headers=staff))
    failed = ok(client.post(f"{SETTLEMENTS}/{made['id']}/fail", json={"reason": "closed"},
                            headers=staff))  # fmt: skip
    assert failed["state"] == "failed"
    again = ok(client.post(SETTLEMENTS, json={}, headers=seller), 201)
    ok(client.post(f"{SETTLEMENTS}/{again['id']}/processing", json={}, headers=staff))
    done = ok(client.post(f"{SETTLEMENTS}/{again['id']}/complete", json={}, headers=staff))
    assert done["completed_at"] is not None
    assert [s["name"] for s in ok(client.get(SETTLEMENTS, headers=staff))["items"]] == [
        again["name"], made["name"]
    ]  # fmt: skip
    with app.app_context():
        today = clock.now().astimezone(marketplace_settings().timezone).date()
    schedule = {"interval": "weekly", "weekday": WEEKDAYS[today.weekday()]}
    ok(client.patch("/api/v1/sellers/me", json={"payout_schedule": schedule}, headers=seller))
    with app.app_context():
        assert jobs.pay_out_weekly() == 0  # selected on SQLite too: nothing left to pay
        assert verify().ok
        assert Session().execute(
            text("SELECT balance FROM ledger_account WHERE code = :code"),
            {"code": f"seller_available:IDR:{seller_id}"},
        ).scalar() == D("0.00")
