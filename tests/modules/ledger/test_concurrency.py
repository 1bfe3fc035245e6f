"""Concurrent postings over HTTP against the harness's PostgreSQL on 127.0.0.1, bounded.

Each request runs in its own thread with its own test client, app context and session (the
session is thread-local), as gunicorn threads would. Postings of one account serialise on its
row lock and then on the chain head: nonces are decided exactly once, a balance is never
overdrawn, and nothing deadlocks (a deadlock would surface as a 503).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from modules.ledger.verify import verify
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import API, D, ok, simple, sql

#: Below the app's pool (5 + 10 overflow): no request waits for a connection rather than a lock.
WORKERS = 10


def post_all(app: Flask, caller: Caller, bodies: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    def one(body: dict[str, Any]) -> tuple[int, Any]:
        response = app.test_client().post(f"{API}/transactions", json=body, headers=caller.headers)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(one, bodies))


def test_a_hundred_postings_with_one_nonce_and_body_write_once_and_replay_99_times(
    app: Flask, staff: Caller, customer: Caller, services: Services
) -> None:
    body = simple("CREDIT_ADD", customer.uuid, "12.34", "the-one")

    answers = post_all(app, staff, [body] * 100)

    assert Counter(status for status, _ in answers) == {201: 1, 200: 99}
    assert {answer["id"] for _, answer in answers} == {answers[0][1]["id"]}
    assert sum(answer["replayed"] for _, answer in answers) == 99
    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 1
    assert sql(services, "SELECT balance FROM ledger_account WHERE purpose = 'wallet'") == [
        (D("12.34"),)
    ]


def test_one_nonce_with_two_bodies_at_once_one_wins_the_other_is_a_conflict(
    app: Flask, staff: Caller, customer: Caller, services: Services
) -> None:
    first = simple("CREDIT_ADD", customer.uuid, "1.00", "contested")
    second = simple("CREDIT_ADD", customer.uuid, "2.00", "contested")

    answers = post_all(app, staff, [first, second] * 25)

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 1, 200: 24, 409: 25}, statuses
    (winner,) = [answer for status, answer in answers if status == 201]
    won_with = first if winner["entries"][1]["credit"] == "1.00" else second
    for (status, answer), body in zip(answers, [first, second] * 25, strict=True):
        if status == 409:
            assert body is not won_with
            assert answer["type"] == "urn:lapak:problem:duplicate-nonce"
        else:
            assert body is won_with
    assert sql(services, "SELECT count(*) FROM ledger_transaction")[0][0] == 1


def test_fifty_debits_of_100_on_a_wallet_of_1000_exactly_ten_succeed(
    app: Flask, staff: Caller, customer: Caller, services: Services
) -> None:
    fund = simple("CREDIT_ADD", customer.uuid, "1000.00", "fund")
    ok(app.test_client().post(f"{API}/transactions", json=fund, headers=staff.headers))
    spends = [simple("CREDIT_SPEND", customer.uuid, "100.00", f"spend-{i}") for i in range(50)]

    answers = post_all(app, staff, spends)

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 10, 422: 40}, statuses
    refusals = {answer["type"] for status, answer in answers if status == 422}
    assert refusals == {"urn:lapak:problem:insufficient-balance"}
    wallet = "SELECT id FROM ledger_account WHERE purpose = 'wallet'"
    assert sql(services, f"SELECT balance FROM ledger_account WHERE id = ({wallet})") == [  # noqa: S608
        (D("0.00"),)
    ]
    running = [row[0] for row in sql(services, "SELECT balance_after FROM ledger_entry"  # noqa: S608
                                     f" WHERE account_id = ({wallet}) ORDER BY id")]  # fmt: skip
    assert running == [D(1000 - 100 * i).quantize(D("0.01")) for i in range(11)]
    assert min(running) >= 0
    with app.app_context():
        report = verify()
    assert report.ok, report.problems
    assert report.transactions == 11


def test_spends_and_credits_of_many_holders_at_once_never_deadlock(
    app: Flask, staff: Caller, log_in_as: Callable[..., Caller], services: Services
) -> None:
    """Postings that share the platform's accounts and each touch one of several wallets, in
    both directions: locks in account-id order mean no cycle, so no deadlock."""
    holders = [log_in_as("customer") for _ in range(4)]
    funds = [simple("CREDIT_ADD", h.uuid, "50.00", f"fund-{n}") for n, h in enumerate(holders)]
    assert {status for status, _ in post_all(app, staff, funds)} == {201}
    # Each holder: 8 credits and 7 spends of 5.00: even all spends first stay within 50.00.
    mixed = [
        simple("CREDIT_SPEND" if (i // 4) % 2 else "SIGNUP_CREDIT", holders[i % 4].uuid, "5.00",
               f"m-{i}")
        for i in range(60)
    ]  # fmt: skip

    statuses = Counter(status for status, _ in post_all(app, staff, mixed))

    assert statuses == {201: 60}, statuses
    with app.app_context():
        report = verify()
    assert report.ok, report.problems
    assert report.transactions == 64


def test_postings_that_open_several_new_accounts_at_once_never_deadlock(
    app: Flask, staff: Caller, log_in_as: Callable[..., Caller]
) -> None:
    """Each adjustment credits two holders' wallets that do not exist yet, picked so that
    postings overlap on them: opening an account holds no ledger lock, so none waits for
    another in a cycle."""
    holders = [log_in_as("customer") for _ in range(6)]
    bodies = []
    for index in range(40):
        first, second = holders[index % 6], holders[(index * 5 + 1) % 6]
        if first is second:
            second = holders[(index + 1) % 6]
        bodies.append(
            {
                "operation": "ADJUSTMENT",
                "nonce": f"open-{index}",
                "currency": "IDR",
                "legs": [
                    {"purpose": "adjustment", "debit": "2.00"},
                    {"purpose": "wallet", "holder": str(first.uuid), "credit": "1.00"},
                    {"purpose": "wallet", "holder": str(second.uuid), "credit": "1.00"},
                ],
            }
        )

    statuses = Counter(status for status, _ in post_all(app, staff, bodies))

    assert statuses == {201: 40}, statuses
    with app.app_context():
        report = verify()
    assert report.ok, report.problems
