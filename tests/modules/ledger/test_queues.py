"""The queues postings wait in (PostgreSQL): waiters for an account, or for the chain head, are
served in the order they asked, and each queue is taken just before the rows it stands for, so
the lock order (accounts in id order, then the chain head) is unchanged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import psycopg
import pytest
from flask import Flask
from sqlalchemy import text

from app.db import transaction
from modules.ledger.posting import (
    ACCOUNT_QUEUE_SPACE,
    CHAIN_QUEUE_SPACE,
    Leg,
    Posting,
    lock_balances,
    post,
)
from modules.user.services import create_user
from tests.servers import Services

from .conftest import primary_dsn, sql

ONE = Decimal("1.00")


def credit(holder_id: int, nonce: str) -> Posting:
    """1.00 from the clearing account (every such posting takes it) to the holder's wallet."""
    return Posting(
        "CREDIT_ADD",
        nonce,
        (
            Leg("manual_clearing", "IDR", debit=ONE),
            Leg("wallet", "IDR", credit=ONE, holder_id=holder_id),
        ),
    )


def move(from_holder: int, to_holder: int, nonce: str) -> Posting:
    """1.00 from one wallet to another: no platform account."""
    return Posting(
        "ADJUSTMENT",
        nonce,
        (
            Leg("wallet", "IDR", debit=ONE, holder_id=from_holder),
            Leg("wallet", "IDR", credit=ONE, holder_id=to_holder),
        ),
    )


class Postings:
    """Postings on threads of their own, each in its own transaction; one started ``holding``
    stays open until :meth:`release`."""

    def __init__(self, app: Flask, services: Services) -> None:
        self.app = app
        self.go = threading.Event()
        self.backends: dict[int, int] = {}
        self.numbers: dict[int, str] = {}
        self.failures: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.watcher = psycopg.connect(primary_dsn(services), autocommit=True)

    def start(self, index: int, posting: Posting, *, holding: bool = False) -> None:
        def run() -> None:
            try:
                with self.app.app_context(), transaction() as session:
                    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    self.backends[index] = pid
                    self.numbers[index] = post(posting).number
                    if holding:
                        self.go.wait()
            except BaseException as error:
                self.failures.append(error)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def queued(self, index: int, space: int, key: int) -> bool:
        """Whether posting ``index`` waits in the queue ``(space, key)`` (an advisory lock)."""
        if index not in self.backends:
            return False
        found = self.watcher.execute(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted"
            " AND classid = %s AND objid = %s",
            (self.backends[index], space, key),
        ).fetchone()
        return found is not None

    def wait_for(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert not self.failures, self.failures
            assert time.monotonic() < deadline, "still waiting after 30 s"
            time.sleep(0.01)

    def release(self) -> None:
        self.go.set()
        for thread in self.threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in self.threads), "a posting never ended"

    def close(self) -> None:
        self.go.set()
        self.watcher.close()


@pytest.fixture
def postings(app: Flask, services: Services) -> Iterator[Postings]:
    running = Postings(app, services)
    try:
        yield running
    finally:
        running.close()


def account_id(services: Services, code: str) -> int:
    return sql(services, "SELECT id FROM ledger_account WHERE code = %s", code)[0][0]


def holders(app: Flask, count: int) -> list[int]:
    """``count`` customers whose wallets (and the clearing account) are open, with 1.00 each."""
    with app.app_context():
        made = [
            create_user(f"q{i}@example.test", role="customer", password=None, active=True).id
            for i in range(count)
        ]
        for holder in made:
            with transaction():
                post(credit(holder, f"open-{holder}"))
    return made


def test_postings_waiting_for_an_account_are_written_in_the_order_they_asked(
    app: Flask, postings: Postings, services: Services
) -> None:
    # One posting holds the clearing account every posting here takes; ten more ask for it
    # one after another, each once the one before is seen waiting. Waiters for the account's
    # row race for its new version when it is freed: often in order, not always; they wait in
    # the account's queue instead.
    customers = holders(app, 11)
    clearing = account_id(services, "manual_clearing:IDR")
    postings.start(0, credit(customers[0], "first"), holding=True)
    postings.wait_for(lambda: 0 in postings.numbers)
    for index in range(1, 11):
        postings.start(index, credit(customers[index], f"queued-{index}"))
        postings.wait_for(lambda i=index: postings.queued(i, ACCOUNT_QUEUE_SPACE, clearing))

    postings.release()

    assert postings.failures == []
    assert sorted(postings.numbers, key=postings.numbers.__getitem__) == list(range(11))


def test_postings_with_no_account_in_common_wait_for_the_chain_head_in_order(
    app: Flask, postings: Postings
) -> None:
    customers = holders(app, 12)
    postings.start(0, move(customers[0], customers[1], "first"), holding=True)
    postings.wait_for(lambda: 0 in postings.numbers)
    for index in range(1, 6):  # each between two wallets of its own: they wait for the chain
        postings.start(index, move(customers[2 * index], customers[2 * index + 1], f"q-{index}"))
        postings.wait_for(lambda i=index: postings.queued(i, CHAIN_QUEUE_SPACE, 1))

    postings.release()

    assert postings.failures == []
    assert sorted(postings.numbers, key=postings.numbers.__getitem__) == list(range(6))


@contextmanager
def chain_queue_held(services: Services) -> Iterator[None]:
    with psycopg.connect(primary_dsn(services)) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(%s, 1)", (CHAIN_QUEUE_SPACE,))
        yield


def test_a_posting_waits_for_the_chain_holding_its_accounts_not_before(
    app: Flask, postings: Postings, services: Services
) -> None:
    customer = holders(app, 1)[0]
    with chain_queue_held(services):
        postings.start(0, credit(customer, "waits"))
        postings.wait_for(lambda: postings.queued(0, CHAIN_QUEUE_SPACE, 1))

        # Its accounts are locked already: the lock order is accounts, then the chain.
        with psycopg.connect(primary_dsn(services), autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "SELECT id FROM ledger_account WHERE code = 'manual_clearing:IDR' FOR UPDATE"
                )
    postings.release()
    assert postings.failures == []
    assert 0 in postings.numbers


def test_a_balance_locked_before_a_posting_waits_in_the_accounts_queue_first(
    app: Flask, services: Services
) -> None:
    customer = holders(app, 1)[0]
    wallet = f"wallet:IDR:{customer}"
    got: dict[str, Decimal] = {}
    failures: list[BaseException] = []

    backend: list[int] = []

    def lock() -> None:
        try:
            with app.app_context(), transaction() as session:
                backend.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
                got.update(lock_balances([wallet, "manual_clearing:IDR", "nothing:IDR:0"]))
        except BaseException as error:
            failures.append(error)

    def queued() -> bool:
        assert not failures, failures
        rows = sql(
            services,
            "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
            backend[0] if backend else 0,
        )
        return bool(rows)

    with psycopg.connect(primary_dsn(services)) as blocker:
        blocker.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (ACCOUNT_QUEUE_SPACE, account_id(services, wallet)),
        )
        thread = threading.Thread(target=lock, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not queued():
            assert time.monotonic() < deadline, "never queued"
            time.sleep(0.01)
        # In the queue, before any row: the rows are free.
        sql(services, "SELECT 1 FROM ledger_account WHERE code = %s FOR UPDATE NOWAIT", wallet)
    thread.join(30)

    assert failures == []
    assert got == {wallet: ONE, "manual_clearing:IDR": ONE}  # the missing one left out
