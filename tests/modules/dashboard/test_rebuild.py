"""``lapak dashboard rebuild``: over history the dashboard never saw it counts each payment as
the ledger posted it; it reads in bulk and holds the subscribers up only for its swap, without
losing or double counting what they count meanwhile."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, update

from app import clock
from app.db import Session, transaction, utcnow
from modules.dashboard import rollups
from modules.dashboard.models import CountedFact, DailyRollup
from modules.ledger.models import Account, Entry, Transaction
from modules.marketplace.models import Payment
from tests.modules.marketplace.test_backfill import old_order
from tests.servers import Services
from tests.statements import recorded_in

from .conftest import (
    MARKETPLACE,
    assert_stats_match,
    build_market,
    deliver,
    move_money,
    notify,
    ok,
    order,
    person,
    product,
    rollup_rows,
)


def captured(app: Flask, payment_uuid: object, seller_id: int) -> tuple[Decimal, Decimal]:
    """What the ledger's capture of a payment gave the seller (their part net of commission,
    and the commission)."""
    with app.app_context():
        rows = Session().execute(
            select(Account.purpose, Account.holder_id, Entry.credit)
            .join(Entry, Entry.account_id == Account.id)
            .join(Transaction, Transaction.id == Entry.transaction_id)
            .where(Transaction.operation == "PAYMENT_CAPTURE")
            .where(Transaction.nonce == str(payment_uuid))
        )
        net, commission = Decimal(0), Decimal(0)
        for purpose, holder_id, credit in rows:
            if purpose.startswith("seller_") and holder_id == seller_id:
                net += credit
            elif purpose == "commission_income":
                commission += credit
    return net, commission


def test_an_untimed_payment_in_history_is_counted_where_and_as_the_ledger_posted_it(
    app: Flask, client: FlaskClient
) -> None:
    seller = person(app, client, "seller", "seller.history@example.test")
    buyer = person(app, client, "customer", "buyer.history@example.test")
    fish = product(app, "10000", seller)  # 11,100.00 with tax; 500.00 commission
    with app.app_context(), transaction() as session:
        old_order(buyer.user_id, [(fish, "1")], [("114.37", "paid"), ("2000.00", "paid")],
                  minutes_ago=3 * 24 * 60)  # fmt: skip
        first, second = session.scalars(select(Payment).order_by(Payment.id)).all()
        # The second was confirmed without a time: it sorts with its invoice (three days ago),
        # before the first, confirmed today. Those amounts round differently in that order.
        session.execute(update(Payment).where(Payment.id == second.id).values(confirmed_at=None))
        session.execute(update(Payment).where(Payment.id == first.id).values(confirmed_at=utcnow()))
        first_uuid, second_uuid = first.uuid, second.uuid
    result = app.test_cli_runner().invoke(args=["ledger", "backfill"])
    assert result.exit_code == 0, result.output

    result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "2 facts counted" in result.output
    with app.app_context():
        Session.remove()
        platform = (
            Session()
            .scalars(
                select(DailyRollup).where(DailyRollup.seller_id == 0).order_by(DailyRollup.day)
            )
            .all()
        )
        share = (
            Session()
            .scalars(
                select(DailyRollup)
                .where(DailyRollup.seller_id == seller.user_id)
                .order_by(DailyRollup.day)
            )
            .all()
        )
        assert [row.volume_minor for row in platform] == [200000, 11437]
        assert platform[1].day - platform[0].day == timedelta(days=3)
        got = [(row.volume_minor, row.fees_minor) for row in share]
    expected = []
    for payment in (second_uuid, first_uuid):
        net, commission = captured(app, payment, seller.user_id)
        assert net > 0
        expected.append((int((net + commission) * 100), int(commission * 100)))
    assert got == expected


def test_a_confirmation_after_the_clock_went_back_is_recorded_after_the_one_before_it(
    app: Flask, client: FlaskClient
) -> None:
    """The ledger's capture allocates from what was confirmed before; the backfill and the
    dashboard read that order back from the confirmation times, so they must keep it."""
    staff = person(app, client, "staff", "staff.clock@example.test")
    buyer = person(app, client, "customer", "buyer.clock@example.test")
    seller = person(app, client, "seller", "seller.clock@example.test")
    made = order(client, buyer, [(product(app, "37000", seller), "1")],
                 method="bank_transfer", amount="20000.00")  # fmt: skip
    rest = ok(
        client.post(
            f"{MARKETPLACE}/invoices/{made['invoice']['id']}/payments",
            json={"method": "cash"},
            headers=buyer.headers,
        ),
        201,
    )
    with clock.travel(timedelta(minutes=5)):
        ok(client.post(f"{MARKETPLACE}/payments/{rest['id']}/confirm", headers=staff.headers))
    first = made["payment"]["id"]
    ok(client.post(f"{MARKETPLACE}/payments/{first}/confirm", headers=staff.headers))
    with app.app_context():
        rows = Session().execute(select(Payment.uuid, Payment.confirmed_at))
        times = {key: at for key, at in rows}
    assert times[uuid.UUID(first)] > times[uuid.UUID(rest["id"])]


def test_facts_counted_while_the_rebuild_counts_are_neither_lost_nor_counted_twice(
    app: Flask, client: FlaskClient
) -> None:
    """The rebuild counts without locking the subscribers out, then swaps under a short lock:
    what they counted meanwhile is kept once, and a key whose fact is no more is dropped."""
    market = build_market(app, client)
    move_money(app, client, market)  # nothing delivered yet
    with app.app_context(), transaction() as session:
        session.execute(
            insert(CountedFact).values(kind="payment", subject=uuid.uuid4(), counted_at=utcnow())
        )
    staged, go = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def rebuild_in_its_two_steps() -> None:
        with app.app_context():
            try:
                with transaction():
                    outcome["staged"] = rollups.stage()
                    staged.set()
                    if not go.wait(timeout=120):
                        raise TimeoutError("the test never let the swap go")
                    outcome["swapped"] = rollups.swap()
            except BaseException as error:  # handed to the test's thread
                outcome["error"] = error
            finally:
                staged.set()
                Session.remove()

    rebuilding = threading.Thread(target=rebuild_in_its_two_steps)
    rebuilding.start()
    try:
        assert staged.wait(timeout=120)
        assert "error" not in outcome, outcome
        # Meanwhile: a new sale, and every event delivered (the demo gateway's refund succeeds
        # in its job): the subscribers count what the rebuild saw, and what it did not.
        late = order(client, market.buyer, [(product(app, "5000", market.seller_a), "1")])
        notify(app, client, late["transaction"], "success")
        deliver(app)
    finally:
        go.set()
        rebuilding.join(timeout=120)
    assert "error" not in outcome, outcome
    # Six facts when it counted (the gateway's refund was pending); the sale and that refund
    # came after, counted by their subscribers; the stray key dropped.
    assert outcome["staged"] == 6
    assert outcome["swapped"] == (2, 1)
    deliver(app)
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(CountedFact)) == 8
    assert_stats_match(app, client, market.staff, None, days=7)
    for seller in (market.seller_a, market.seller_b):
        assert_stats_match(app, client, seller, seller, days=7)
    counted = rollup_rows(app)
    assert app.test_cli_runner().invoke(args=["dashboard", "rebuild"]).exit_code == 0
    assert rollup_rows(app) == counted


def test_a_rebuild_that_cannot_lock_in_time_says_so_and_changes_nothing(
    app: Flask, client: FlaskClient, services: Services
) -> None:
    market = build_market(app, client)
    move_money(app, client, market)
    deliver(app)
    counted = rollup_rows(app)
    dsn = services.database_url.replace("+psycopg", "")
    with psycopg.connect(dsn) as subscriber:  # a subscriber's transaction, not committed yet
        subscriber.execute("LOCK TABLE dashboard_daily IN ROW EXCLUSIVE MODE")
        result = app.test_cli_runner().invoke(
            args=["dashboard", "rebuild", "--lock-timeout", "0.2"]
        )
        subscriber.rollback()
    assert result.exit_code == 1, result.output
    assert "stayed locked by other writers" in result.output
    assert rollup_rows(app) == counted
    result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    assert rollup_rows(app) == counted


def test_the_rebuild_reads_in_bulk_whatever_the_number_of_facts(
    app: Flask, client: FlaskClient
) -> None:
    market = build_market(app, client)
    move_money(app, client, market)
    deliver(app)

    def statements_of_a_rebuild() -> int:
        with recorded_in(app) as sent:
            result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
        assert result.exit_code == 0, result.output
        return len(sent)

    few = statements_of_a_rebuild()
    move_money(app, client, market)
    deliver(app)
    assert statements_of_a_rebuild() == few
