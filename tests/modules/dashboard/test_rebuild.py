"""``lapak dashboard rebuild`` over history the dashboard never saw: it counts each payment as
the ledger posted it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import clock
from app.db import Session, transaction, utcnow
from modules.dashboard.models import DailyRollup
from modules.ledger.models import Account, Entry, Transaction
from modules.marketplace.models import Payment
from tests.modules.marketplace.test_backfill import old_order

from .conftest import MARKETPLACE, ok, order, person, product


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
