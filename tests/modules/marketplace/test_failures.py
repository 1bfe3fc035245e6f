"""Failure injection: a database failure at a step saves nothing and burns no invoice number.

Order and payment numbers need only be unique (they come from their own short transaction, as
Odoo's sequences may skip); invoice numbers must stay gap-free.

The failure is real: a PostgreSQL trigger created on the primary through a direct connection
refuses the statement, as a constraint, a full disk or a lost connection would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    YEAR,
    MadeProduct,
    assert_problem,
    nothing_written,
    order_body,
    place,
    post,
    primary_dsn,
    sql,
)


@contextmanager
def failing_trigger(
    services: Services, when: str, table: str = "marketplace_payment"
) -> Iterator[None]:
    """``when`` e.g. ``BEFORE INSERT``: every matching statement on ``table`` fails."""
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        connection.execute(
            "CREATE OR REPLACE FUNCTION lapak_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
        )
        connection.execute(
            f"CREATE TRIGGER lapak_test_refuse {when} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION lapak_test_refuse()"
        )
        try:
            yield
        finally:
            connection.execute(f"DROP TRIGGER IF EXISTS lapak_test_refuse ON {table}")
            connection.execute("DROP FUNCTION IF EXISTS lapak_test_refuse()")


def test_a_failure_at_the_payment_step_saves_nothing_and_burns_no_number(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    with failing_trigger(services, "BEFORE INSERT"):
        failed = post(client, customer, "/orders", order_body((product.id, "1")))
        problem = assert_problem(failed, 503, "order-step-failed")
        assert failed.headers["Retry-After"] == "5"  # like every 503: when to try again
        assert problem["step"] == "payment"
        assert problem["detail"].startswith("payment: ")
        assert "injected failure" not in problem["detail"]  # no SQL or database text leaks
        nothing_written(services)
    placed = place(client, customer, order_body((product.id, "1")))
    assert placed["invoice"]["number"] == f"INV/{YEAR}/00001"
    assert placed["order"]["number"].startswith(f"SO/{YEAR}/")
    assert placed["payment"]["number"].startswith(f"PAY/{YEAR}/")


def test_a_failure_when_the_invoice_is_numbered_gives_the_number_back(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    # The invoice is numbered last, in the statement that increments its counter; refusing
    # that update fails the transaction after the counter was incremented.
    with failing_trigger(services, "BEFORE UPDATE OF name", "marketplace_account_move"):
        failed = post(client, customer, "/orders", order_body((product.id, "1")))
        problem = assert_problem(failed, 503, "order-step-failed")
        assert problem["step"] == "numbering"
        nothing_written(services)
        assert sql(
            services,
            "SELECT count(*) FROM marketplace_sequence WHERE code = 'INV' AND next_number > 1",
        ) == [(0,)]
    placed = place(client, customer, order_body((product.id, "1")))
    assert placed["invoice"]["number"] == f"INV/{YEAR}/00001"


def test_a_failed_order_with_an_idempotency_key_can_be_retried(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    body = order_body((product.id, "1"))
    with failing_trigger(services, "BEFORE INSERT"):
        assert_problem(post(client, customer, "/orders", body, key="k-1"), 503)
        nothing_written(services)  # the key rolled back with the work
    retried = post(client, customer, "/orders", body, key="k-1")
    assert retried.status_code == 201, retried.get_json()
    assert retried.get_json()["invoice"]["number"] == f"INV/{YEAR}/00001"


def test_sequences_dropped_under_a_running_process_are_made_again(
    client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    place(client, customer, order_body((product.id, "1")))
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        for code in ("so", "pay"):
            connection.execute(f"DROP SEQUENCE marketplace_seq_{code}_{YEAR}")

    failed = post(client, customer, "/orders", order_body((product.id, "1")))
    assert assert_problem(failed, 503, "order-step-failed")["step"] == "numbering"
    again = place(client, customer, order_body((product.id, "1")))
    # Made again after the numbers already used, so none is given twice.
    assert again["order"]["number"] == f"SO/{YEAR}/00002"
    assert again["payment"]["number"] == f"PAY/{YEAR}/00002"
    assert again["invoice"]["number"] == f"INV/{YEAR}/00002"
