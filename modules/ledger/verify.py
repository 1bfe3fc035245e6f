"""``lapak ledger verify``: recompute every sum, every running balance and the hash chain.

It streams the journal in chain order (a server-side cursor on PostgreSQL), holding only one
running balance per account, so it works on millions of entries. Each kind of problem is
counted, and the first bad row of all is named, so an operator knows where to look:

- a transaction whose legs do not balance per currency, or with fewer than two legs;
- an entry with both or neither side positive;
- an entry whose ``balance_after`` is not the account's previous balance plus the entry, or that
  takes a holder account below zero;
- a transaction out of chain order, or whose hash is not the hash of the previous one and its
  content (it, or something before it, was altered);
- an account whose cached ``balance`` is not the sum of its entries.

Counting goes on from the stored values after a problem, so one altered row is reported once
rather than making every later row of its account look wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from app.db import get_database

from . import chain
from .chart import account_code
from .models import DEBIT_NORMAL, Account, ChainHead, Entry, Transaction
from .registry import registry

ZERO = Decimal("0.00")
BATCH = 5000


@dataclass
class Report:
    transactions: int = 0
    entries: int = 0
    accounts: int = 0
    unbalanced: int = 0
    malformed_entries: int = 0
    balance_mismatches: int = 0
    negative_balances: int = 0
    chain_breaks: int = 0
    cached_mismatches: int = 0
    account_mismatches: int = 0
    first_problem: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_problem is None

    def problem(self, counter: str, message: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        if self.first_problem is None:
            self.first_problem = message
        if len(self.problems) < 20:
            self.problems.append(message)


@dataclass
class _AccountState:
    code: str
    debit_normal: bool
    allow_negative: bool
    cached: Decimal
    running: Decimal = ZERO


def verify() -> Report:
    report = Report()
    engine = get_database().primary
    if engine.dialect.name == "postgresql":
        # One snapshot for the accounts, the journal and the head: postings committed while it
        # streams would otherwise look like cached balances or a head out of step.
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as connection:
        accounts = _accounts(connection, report)
        report.accounts = len(accounts)
        previous_hash, previous_index = chain.GENESIS, 0
        for transaction, entries in _journal(connection):
            report.transactions += 1
            report.entries += len(entries)
            name = f"transaction {transaction.number} (id {transaction.id})"
            if transaction.chain_index != previous_index + 1:
                report.problem(
                    "chain_breaks",
                    f"{name}: chain position {transaction.chain_index}, expected "
                    f"{previous_index + 1} (a transaction is missing or out of order)",
                )
            _check_entries(report, name, entries, accounts)
            content = chain.canonical(
                transaction_uuid=transaction.uuid,
                number=transaction.number,
                operation=transaction.operation,
                nonce=transaction.nonce,
                reference=transaction.reference,
                memo=transaction.memo,
                actor_id=transaction.actor_id,
                reverses_id=transaction.reverses_id,
                fingerprint=transaction.fingerprint,
                created_at=transaction.created_at,
                legs=[
                    (_code(accounts, e.account_id), e.currency, e.debit, e.credit) for e in entries
                ],
            )
            version = chain.version_of(transaction.hash)
            expected = chain.link(previous_hash, content, version) if version == 1 else None
            if expected != transaction.hash:
                report.problem(
                    "chain_breaks",
                    f"{name}: its hash does not match its content and the previous hash "
                    "(this transaction, its entries or the one before were altered)",
                )
            previous_hash, previous_index = transaction.hash, transaction.chain_index
        _check_head(report, connection, previous_index, previous_hash)
        for account_id, state in accounts.items():
            if state.cached != state.running:
                report.problem(
                    "cached_mismatches",
                    f"account {state.code} (id {account_id}): cached balance {state.cached}, "
                    f"its entries sum to {state.running}",
                )
    return report


def _check_head(report: Report, connection: Any, last_index: int, last_hash: str) -> None:
    """The chain head must name the last transaction: else the newest ones were cut off."""
    heads = ChainHead.__table__
    head = connection.execute(select(heads.c.last_index, heads.c.last_hash)).first()
    index, stored = (head.last_index, head.last_hash) if head else (0, chain.GENESIS)
    if (index, stored) != (last_index, last_hash):
        report.problem(
            "chain_breaks",
            f"the chain head names transaction {index} of the chain, the journal ends at "
            f"{last_index} (transactions after it were removed, or the head altered)",
        )


def _check_entries(
    report: Report, name: str, entries: list[Any], accounts: dict[int, _AccountState]
) -> None:
    if len(entries) < 2:
        report.problem(
            "unbalanced", f"{name}: {len(entries)} leg(s); a transaction has two or more"
        )
    sums: dict[str, Decimal] = {}
    for entry in entries:
        if entry.debit < 0 or entry.credit < 0 or (entry.debit > 0) == (entry.credit > 0):
            report.problem(
                "malformed_entries",
                f"entry {entry.id} of {name}: debit {entry.debit}, credit {entry.credit} "
                "(exactly one side is positive)",
            )
        sums[entry.currency] = sums.get(entry.currency, ZERO) + entry.debit - entry.credit
        state = accounts.get(entry.account_id)
        if state is None:
            report.problem(
                "malformed_entries",
                f"entry {entry.id} of {name}: its account (id {entry.account_id}) does not exist",
            )
            continue
        change = entry.debit - entry.credit if state.debit_normal else entry.credit - entry.debit
        expected = state.running + change
        if entry.balance_after != expected:
            report.problem(
                "balance_mismatches",
                f"entry {entry.id} of {name} on {state.code}: balance_after "
                f"{entry.balance_after}, expected {expected}",
            )
        if not state.allow_negative and entry.balance_after < 0:
            report.problem(
                "negative_balances",
                f"entry {entry.id} of {name} takes {state.code} below zero",
            )
        state.running = entry.balance_after
    for currency, difference in sorted(sums.items()):
        if difference != 0:
            report.problem(
                "unbalanced", f"{name}: debits and credits differ by {difference} {currency}"
            )


def _code(accounts: dict[int, _AccountState], account_id: int) -> str:
    state = accounts.get(account_id)
    return state.code if state is not None else f"<missing account {account_id}>"


def _accounts(connection: Any, report: Report) -> dict[int, _AccountState]:
    """Every account, checked against the chart: an account altered behind the triggers' back
    (another holder, another currency, a holder account allowed below zero) is named, and the
    rules come from the chart, not from the row."""
    table = Account.__table__
    rows = connection.execute(
        select(
            table.c.id,
            table.c.code,
            table.c.purpose,
            table.c.currency,
            table.c.holder_id,
            table.c.kind,
            table.c.allow_negative,
            table.c.balance,
        )
    )
    purposes = registry().purposes
    accounts = {}
    for row in rows:
        purpose = purposes.get(row.purpose)
        kind, allow_negative = row.kind, row.allow_negative
        if purpose is None:
            report.problem(
                "account_mismatches",
                f"account {row.code} (id {row.id}): purpose {row.purpose!r} is not in the chart",
            )
        else:
            try:
                code = account_code(purpose, row.currency, row.holder_id)
            except ValueError:
                code = None
            if (code, row.kind, row.allow_negative) != (row.code, purpose.kind, not purpose.held):
                report.problem(
                    "account_mismatches",
                    f"account {row.code} (id {row.id}): its purpose, currency, holder, kind or "
                    "allow_negative is not what the chart gives it (the row was altered)",
                )
            kind, allow_negative = purpose.kind, not purpose.held
        accounts[row.id] = _AccountState(
            row.code, kind in DEBIT_NORMAL, allow_negative, row.balance
        )
    return accounts


def _journal(connection: Any) -> Iterator[tuple[Any, list[Any]]]:
    """Each transaction with its entries, in chain order, streamed."""
    t, e = Transaction.__table__, Entry.__table__
    statement = (
        select(
            t.c.id,
            t.c.uuid,
            t.c.number,
            t.c.chain_index,
            t.c.reverses_id,
            t.c.fingerprint,
            t.c.operation,
            t.c.nonce,
            t.c.reference,
            t.c.memo,
            t.c.actor_id,
            t.c.created_at,
            t.c.hash,
            e.c.id.label("entry_id"),
            e.c.account_id,
            e.c.currency,
            e.c.debit,
            e.c.credit,
            e.c.balance_after,
        )
        .select_from(t.outerjoin(e, e.c.transaction_id == t.c.id))
        .order_by(t.c.chain_index, e.c.id)
    )
    result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(statement)
    current, entries = None, []
    for row in result:
        if current is None or row.id != current.id:
            if current is not None:
                yield current, entries
            current, entries = row, []
        if row.entry_id is not None:
            entries.append(_EntryRow(row))
    if current is not None:
        yield current, entries


class _EntryRow:
    __slots__ = ("account_id", "balance_after", "credit", "currency", "debit", "id")

    def __init__(self, row: Any) -> None:
        self.id = row.entry_id
        self.account_id = row.account_id
        self.currency = row.currency
        self.debit = row.debit
        self.credit = row.credit
        self.balance_after = row.balance_after
