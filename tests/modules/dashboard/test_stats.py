"""The dashboard's figures equal the tests' own recomputation from the source tables, to the
cent, for staff (the platform) and for each seller (their share only), on PostgreSQL with its
replica and on the embedded SQLite; each fact counts once however often its event comes; the
rebuild gives what the subscribers gave."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.db import Session, transaction, utcnow
from app.events import OutboxEvent
from app.security import Principal
from modules.dashboard import rollups
from modules.dashboard import services as dashboard
from modules.dashboard.models import CountedFact
from modules.dashboard.schemas import DashboardStatsSchema, dump_stats
from modules.payment import services as payment_services

from .conftest import (
    DASHBOARD,
    MARKETPLACE,
    assert_stats_match,
    build_market,
    deliver,
    move_money,
    notify,
    ok,
    order,
    product,
    rollup_rows,
    shift_days,
    stats,
    today,
)


def test_stats_equal_the_recomputation_for_staff_and_each_sellers_share(
    either_app: Flask,
) -> None:
    app = either_app
    client = app.test_client()
    market = build_market(app, client)
    made = move_money(app, client, market)
    if app.extensions["lapak.settings"].redis_url:
        # Nothing is delivered yet: spread the facts over three days, as their events will read.
        shift_days(app, "payment_transaction", "last_state_change",
                   made["failed"]["transaction"]["id"], 2)  # fmt: skip
        shift_days(app, "marketplace_payment", "confirmed_at", made["by_hand"]["payment"]["id"], 1)
    deliver(app)

    platform = assert_stats_match(app, client, market.staff, None, days=7)
    totals = platform["totals"]
    # The scenario as a person reads it: one success through the gateway, one failure, one
    # given up, two payments by hand confirmed by staff; two refunds (the gateway sent its own
    # back). The success rate is the gateway's alone: one of two.
    assert (totals["succeeded"], totals["failed"], totals["canceled"]) == (1, 1, 1)
    assert (totals["manual"], totals["transactions"]) == (2, 5)
    assert totals["refunds"] == 2
    assert totals["refunded"] == "15000.00"
    assert platform["success_rate"] == "0.5000"
    assert {p["provider"] for p in platform["providers"]} == {"demo", "bank_transfer", "cash"}
    if app.extensions["lapak.settings"].redis_url:
        assert sum(1 for day in platform["daily"] if day["transactions"]) == 3
    # An admin sees the platform too.
    assert stats(client, market.admin)["totals"] == stats(client, market.staff)["totals"]

    seller_a = assert_stats_match(app, client, market.seller_a, market.seller_a, days=7)
    seller_b = assert_stats_match(app, client, market.seller_b, market.seller_b, days=7)
    assert seller_a["scope"] == "seller"
    # Their shares, not whole orders: less than the platform's, and the failure counts for A
    # only (B had no line on it), the given-up order for B only.
    for share in (seller_a, seller_b):
        assert 0 < float(share["totals"]["volume"]) < float(totals["volume"])
    assert seller_a["totals"]["failed"] == 1
    assert seller_a["totals"]["canceled"] == 0
    assert seller_b["totals"]["failed"] == 0
    assert seller_b["totals"]["canceled"] == 1
    nothing = stats(client, market.seller_c)
    assert nothing["totals"]["transactions"] == 0
    assert nothing["success_rate"] is None
    assert nothing["average"] is None
    # Another currency has nothing.
    assert stats(client, market.staff, currency="USD")["totals"]["transactions"] == 0


def test_each_fact_counts_once_whatever_comes_twice_and_the_rebuild_agrees(
    either_app: Flask,
) -> None:
    app = either_app
    client = app.test_client()
    market = build_market(app, client)
    move_money(app, client, market)
    deliver(app)
    counted = rollup_rows(app)
    assert counted, "the subscribers counted nothing"

    with app.app_context():
        Session.remove()
        events = list(
            Session().scalars(
                select(OutboxEvent).where(
                    OutboxEvent.name.in_(
                        ("payment.succeeded", "payment.failed", "payment.canceled",
                         "payment.confirmed", "refund.succeeded")
                    )
                )
            )
        )  # fmt: skip
        assert len(events) == 8  # 3 transactions, 3 confirmations (1 by a provider), 2 refunds
        subscriber = {
            "payment.confirmed": rollups.count_payment,
            "refund.succeeded": rollups.count_refund,
        }
        # The subscriber called again with each payload: nothing moves.
        for event in events:
            subscriber.get(event.name, rollups.count_transaction)(dict(event.payload))
        Session.remove()
        with transaction() as session:  # ...and the outbox delivering them all again
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([event.id for event in events]))
                .values(status="pending", delivered_to=[], attempts=0)
            )
    deliver(app)
    assert rollup_rows(app) == counted
    with app.app_context():
        facts = Session().scalar(select(func.count()).select_from(CountedFact))
    assert facts == 7  # the provider's confirmation is its transaction's fact

    result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "7 facts counted" in result.output
    assert rollup_rows(app) == counted
    # From nothing (a database from before the dashboard): the same again.
    with app.app_context(), transaction() as session:
        session.execute(CountedFact.__table__.delete())
        session.execute(rollups.DailyRollup.__table__.delete())
    assert rollup_rows(app) == []
    assert app.test_cli_runner().invoke(args=["dashboard", "rebuild"]).exit_code == 0
    assert rollup_rows(app) == counted
    # After a rebuild, an event still in the outbox does not count its fact a second time.
    with app.app_context(), transaction() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_([event.id for event in events]))
            .values(status="pending", delivered_to=[], attempts=0)
        )
    deliver(app)
    assert rollup_rows(app) == counted


def test_a_top_up_an_unconfirmed_payment_and_one_cancelled_with_its_order_are_not_counted(
    app: Flask, client: FlaskClient
) -> None:
    market = build_market(app, client)
    topped = ok(
        client.post(
            "/api/v1/wallets/top-ups",
            json={"provider": "demo", "amount": "50000.00", "currency": "IDR"},
            headers=market.buyer.headers,
        ),
        201,
    )
    notify(app, client, topped["transaction"], "success")
    fish = product(app, "37000", market.seller_a)
    order(client, market.buyer, [(fish, "1")], method="bank_transfer")
    # A bank transfer given up with its order: no money came and no provider tried; listed as
    # canceled, counted nowhere (by the subscribers and the rebuild alike).
    given_up = order(client, market.buyer, [(fish, "2")], method="bank_transfer")
    ok(
        client.post(
            f"{MARKETPLACE}/orders/{given_up['order']['id']}/cancel", headers=market.buyer.headers
        )
    )
    deliver(app)
    assert rollup_rows(app) == []
    assert stats(client, market.staff)["totals"]["transactions"] == 0
    listed = ok(
        client.get(
            f"{DASHBOARD}/transactions", query_string={"state": "canceled"},
            headers=market.staff.headers,
        )
    )["items"]  # fmt: skip
    assert [item["payment"] for item in listed] == [given_up["payment"]["id"]]
    result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert "0 facts counted" in result.output, result.output
    assert rollup_rows(app) == []


def test_a_provider_payment_confirmed_by_hand_counts_when_confirmed_and_lists_as_success(
    app: Flask, client: FlaskClient
) -> None:
    market = build_market(app, client)
    made = order(client, market.buyer, [(product(app, "37000", market.seller_a), "1")])
    payment = made["payment"]["id"]
    # The money came by another way: staff confirm it while the transaction is still pending.
    ok(client.post(f"{MARKETPLACE}/payments/{payment}/confirm", headers=market.staff.headers))
    shift_days(app, "marketplace_payment", "confirmed_at", payment, 1)  # confirmed yesterday
    deliver(app)

    yesterday = str(today() - timedelta(days=1))
    shown = assert_stats_match(app, client, market.staff, None, days=7)
    assert (shown["totals"]["succeeded"], shown["totals"]["volume"]) == (
        1,
        made["transaction"]["amount"],
    )
    assert [day["day"] for day in shown["daily"] if day["succeeded"]] == [yesterday]
    listed = ok(client.get(f"{DASHBOARD}/transactions", headers=market.staff.headers))["items"]
    assert [(item["payment"], item["state"]) for item in listed] == [(payment, "success")]
    counted = rollup_rows(app)

    # Its transaction follows at its expiry (today): the fact is the one counted already.
    with app.app_context():
        expired = payment_services.expire_transactions(now=utcnow() + timedelta(days=3))
    assert expired == 1
    deliver(app)
    assert rollup_rows(app) == counted
    assert_stats_match(app, client, market.seller_a, market.seller_a, days=7)
    assert app.test_cli_runner().invoke(args=["dashboard", "rebuild"]).exit_code == 0
    assert rollup_rows(app) == counted


def test_the_stats_answer_is_the_schemas_own_dump(either_app: Flask) -> None:
    """The answer is written out by hand (``dump_stats``, for speed): it is what the schema
    dumps, field for field, for staff and sellers, with and without figures, and what the
    endpoint sends."""
    app = either_app
    client = app.test_client()
    market = build_market(app, client)
    move_money(app, client, market)
    deliver(app)
    schema = DashboardStatsSchema()
    since, until = today() - timedelta(days=400), today() - timedelta(days=35)
    periods = [
        (None, None, None),  # the last 30 days
        (since, until, None),  # nothing in it
        (today() - timedelta(days=365), today(), "USD"),
    ]
    for caller, role in (
        (market.staff, "staff"),
        (market.seller_a, "seller"),
        (market.seller_c, "seller"),
    ):
        actor = Principal(caller.user_id, caller.uuid, caller.email, role)
        for first, last, currency in periods:
            with app.app_context():
                figures = dashboard.stats(actor, dashboard.period(first, last, currency))
                shown = dump_stats(figures)
                assert shown == schema.dump(figures), (role, first, currency)
            query = {"from": str(first), "to": str(last)} if first else {}
            assert (
                stats(client, caller, **query, **({"currency": currency} if currency else {}))
                == shown
            )
    assert dump_stats(figures)["daily"][-1]["day"] == str(today())
