"""Secrets at rest (issue 12): after a run that stores a provider secret and saves a card, a
``pg_dump`` of the whole database and every log line of the run hold none of them in clear.

The run goes over real HTTP, as a user's would: an admin sets the demo gateway's
``webhook_secret`` through the providers API, a customer pays on the hosted page with "save this
card" (the gateway's signed notification, POSTed by its job, carries the provider token and the
gateway's card fingerprint), then pays another invoice off-session with the saved method.

Searched for: the webhook secret, the provider token, the gateway's card fingerprint, the card
number, the vault key and the app's secret key. The dump must still hold the sealed values
(Fernet tokens) and the brand and last four digits that are meant to be clear, so neither check
can pass on an empty dump. Log lines are checked as records (every logger at DEBUG, SQL
statements included) and as the JSON lines the app's own formatter writes (``app.log``).

The run is checked twice: with SQLAlchemy logging its statements, and with its row echo on as
well (its DEBUG level), which logs rows after the vault has opened their sealed columns.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app.db import Session
from app.log import FERNET_TOKEN, JsonLineFormatter
from app.vault import fingerprint
from modules.payment.models import PaymentToken
from tests.conftest import TEST_SECRET, TEST_VAULT_KEY, run_jobs
from tests.modules.conftest import Caller
from tests.servers import Services, postgres_bindir

from .conftest import API, MadeProduct, primary_dsn, provider_secret, sql, tx_row
from .test_demo_gateway import choose, order_through_demo, shown
from .test_saved_methods import partly_paid_invoice, saved

#: Distinctive values, so a hit in the dump or a log line can only be a leak.
WEBHOOK_SECRET = "issue12-webhook-secret-Zq7vR2mW9xK4pL8nT3"
CARD_NUMBER = "4000056655665556"
CARD = {"save_card": "1", "card_number": "4000 0566 5566 5556", "exp_month": "11",
        "exp_year": "2031"}  # fmt: skip


class FormattedLines(logging.Handler):
    """Keeps each record as the app's formatter writes it to the log (``app.log``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonLineFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """The app logs at DEBUG (the tests' default is WARNING): every line it can write."""
    return {**config, "log_level": "DEBUG"}


class SecretInLog(AssertionError):
    """A secret reached a log record or line (raised only by the log check)."""


#: SQLAlchemy's own logger is WARNING unless raised. "statements": every SQL statement (their
#: parameters hidden by the app's engines, app.db). "rows": its DEBUG echo of result rows too.
SQL_LOG_LEVELS = {"statements": logging.INFO, "rows": logging.DEBUG}


@pytest.fixture
def log_lines(
    request: pytest.FixtureRequest, app: Flask, caplog: pytest.LogCaptureFixture
) -> Iterator[FormattedLines]:
    """Every record from here on (the logins of the fixtures after it included): in caplog at
    DEBUG for every logger (SQLAlchemy at ``request.param``), and formatted by the app's
    formatter."""
    caplog.set_level(logging.DEBUG)  # after create_app, which sets the root logger's level
    caplog.set_level(SQL_LOG_LEVELS[request.param], logger="sqlalchemy")
    handler = FormattedLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def pg_dump(services: Services) -> str:
    """The whole test database as plain SQL (as tests/app/test_vault.py runs it)."""
    binary = postgres_bindir() / "pg_dump"
    if not binary.exists():
        found = shutil.which("pg_dump")
        if found is None:
            pytest.skip("pg_dump not installed")
        binary = Path(found)
    return subprocess.run(
        [str(binary), "--dbname", primary_dsn(services)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def copy_rows(dump: str, table: str) -> list[str]:
    """The data lines of ``table``'s COPY block in a plain dump."""
    lines = dump.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"COPY public.{table} "))
    end = lines.index("\\.", start)
    return lines[start + 1 : end]


@pytest.mark.parametrize(
    "log_lines",
    [
        "statements",
        # SQLAlchemy's DEBUG echo logs every result row ("Row %r") after the Sealed type
        # opened it: app.vault.Unsealed's repr hides the value.
        "rows",
    ],
    indirect=True,
)
def test_no_secret_in_a_database_dump_or_a_log_line_after_saving_them(
    app: Flask,
    log_lines: FormattedLines,
    caplog: pytest.LogCaptureFixture,
    serve: Callable[[Flask], str],
    admin: Caller,
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    base = serve(app)

    # 1. An admin sets the demo gateway's webhook secret (write-only) through the API.
    changed = requests.patch(f"{base}{API}/providers/demo",
                             json={"secrets": {"webhook_secret": WEBHOOK_SECRET}},
                             headers=admin.headers, timeout=30)  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["secrets_set"] == ["webhook_secret"]
    assert WEBHOOK_SECRET not in changed.text
    assert provider_secret(app) == WEBHOOK_SECRET

    # 2. A customer pays on the hosted page and saves the card; the gateway's job notifies
    # (signed with that secret), and the saved method then pays another invoice off-session.
    tx = order_through_demo(base, customer, product.id)["transaction"]
    choose(tx["action"]["url"], "success", **CARD)
    run_jobs(app)
    paid = shown(base, customer, tx)
    assert (paid["state"], paid["token"] is not None) == ("success", True)
    [method] = saved(base, customer)
    assert (method["brand"], method["card"]) == ("visa", "•••• 5556")
    invoice = partly_paid_invoice(base, customer, product.id)
    body = {"invoice": invoice, "provider": "demo", "token": paid["token"]}
    off_session = requests.post(f"{base}{API}", json=body, headers=customer.headers, timeout=30)
    assert off_session.status_code == 201, off_session.text
    run_jobs(app)
    assert tx_row(services, off_session.json()["reference"])["state"] == "success"

    # The clear values to look for: the provider token (opened by the vault), and the gateway's
    # card fingerprint (the demo gateway's HMAC of the number under the webhook secret; the
    # stored column is the vault's fingerprint of it, which proves this is the one it sent).
    with app.app_context():
        provider_token = Session().scalars(select(PaymentToken.provider_token)).one()
        gateway_fingerprint = hmac.new(
            WEBHOOK_SECRET.encode(), CARD_NUMBER.encode(), hashlib.sha256
        ).hexdigest()
        stored_fingerprint = fingerprint(gateway_fingerprint, "payment.card")
    assert provider_token.startswith("demo_tok_")
    [(sealed_token, clear_fingerprint)] = sql(
        services, "SELECT provider_token, fingerprint FROM payment_token"
    )
    assert clear_fingerprint == stored_fingerprint
    [(sealed_secrets,)] = sql(services, "SELECT secrets FROM payment_provider WHERE code = 'demo'")
    secrets = {
        "the webhook secret": WEBHOOK_SECRET,
        "the provider token": provider_token,
        "the gateway's card fingerprint": gateway_fingerprint,
        "the card number": CARD_NUMBER,
        "the vault key": TEST_VAULT_KEY,
        "the app's secret key": TEST_SECRET,
    }

    # 3. The dump: none of them, but the sealed values and the clear brand and last four.
    dump = pg_dump(services)

    for what, value in secrets.items():
        assert value not in dump, f"{what} is in the database dump"
    for sealed in (sealed_token, sealed_secrets):
        assert sealed.startswith("gAAAAA")
        assert sealed in dump
    [token_row] = copy_rows(dump, "payment_token")
    assert sealed_token in token_row.split("\t")
    assert {"visa", "5556", "11", "2031", stored_fingerprint} <= set(token_row.split("\t"))
    assert any(sealed_secrets in row for row in copy_rows(dump, "payment_provider"))

    # 4. Every log line of the run: none of them, as records or as the lines written.
    records = caplog.get_records("setup") + caplog.get_records("call")
    written = "\n".join(log_lines.lines)
    formatter = logging.Formatter()
    leaks = set()
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        leaks |= {f"{what} in a record of {record.name}" for what, value in secrets.items()
                  if value in text}  # fmt: skip
    leaks |= {f"{what} in a written line" for what, value in secrets.items() if value in written}
    if leaks:
        raise SecretInLog("; ".join(sorted(leaks)))
    assert FERNET_TOKEN.search(written) is None  # nor a whole sealed value (app.log redacts)
    # The capture saw the run: the admin's change, the gateway's job and its notifications,
    # and the SQL (SQLAlchemy's own logger raised).
    assert "PATCH /api/v1/payments/providers/demo 200" in written
    assert "POST /api/v1/payments/providers/demo/notify 200" in written
    assert "deliver_notification" in written
    assert any(r.name.startswith("sqlalchemy.engine") for r in records)
    assert "FROM payment_token" in written
