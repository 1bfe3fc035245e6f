"""Numbering under concurrency: the year's sequences, made by several processes at once, once
and without a server error; transactions waiting for a gap-free counter, served in order."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select, text

from app.db import transaction
from modules.marketplace import numbering
from modules.marketplace.models import SaleOrder
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import (
    MadeProduct,
    created,
    order_body,
    post,
    primary_dsn,
    sql,
)
from tests.servers import Services

#: Years no other test orders in, so each starts without its sequences.
YEARS = range(2901, 2921)


@pytest.fixture
def fresh_years(services: Services) -> Iterator[range]:
    if services.primary is None:
        pytest.skip("reads the harness primary's log (LAPAK_TEST_DATABASE_URL is external)")
    yield YEARS
    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        for year in YEARS:
            for code in ("so", "pay"):
                connection.execute(f"DROP SEQUENCE IF EXISTS marketplace_seq_{code}_{year}")
    numbering._READY.clear()


def test_concurrent_first_orders_of_a_year_create_its_sequences_once_without_error(
    app: Flask, services: Services, fresh_years: range
) -> None:
    log = services.primary.log_file
    log_start = log.stat().st_size
    failures: list[BaseException] = []
    for year in fresh_years:
        numbering._READY.clear()  # as two fresh processes
        start = threading.Barrier(2)

        def prepare(year: int = year, start: threading.Barrier = start) -> None:
            with app.app_context():
                start.wait()
                try:
                    numbering.prepare_year(("SO", "PAY"), year)
                except BaseException as error:
                    failures.append(error)

        threads = [threading.Thread(target=prepare) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []

    with psycopg.connect(primary_dsn(services), autocommit=True) as connection:
        made = connection.execute(
            "SELECT count(*) FROM pg_class WHERE relkind = 'S' "
            "AND relname ~ '^marketplace_seq_(so|pay)_29[0-9]{2}$'"
        ).fetchone()[0]
    assert made == 2 * len(fresh_years)
    with log.open() as handle:
        handle.seek(log_start)
        errors = [line for line in handle if "ERROR" in line]
    assert errors == []


def test_transactions_waiting_for_a_counter_take_their_numbers_in_the_order_they_asked(
    app: Flask, customer: Caller, product: MadeProduct, services: Services
) -> None:
    # One transaction holds the counter; five more ask for it one after another, each once
    # the one before is seen waiting. They must get the numbers in that order: waiters for
    # the counter's row lock would race for it when it is freed, in no order.
    client = app.test_client()
    orders = [
        created(post(client, customer, "/orders", order_body((product.id, "1"))))["order"]["id"]
        for _ in range(6)
    ]
    year, code = 2931, "RINV"
    go = threading.Event()
    backends: dict[int, int] = {}
    taken: dict[int, str] = {}
    failures: list[BaseException] = []

    def number(index: int) -> None:
        try:
            with app.app_context(), transaction() as session:
                backends[index] = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                order = session.scalars(
                    select(SaleOrder).where(SaleOrder.uuid == uuid.UUID(orders[index]))
                ).one()
                taken[index] = numbering.number_document(order, code, year)
                if index == 0:
                    go.wait(30)
        except BaseException as error:
            failures.append(error)

    def waiting(index: int) -> bool:
        """Whether transaction ``index`` waits for a lock."""
        if index not in backends:
            return False
        rows = sql(
            services,
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            backends[index],
        )
        return bool(rows)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert not failures, failures
            assert time.monotonic() < deadline, "still waiting after 30 s"
            time.sleep(0.01)

    threads = [threading.Thread(target=number, args=(i,)) for i in range(6)]
    try:
        threads[0].start()
        wait_for(lambda: 0 in taken)
        for index in range(1, 6):
            threads[index].start()
            wait_for(lambda index=index: waiting(index))
    finally:
        go.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(30)
    assert failures == []
    assert taken == {i: numbering.format_number(code, year, i + 1) for i in range(6)}
