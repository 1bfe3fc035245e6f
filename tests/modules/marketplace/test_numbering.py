"""The year's sequences, made by several processes at once: once, and without a server error."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask

from modules.marketplace import numbering
from tests.modules.marketplace.conftest import primary_dsn
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
