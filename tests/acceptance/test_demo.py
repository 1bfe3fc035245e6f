"""``lapak demo`` on the embedded default (SQLite, jobs in-process), as the README's first steps
run it, and on PostgreSQL: every screen has a few weeks of history, made through the services,
and a second run adds nothing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.cli import main as lapak_main
from app.db import Base, Session
from app.events import OutboxEvent
from modules.ledger.verify import verify
from modules.user.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_CUSTOMER_EMAILS,
    DEMO_NEW_SELLER_EMAIL,
    DEMO_SELLER_EMAIL,
    DEMO_STAFF_EMAIL,
)
from tests.modules.auth.test_api_keys import lapak_signed_headers, now_stamp
from tests.modules.conftest import bearer, login

API = "/api/v1"


@pytest.fixture(params=["sqlite", "postgresql"])
def demo_app(
    request: pytest.FixtureRequest,
    make_app: Callable[..., Flask],
    make_embedded_app: Callable[..., Flask],
) -> Flask:
    """The embedded default, and PostgreSQL (with its replica) with jobs in-process too."""
    if request.param == "sqlite":
        return make_embedded_app(module_packages=("modules",))
    return make_app(redis_url=None, module_packages=("modules",))


def run_demo(app: Flask) -> str:
    result = app.test_cli_runner().invoke(lapak_main, ["demo"])
    assert result.exit_code == 0, result.output
    return result.output


def token(client: FlaskClient, email: str, password: str) -> dict[str, str]:
    response = login(client, email, password)
    assert response.status_code == 200, response.get_json()
    return bearer(response.get_json()["access_token"])


def rows(app: Flask) -> dict[str, int]:
    """How many rows every table holds."""
    with app.app_context():
        session = Session()
        return {
            name: session.scalar(select(func.count()).select_from(table))
            for name, table in Base.metadata.tables.items()
            if not name.startswith("notes_")
        }


def test_demo_makes_a_history_every_screen_shows_and_a_second_run_adds_nothing(
    demo_app: Flask,
) -> None:
    output = run_demo(demo_app)
    passwords = dict(re.findall(r"(\S+@lapak\.local)\s+password: (\S+)", output))
    assert set(passwords) >= {DEMO_ADMIN_EMAIL, DEMO_STAFF_EMAIL, DEMO_SELLER_EMAIL,
                              DEMO_NEW_SELLER_EMAIL, *DEMO_CUSTOMER_EMAILS}  # fmt: skip
    client = demo_app.test_client()
    staff = token(client, DEMO_STAFF_EMAIL, passwords[DEMO_STAFF_EMAIL])
    seller = token(client, DEMO_SELLER_EMAIL, passwords[DEMO_SELLER_EMAIL])

    # The dashboard (its rollups are the outbox's subscribers': run by the in-process jobs).
    stats = client.get(f"{API}/dashboard/stats", headers=staff).get_json()
    totals = stats["totals"]
    assert Decimal(totals["volume"]) > 0
    assert totals["succeeded"] > 10
    assert totals["failed"] >= 2
    assert totals["manual"] > 10
    assert totals["canceled"] >= 1
    assert totals["refunds"] >= 2
    assert Decimal(totals["refunded"]) > 0
    assert 0 < Decimal(stats["success_rate"]) < 1
    busy_days = [day["day"] for day in stats["daily"] if Decimal(day["volume"]) > 0]
    assert len(busy_days) >= 15, busy_days
    assert {provider["provider"] for provider in stats["providers"]} >= {"demo", "bank_transfer"}
    own = client.get(f"{API}/dashboard/stats", headers=seller).get_json()
    assert own["scope"] == "seller"
    assert Decimal(own["totals"]["volume"]) > 0

    # Orders in every state, spread over the last weeks, none in the future.
    orders = client.get(f"{API}/marketplace/orders?limit=100", headers=staff).get_json()["items"]
    assert 35 <= len(orders) <= 45
    states = Counter((order["state"], order["payment_state"]) for order in orders)
    assert set(states) == {("sale", "paid"), ("sale", "in_payment"), ("sale", "not_paid"),
                           ("cancel", "reversed")}, states  # fmt: skip
    placed = [datetime.fromisoformat(order["date_order"]) for order in orders]
    assert len({moment.date() for moment in placed}) >= 20
    assert (max(placed) - min(placed)).days >= 25
    assert max(placed) < datetime.now(UTC)

    # The seller: verified, with money on hold and available, one payout made, one waiting.
    balance = client.get(f"{API}/sellers/me/balance", headers=seller).get_json()
    assert Decimal(balance["available"]) > 0
    assert Decimal(balance["pending"]) > 0
    settlements = client.get(f"{API}/settlements", headers=seller).get_json()["items"]
    assert sorted(item["state"] for item in settlements) == ["completed", "pending"]
    me = client.get(f"{API}/sellers/me", headers=seller).get_json()
    assert me["kyc"]["state"] == "verified"
    queue = client.get(f"{API}/sellers?kyc_state=pending", headers=staff).get_json()["items"]
    assert [item["contact_email"] for item in queue] == [DEMO_NEW_SELLER_EMAIL]

    # The seller's API key works with the secret printed once; their webhook endpoint waits.
    key_id, secret = re.search(r"key id (\S+), secret (\S+) ", output).groups()  # type: ignore[union-attr]
    path = f"{API}/marketplace/orders?limit=5"
    signed = client.get(path, headers=lapak_signed_headers(key_id, secret, "GET", path,
                                                           timestamp=now_stamp()))  # fmt: skip
    assert signed.status_code == 200, signed.get_json()
    assert signed.get_json()["items"]
    endpoints = client.get(f"{API}/webhooks/endpoints", headers=seller).get_json()["items"]
    assert [endpoint["enabled"] for endpoint in endpoints] == [False]

    with demo_app.app_context():
        assert verify().ok
        assert (
            Session().scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.status != "delivered")
            )
            == 0
        )

    before = rows(demo_app)
    again = run_demo(demo_app)
    assert "password:" not in again
    assert secret not in again
    assert again.count("already there") >= 6, again
    after = rows(demo_app)
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    # Logging in above wrote sessions and audit rows; the demo itself wrote nothing.
    assert set(changed) <= {"auth_session", "audit_event", "audit_request_log"}, changed
