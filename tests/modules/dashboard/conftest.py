"""The dashboard's tests: a marketplace with two sellers and the platform's own product, money
moved through the demo gateway and by hand, and the figures recomputed from the source tables
by SQL of the tests' own (integer hundredths, so it is exact on SQLite too)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from app.db import Session, get_database, transaction
from app.events import dispatch_outbox
from modules.marketplace.models import Product
from modules.payment import services as payment_services
from modules.payment.providers import get_provider, provider_secrets
from modules.user.services import create_user
from tests.conftest import run_jobs
from tests.modules.conftest import PASSWORD, Caller, login
from tests.modules.web.conftest import (  # noqa: F401 - fixtures
    browser,
    either_app,
    embedded_app,
    page,
    served,
)
from tests.servers import Services

DASHBOARD = "/api/v1/dashboard"
MARKETPLACE = "/api/v1/marketplace"
PAYMENTS = "/api/v1/payments"
PROBLEM = "application/problem+json"
ZONE = ZoneInfo("Asia/Jakarta")


def today() -> date:
    return datetime.now(ZONE).date()


def person(app: Flask, client: FlaskClient, role: str, email: str) -> Caller:
    """A user of ``role`` made in ``app`` and logged in through ``client``."""
    with app.app_context(), transaction():
        user = create_user(email, role=role, password=PASSWORD)
        user_id, user_uuid = user.id, user.uuid
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    return Caller(email, user_uuid, user_id, response.get_json()["access_token"])


def product(app: Flask, price: str, seller: Caller | None = None) -> str:
    with app.app_context(), transaction() as session:
        made = Product(
            name="TONGKOL",
            list_price=Decimal(price),
            seller_id=seller.user_id if seller else None,
        )
        session.add(made)
        session.flush()
        return str(made.uuid)


def deliver(app: Flask) -> None:
    """Deliver every event committed so far (and run the jobs they start): RQ jobs on the
    harness's Redis, or, embedded, the in-process job threads and then the outbox itself."""
    if app.extensions["lapak.settings"].redis_url:
        run_jobs(app)
        run_jobs(app)  # the jobs of the first round (a demo refund) emit events of their own
        return
    jobs = app.extensions["lapak.jobs"]
    jobs.wait_embedded()
    with app.app_context():
        dispatch_outbox()
    jobs.wait_embedded()
    with app.app_context():
        dispatch_outbox()


def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == PROBLEM, response.content_type
    if code is not None:
        assert body["type"] == f"urn:lapak:problem:{code}", body
    return body


def order(client: FlaskClient, buyer: Caller, lines: list[tuple[str, str]], **payment: Any) -> Any:
    body = {
        "lines": [{"product": item, "quantity": quantity} for item, quantity in lines],
        "payment": payment or {"provider": "demo"},
    }
    return ok(client.post(f"{MARKETPLACE}/orders", json=body, headers=buyer.headers), 201)


def notify(app: Flask, client: FlaskClient, tx: dict[str, Any], state: str) -> None:
    """The demo gateway tells Lapak what became of ``tx`` (signed, as it does)."""
    with app.app_context(), transaction():
        secret = provider_secrets(get_provider("demo"))["webhook_secret"]
    body = json.dumps(
        {
            "reference": tx["reference"],
            "provider_reference": f"demo_{tx['reference'][-5:]}",
            "state": state,
            "amount": tx["amount"],
            "currency": tx["currency"],
        }
    ).encode()
    stamp = str(int(datetime.now(ZONE).timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Lapak-Timestamp": stamp,
        "X-Lapak-Signature": payment_services.signature(secret, stamp, body),
    }
    ok(client.post(f"{PAYMENTS}/providers/demo/notify", data=body, headers=headers))


@dataclass(frozen=True)
class Market:
    staff: Caller
    admin: Caller
    buyer: Caller
    seller_a: Caller
    seller_b: Caller
    seller_c: Caller  # sells nothing


def build_market(app: Flask, client: FlaskClient, tag: str = "") -> Market:
    """Staff, an admin, a customer and three sellers."""
    return Market(
        *(
            person(app, client, role, f"{name}{tag}@example.test")
            for role, name in (
                ("staff", "staff"),
                ("admin", "admin"),
                ("customer", "buyer"),
                ("seller", "seller.a"),
                ("seller", "seller.b"),
                ("seller", "seller.c"),
            )
        )
    )


def move_money(app: Flask, client: FlaskClient, market: Market) -> dict[str, Any]:
    """Orders paid, failed, given up and paid by hand in two parts, refunds of both kinds.

    The demo gateway charges 2.9 % + 1000; seller B has a commission of their own (7.5 %). What
    each step made, by name.
    """
    ok(
        client.patch(
            f"{PAYMENTS}/providers/demo",
            json={"fee_percent": "2.90", "fee_fixed": "1000.00"},
            headers=market.admin.headers,
        )
    )
    ok(
        client.patch(
            f"/api/v1/sellers/{market.seller_b.uuid}",
            json={"commission_percent": "7.50"},
            headers=market.admin.headers,
        )
    )
    a = product(app, "37000", market.seller_a)
    b = product(app, "12345.67", market.seller_b)
    own = product(app, "50000")
    buyer, staff = market.buyer, market.staff

    mixed = order(client, buyer, [(a, "1"), (b, "2"), (own, "1")])
    notify(app, client, mixed["transaction"], "success")
    failed = order(client, buyer, [(a, "3")])
    notify(app, client, failed["transaction"], "failed")
    given_up = order(client, buyer, [(b, "1")])
    ok(client.post(f"{PAYMENTS}/{given_up['transaction']['id']}/cancel", headers=buyer.headers))

    by_hand = order(client, buyer, [(a, "1"), (b, "1")], method="bank_transfer", amount="20000.00")
    ok(
        client.post(
            f"{MARKETPLACE}/payments/{by_hand['payment']['id']}/confirm", headers=staff.headers
        )
    )
    rest = ok(
        client.post(
            f"{MARKETPLACE}/invoices/{by_hand['invoice']['id']}/payments",
            json={"method": "cash"},
            headers=buyer.headers,
        ),
        201,
    )
    ok(client.post(f"{MARKETPLACE}/payments/{rest['id']}/confirm", headers=staff.headers))

    through_gateway = ok(
        client.post(
            f"{MARKETPLACE}/payments/{mixed['payment']['id']}/refunds",
            json={"amount": "10000.00", "reason": "one fish was off"},
            headers=staff.headers,
        ),
        201,
    )
    by_hand_refund = ok(
        client.post(
            f"{MARKETPLACE}/payments/{by_hand['payment']['id']}/refunds",
            json={"amount": "5000.00", "reason": "late"},
            headers=staff.headers,
        ),
        201,
    )
    ok(client.post(f"{MARKETPLACE}/refunds/{by_hand_refund['id']}/done", headers=staff.headers))
    # An order paid by hand and not confirmed yet: listed, not counted.
    waiting = order(client, buyer, [(a, "2")], method="bank_transfer")
    return {
        "mixed": mixed,
        "failed": failed,
        "given_up": given_up,
        "by_hand": by_hand,
        "rest": rest,
        "refund_gateway": through_gateway,
        "refund_by_hand": by_hand_refund,
        "waiting": waiting,
    }


def shift_days(app: Flask, table: str, column: str, uuid_value: str, days: int) -> None:
    """Move a fact's time ``days`` back, behind the services' back (before its event is
    delivered), so the period spans several days."""
    with app.app_context(), transaction() as session:
        (moment,) = session.execute(
            text(f"SELECT {column} FROM {table} WHERE uuid = :id"),  # noqa: S608 - test's own
            {"id": _uuid_param(uuid_value)},
        ).one()
        if isinstance(moment, str):  # SQLite hands text back
            moment = datetime.fromisoformat(moment)
        session.execute(
            text(f"UPDATE {table} SET {column} = :moment WHERE uuid = :id"),  # noqa: S608
            {"moment": moment - timedelta(days=days), "id": _uuid_param(uuid_value)},
        )


def _uuid_param(value: str) -> Any:
    if get_database().primary.dialect.name == "sqlite":
        return uuid.UUID(value).hex  # how SQLAlchemy's Uuid stores it there
    return uuid.UUID(value)


# -- the figures, recomputed ----------------------------------------------------------------------

#: Every fact the dashboard counts, recomputed from the source tables: provider transactions of
#: invoices in a final state, payments confirmed without a provider (``manual``), refunds done.
#: Money in
#: integer hundredths; ``before`` is what the invoice's earlier payments (refunds) moved.
FACTS = """
WITH paid AS (
    SELECT p.id, COALESCE(p.confirmed_at, m.created_at) AS at,
           CAST(COALESCE(SUM({cents_p}) OVER (
               PARTITION BY p.invoice_id ORDER BY COALESCE(p.confirmed_at, m.created_at), p.id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS before
    FROM marketplace_payment p JOIN marketplace_account_move m ON m.id = p.invoice_id
    WHERE p.state = 'paid'
), refunded AS (
    SELECT r.id, CAST(COALESCE(SUM({cents_r}) OVER (
        PARTITION BY r.invoice_id ORDER BY r.id
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS before
    FROM marketplace_refund r
), facts AS (
    SELECT {day_t} AS day, pr.code AS provider,
           CASE WHEN paid.id IS NOT NULL THEN 'success' ELSE t.state END AS outcome, t.currency,
           CASE WHEN paid.id IS NOT NULL THEN {cents_t} ELSE 0 END AS amount,
           CASE WHEN paid.id IS NOT NULL THEN CAST(ROUND(t.fee * 100) AS BIGINT) ELSE 0 END
               AS fee,
           t.invoice_id, CASE WHEN paid.id IS NOT NULL THEN paid.before ELSE 0 END AS before
    FROM payment_transaction t
    JOIN payment_provider pr ON pr.id = t.provider_id
    LEFT JOIN paid ON paid.id = t.account_payment_id
    WHERE t.kind = 'invoice'
      AND (t.state IN ('success', 'failed', 'canceled') OR paid.id IS NOT NULL)
    UNION ALL
    SELECT {day_p}, p.method, 'manual', p.currency, {cents_p}, 0, p.invoice_id, paid.before
    FROM marketplace_payment p JOIN paid ON paid.id = p.id
    WHERE NOT EXISTS (SELECT 1 FROM payment_transaction t WHERE t.account_payment_id = p.id)
    UNION ALL
    SELECT {day_r},
           COALESCE((SELECT pr.code FROM payment_transaction t
                     JOIN payment_provider pr ON pr.id = t.provider_id
                     WHERE t.account_payment_id = r.payment_id), p.method),
           'refund', r.currency, {cents_r}, 0, r.invoice_id, refunded.before
    FROM marketplace_refund r
    JOIN refunded ON refunded.id = r.id
    JOIN marketplace_payment p ON p.id = r.payment_id
    WHERE r.state = 'succeeded'
), shares AS (
    SELECT l.move_id AS invoice_id,
           CAST(SUM(CAST(ROUND(l.price_subtotal * 100) AS BIGINT)) AS BIGINT) AS untaxed
    FROM marketplace_account_move_line l WHERE l.seller_id = :seller GROUP BY l.move_id
), split AS (
    SELECT s.invoice_id, s.untaxed,
           CAST(ROUND(m.amount_total * 100) AS BIGINT) AS total,
           (2 * s.untaxed * CAST(ROUND(COALESCE(ic.percent, m.commission_percent) * 100)
                                 AS BIGINT) + 10000) / 20000 AS commission
    FROM shares s JOIN marketplace_account_move m ON m.id = s.invoice_id
    LEFT JOIN marketplace_invoice_commission ic
           ON ic.move_id = m.id AND ic.seller_id = :seller
), owned AS (
    SELECT f.day, f.provider, f.outcome, f.currency,
           {part_net} + {part_commission} AS amount, {part_commission} AS fee
    FROM facts f JOIN split ON split.invoice_id = f.invoice_id
), chosen AS (
    SELECT * FROM {source}
)
SELECT day, provider,
       SUM(CASE WHEN outcome <> 'refund' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome = 'canceled' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome = 'manual' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome = 'refund' THEN 1 ELSE 0 END),
       SUM(CASE WHEN outcome IN ('success', 'manual') THEN amount ELSE 0 END),
       SUM(CASE WHEN outcome IN ('success', 'manual') THEN fee ELSE 0 END),
       SUM(CASE WHEN outcome = 'refund' THEN amount ELSE 0 END)
FROM chosen
WHERE currency = :currency
GROUP BY day, provider
"""
#: Round half up of V x (before + amount) / total, less that of V x before / total, in
#: integers: what a payment (refund) releases (takes back) of V.
PART = (
    "((2 * {v} * (f.before + f.amount) + split.total) / (2 * split.total)"
    " - (2 * {v} * f.before + split.total) / (2 * split.total))"
)
FIELDS = (
    "transactions", "succeeded", "failed", "canceled", "manual", "refunds", "volume", "fees",
    "refunded",
)  # fmt: skip


def recomputed(app: Flask, seller: Caller | None, currency: str = "IDR") -> dict[tuple, dict]:
    """(day, provider) -> the figures, for the platform (``seller`` None) or a seller."""
    with app.app_context():
        dialect = get_database().primary.dialect.name

        def day(column: str) -> str:
            if dialect == "postgresql":
                return f"CAST(({column} AT TIME ZONE 'Asia/Jakarta') AS DATE)"
            return f"date({column}, '+7 hours')"  # Jakarta keeps UTC+7 all year

        sql = FACTS.format(
            cents_p="CAST(ROUND(p.amount * 100) AS BIGINT)",
            cents_r="CAST(ROUND(r.amount * 100) AS BIGINT)",
            cents_t="CAST(ROUND(t.amount * 100) AS BIGINT)",
            # A transaction succeeds when its payment is paid, if that came first.
            day_t=day(
                "CASE WHEN paid.id IS NOT NULL AND (t.state <> 'success' OR paid.at < "
                "t.last_state_change) THEN paid.at ELSE t.last_state_change END"
            ),
            day_p=day("paid.at"),
            day_r=day("r.confirmed_at"),
            part_net=PART.format(v="(split.untaxed - split.commission)"),
            part_commission=PART.format(v="split.commission"),
            source="owned" if seller else "facts",
        )
        rows = Session().execute(
            text(sql), {"seller": seller.user_id if seller else 0, "currency": currency}
        )
        found = {}
        for day_value, provider, *figures in rows:
            counts = [int(value) for value in figures]
            found[(str(day_value), provider)] = dict(zip(FIELDS, counts, strict=True))
        return found


def expected_stats(found: dict[tuple, dict], since: date, until: date) -> dict[str, Any]:
    """What the stats answer must say of ``found`` (from :func:`recomputed`)."""

    def money(hundredths: int) -> str:
        return f"{Decimal(hundredths).scaleb(-2):.2f}"

    def figures(counters: dict[str, int]) -> dict[str, Any]:
        shown: dict[str, Any] = dict(counters)
        for name in ("volume", "fees", "refunded"):
            shown[name] = money(counters[name])
        return shown

    def add(into: dict[str, int], counters: dict[str, int]) -> None:
        for name in FIELDS:
            into[name] = into.get(name, 0) + counters[name]

    in_period = {key: value for key, value in found.items() if str(since) <= key[0] <= str(until)}
    totals: dict[str, int] = dict.fromkeys(FIELDS, 0)
    days: dict[str, dict[str, int]] = {}
    providers: dict[str, dict[str, int]] = {}
    for (day_value, provider), counters in in_period.items():
        add(totals, counters)
        add(days.setdefault(day_value, dict.fromkeys(FIELDS, 0)), counters)
        add(providers.setdefault(provider, dict.fromkeys(FIELDS, 0)), counters)
    decided = totals["succeeded"] + totals["failed"]
    paid = totals["succeeded"] + totals["manual"]
    every_day = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    return {
        "totals": figures(totals),
        "success_rate": (
            str(rounded(Decimal(totals["succeeded"]) / decided, "0.0001")) if decided else None
        ),
        "average": (
            str(rounded(Decimal(totals["volume"]).scaleb(-2) / paid, "0.01")) if paid else None
        ),
        "daily": [
            {"day": str(day_value), **figures(days.get(str(day_value), dict.fromkeys(FIELDS, 0)))}
            for day_value in every_day
        ],
        "providers": {code: figures(counters) for code, counters in providers.items()},
        "statuses": [
            {"state": "success", "count": totals["succeeded"]},
            {"state": "failed", "count": totals["failed"]},
            {"state": "canceled", "count": totals["canceled"]},
            {"state": "manual", "count": totals["manual"]},
        ],
    }


def stats(client: FlaskClient, caller: Caller, **query: Any) -> dict[str, Any]:
    return ok(client.get(f"{DASHBOARD}/stats", query_string=query, headers=caller.headers))


def assert_stats_match(
    app: Flask, client: FlaskClient, caller: Caller, seller: Caller | None, days: int
) -> dict[str, Any]:
    since, until = today() - timedelta(days=days - 1), today()
    shown = stats(client, caller, **{"from": str(since), "to": str(until)})
    expected = expected_stats(recomputed(app, seller), since, until)
    assert shown["from"] == str(since)
    assert shown["to"] == str(until)
    assert shown["scope"] == ("seller" if seller else "platform")
    assert shown["totals"] == expected["totals"]
    assert shown["success_rate"] == expected["success_rate"]
    assert shown["average"] == expected["average"]
    assert shown["daily"] == expected["daily"]
    by_code = {
        p["provider"]: {k: v for k, v in p.items() if k != "provider"} for p in shown["providers"]
    }
    assert by_code == expected["providers"]
    assert shown["statuses"] == expected["statuses"]
    return shown


def rounded(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def rollup_rows(app: Flask) -> list[tuple]:
    from modules.dashboard.models import DailyRollup

    with app.app_context():
        Session.remove()
        return [
            tuple(row)
            for row in Session().execute(
                select(DailyRollup.__table__).order_by(*DailyRollup.__table__.primary_key)
            )
        ]


# -- query plans -----------------------------------------------------------------------------------


def plan_of(services: Services, statement: str, parameters: Any) -> str:
    """PostgreSQL's plan for ``statement`` with sequential scans ruled out: the indexes it can
    use (a test's tables are too small for the planner to prefer them on its own)."""
    with psycopg.connect(services.database_url.replace("+psycopg", "")) as connection:
        connection.execute("SET enable_seqscan = off")
        rows = connection.execute(f"EXPLAIN {statement}", parameters).fetchall()
    return "\n".join(row[0] for row in rows)
