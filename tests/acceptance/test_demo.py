"""``lapak demo`` on the embedded default (SQLite, jobs in-process), as the README's first steps
run it, and on PostgreSQL: every screen has a few weeks of history, made through the services,
dated in order along the ledger's chain, and played once per database: a second run changes
nothing, a run after an interrupted one says how to start over, and a database with business
history of its own does not get it."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.cli import main as lapak_main
from app.db import Base, Session, transaction
from app.demo import DemoMoment, recorded
from app.events import OutboxEvent
from modules.auth.models import ApiKey
from modules.ledger.models import Transaction
from modules.ledger.verify import verify
from modules.marketplace import services as marketplace
from modules.marketplace.demo import DEMO_PRODUCTS, DEMO_SOURCE, demo_product_id, placed_ids
from modules.marketplace.models import Product, SaleOrder
from modules.marketplace.services import LineRequest, OrderRequest, PaymentRequest
from modules.seller.kyc import reject_kyc
from modules.seller.services import update_own_profile
from modules.user.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_CUSTOMER_EMAILS,
    DEMO_NEW_SELLER_EMAIL,
    DEMO_SELLER_EMAIL,
    DEMO_STAFF_EMAIL,
    acting_as,
)
from modules.user.models import User
from modules.webhook.models import WebhookEndpoint
from tests.conftest import TEST_SECRET, TEST_VAULT_KEY
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


#: Tables a run could change without adding rows (an update): compared whole.
DIGESTED = ("ledger_chain", "seller_profile", "marketplace_product", "webhook_endpoint",
            "auth_api_key", "core_demo_run", "user_account")  # fmt: skip


def digest(app: Flask) -> dict[str, str]:
    """A digest of every row of the :data:`DIGESTED` tables."""
    digests = {}
    with app.app_context():
        session = Session()
        for name in DIGESTED:
            table = Base.metadata.tables[name]
            every = session.execute(table.select().order_by(*table.primary_key)).all()
            digests[name] = hashlib.sha256(repr(every).encode()).hexdigest()
    return digests


def chain_dates(app: Flask) -> list[datetime]:
    """The ledger transactions' dates, along the hash chain."""
    with app.app_context():
        return list(
            Session().scalars(select(Transaction.created_at).order_by(Transaction.chain_index))
        )


def order_count(app: Flask) -> int:
    with app.app_context():
        return Session().scalar(select(func.count()).select_from(SaleOrder))


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

    dates = chain_dates(demo_app)
    assert len(dates) > 50
    assert dates == sorted(dates)  # verify() checks the chain, not that its dates go forward
    assert dates[-1] < datetime.now(UTC)
    # What was there before the history (users, catalogue, key, endpoint) is dated before it,
    # and the users' events were dispatched then, not at a moment of the history.
    with demo_app.app_context():
        session = Session()
        catalogue = select(Product.created_at).where(Product.source == DEMO_SOURCE)
        for made_at in (select(User.created_at), select(ApiKey.created_at),
                        select(WebhookEndpoint.created_at), catalogue):  # fmt: skip
            made = list(session.scalars(made_at))
            assert made
            assert max(made) < min(placed), made_at
        users_made = session.execute(
            select(OutboxEvent.created_at, OutboxEvent.delivered_at).where(
                OutboxEvent.name == "user.created"
            )
        ).all()
        assert users_made
        assert all(done - made < timedelta(hours=1) for made, done in users_made), users_made
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

    before, digested = rows(demo_app), digest(demo_app)
    again = run_demo(demo_app)
    assert "password:" not in again
    assert secret not in again
    assert "The demo is already there" in again, again
    assert "nothing was changed" in again
    after = rows(demo_app)
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    # Logging in above wrote sessions and audit rows; the demo itself wrote nothing.
    assert set(changed) <= {"auth_session", "audit_event", "audit_request_log"}, changed
    assert digest(demo_app) == digested

    # The seller uses the demo: a new payout account (reviewed again), which staff reject. The
    # history is there all the same: nothing is replayed.
    with demo_app.app_context():
        budi, sari = acting_as(DEMO_SELLER_EMAIL), acting_as(DEMO_STAFF_EMAIL)
        assert budi is not None
        assert sari is not None
        update_own_profile(budi, {"bank_account": {"bank_code": "009", "holder_name": "Budi",
                                                   "account_number": "987654321"}})  # fmt: skip
        reject_kyc(sari, budi.user_uuid, "blurry scan")
    demo_app.extensions["lapak.jobs"].wait_embedded()
    before, digested = rows(demo_app), digest(demo_app)
    third = run_demo(demo_app)
    assert "The demo is already there" in third
    after = rows(demo_app)
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    assert set(changed) <= {"audit_event", "audit_request_log"}, changed  # written behind
    assert digest(demo_app) == digested


# --- played once per database ----------------------------------------------------------------


class Interrupted(Exception):
    """What the test-only part raises: the run stops there, as with Ctrl-C."""


class InterruptedAt:
    """A test-only part of the history: takes no step of its own, and stops the run at ``at``
    (after the modules' parts took that moment's steps)."""

    wanted = True

    def __init__(self, at: int) -> None:
        self.at = at

    def activity(self) -> list[str]:
        return []

    def step(self, moment: DemoMoment) -> None:
        if moment.index == self.at:
            raise Interrupted(f"stopped at moment {moment.index}")

    def summary(self) -> list[str]:
        return []


def test_a_run_after_an_interrupted_one_says_so_and_changes_nothing(
    make_embedded_app: Callable[..., Flask], tmp_path: Path
) -> None:
    demo_app = make_embedded_app(module_packages=("modules",))
    parts = demo_app.extensions["lapak.registry"].wiring.demo_histories
    parts.append(lambda: InterruptedAt(4))
    first = demo_app.test_cli_runner().invoke(lapak_main, ["demo"])
    assert first.exit_code != 0
    assert isinstance(first.exception, Interrupted), first.output
    parts.pop()
    partial = order_count(demo_app)
    assert 0 < partial < 10
    with demo_app.app_context():
        earlier = recorded()
    assert earlier is not None
    assert earlier.interrupted
    before, digested = rows(demo_app), digest(demo_app)

    for _ in range(2):  # and every run after it
        again = demo_app.test_cli_runner().invoke(lapak_main, ["demo"])
        assert again.exit_code == 1, again.output
        assert "was interrupted while it played the history" in again.output
        assert "nothing was changed" in again.output
        assert f"start from an empty database: stop Lapak and move {tmp_path / 'lapak.db'}" in (
            again.output.replace("\n", " ")
        )
        assert "`lapak db upgrade` and `lapak demo`" in again.output.replace("\n", " ")
        assert "already there" not in again.output
        assert rows(demo_app) == before
        assert digest(demo_app) == digested
    assert order_count(demo_app) == partial
    dates = chain_dates(demo_app)
    assert dates == sorted(dates)


def place_cash_order_now(app: Flask) -> None:
    """A customer orders today and pays at the counter: the database's own business."""
    with app.app_context():
        customer, staff = acting_as(DEMO_CUSTOMER_EMAILS[0]), acting_as(DEMO_STAFF_EMAIL)
        assert customer is not None
        assert staff is not None
        product = demo_product_id(DEMO_PRODUCTS[0][0])
        request = OrderRequest(
            lines=[LineRequest(product=str(product), quantity=Decimal(2))],
            payment=PaymentRequest(method="cash", reference="TILL-0001"),
        )
        _, placed = marketplace.place_order(customer, request, None, placed_ids)
        marketplace.confirm_payment(staff, placed["payment"])


def test_the_history_is_left_out_on_a_database_with_business_history_of_its_own(
    make_embedded_app: Callable[..., Flask],
) -> None:
    demo_app = make_embedded_app(module_packages=("modules",))
    # The upgrade path: a database seeded by the previous `lapak demo` (users, catalogue, no
    # history), then used: an order placed and paid today.
    parts = demo_app.extensions["lapak.registry"].wiring.demo_histories
    kept = list(parts)
    parts.clear()
    run_demo(demo_app)
    parts.extend(kept)
    place_cash_order_now(demo_app)
    demo_app.extensions["lapak.jobs"].wait_embedded()  # its events, dispatched
    assert order_count(demo_app) == 1
    before = rows(demo_app)

    # A server listening where `lapak serve` would: a warning, and the demo goes on.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = demo_app.test_cli_runner().invoke(
            lapak_main, ["demo"], env={"LAPAK_HOST": "127.0.0.1", "LAPAK_PORT": str(port)}
        )
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    assert f"something listens on 127.0.0.1:{port}" in result.stderr
    assert "best loaded before the server starts" in result.stderr.replace("\n", " ")
    assert "Demo history: left out, as this database already has business history (1 order, " in (
        output
    )
    assert "start from an empty database" in output
    assert "over the last 30 days" not in output
    assert order_count(demo_app) == 1
    after = rows(demo_app)
    # The gateway's part looked its provider up (made on first use); nothing else was written.
    assert {name for name in before if before[name] != after[name]} <= {"payment_provider"}
    dates = chain_dates(demo_app)
    assert dates
    assert dates == sorted(dates)
    with demo_app.app_context():
        assert recorded() is None  # an emptied database may still get it whole


def test_without_an_active_demo_product_the_orders_are_left_out_and_the_sellers_played(
    make_embedded_app: Callable[..., Flask],
) -> None:
    demo_app = make_embedded_app(module_packages=("modules",))
    parts = demo_app.extensions["lapak.registry"].wiring.demo_histories
    kept = list(parts)
    parts.clear()
    run_demo(demo_app)  # an earlier demo's users and catalogue, which staff deactivated since
    parts.extend(kept)
    with demo_app.app_context(), transaction() as session:
        session.execute(update(Product).values(active=False))

    output = run_demo(demo_app).replace("\n", " ")

    assert "Demo orders paid by transfer or cash: left out (no demo product is active" in output
    assert "Demo orders paid through the demo gateway: left out (no demo product is active" in (
        output
    )
    assert f"Demo seller {DEMO_SELLER_EMAIL}: verified, 3 products" in output
    assert order_count(demo_app) == 0


# --- Ctrl-C ----------------------------------------------------------------------------------

#: ``lapak demo`` with every job thread's start interrupted just after the thread started (as
#: a Ctrl-C landing in ``Thread.start()``): the executor never learns of the thread.
INTERRUPTED_STARTS = textwrap.dedent(
    """
    import threading
    import sys

    started = threading.Thread.start

    def start(thread):
        started(thread)
        if thread.name.startswith("lapak-job"):
            raise KeyboardInterrupt

    threading.Thread.start = start
    from app.cli import main

    main(["demo"])
    """
)


def test_an_interrupt_as_a_job_thread_starts_still_lets_the_command_exit(
    make_embedded_app: Callable[..., Flask], tmp_path: Path
) -> None:
    database = tmp_path / "lapak.db"
    make_embedded_app(module_packages=("modules",))  # migrated
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAPAK_")}
    environment.update(
        LAPAK_ENV="test",
        LAPAK_DATABASE_URL=f"sqlite:///{database}",
        LAPAK_SECRET_KEY=TEST_SECRET,
        LAPAK_VAULT_KEYS=TEST_VAULT_KEY,
        LAPAK_INSTANCE_PATH=str(tmp_path / "instance"),
        LAPAK_LOG_LEVEL="WARNING",
        LAPAK_PASSWORD_MEMORY_KIB="19456",
        LAPAK_PASSWORD_TIME_COST="2",
        LAPAK_PASSWORD_PARALLELISM="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", INTERRUPTED_STARTS],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"lapak demo did not exit after the interrupt: {hung.stderr!r}")
    assert result.returncode == 1, result.stderr
    assert "Aborted!" in result.stderr
