"""Posting one balanced transaction, inside the caller's database transaction.

Other modules call :func:`post` from their own ``transaction()``, so the posting commits or
rolls back with the business change that causes it. The steps, in the shared-ledger
document's order:

1. **validate** the operation and its legs: a known operation, legs on the purposes it allows,
   one positive side per leg, two decimals, balanced per currency (``invalid-operation``);
2. **lock the accounts** in id order, in one statement (made on first use; a holder's accounts
   never go below zero: ``insufficient-balance``, checked under the lock);
3. **lock the chain head** (the last transaction's hash and number), the one row every posting
   takes, last, so it is held only for the write;
4. **write** in one statement on PostgreSQL: the transaction (``ON CONFLICT`` on its operation
   and nonce: a nonce seen before writes nothing, and is then a replay of the same request or
   a ``duplicate-nonce``), its entries in one multi-row INSERT with their running balances,
   the accounts' cached balances and the chain head.

Locks are always taken in the same order (the caller's business rows, then accounts by id,
then the chain head), so concurrent postings serialise and never deadlock. On PostgreSQL each
of those rows is taken after a queue of its own (an advisory lock: the accounts' queues in id
order, then their rows, then the chain's queue and row), so waiters are served in order. That
holds only if a database transaction posts once: :func:`post` refuses a second posting in the
same one (put every leg of one business change into one posting).

On PostgreSQL the database checks again what the service checked: a deferred constraint
trigger refuses an unbalanced transaction at commit, CHECKs refuse a one-sided entry or a
holder balance below zero, and triggers refuse any UPDATE or DELETE of the journal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, cursor_rows, flush_changes, get_database, utcnow
from app.errors import Conflict, Invalid

from . import chain
from .chart import Purpose, account_code, account_name
from .models import DEBIT_NORMAL, Account, ChainHead, Entry, Transaction
from .operations import Operation
from .registry import InvalidOperation, LedgerRegistry, registry

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
#: The largest amount a NUMERIC(18, 2) column holds.
MAX_AMOUNT = Decimal("9999999999999999.99")
MAX_LEGS = 100
MAX_NONCE = 200


class DuplicateNonce(Conflict):
    code = "duplicate-nonce"
    title = "This nonce was already used with another request"


class InsufficientBalance(Invalid):
    code = "insufficient-balance"
    title = "The account's balance is too low"


@dataclass(frozen=True)
class Leg:
    """One side of a posting: an amount on the account of ``purpose`` in ``currency`` (and the
    holder's, for a holder purpose).

    ``fallbacks`` (same holder, same side) let a leg that lowers a holder account spill over:
    it takes what the account holds, then what the next one holds, and the last takes the
    rest. A refund draws a seller's share back from ``seller_pending``, then
    ``seller_available``, then books the remainder on ``seller_receivable`` (owed by the
    seller), so no holder account ever goes below zero. The split is decided under the
    accounts' locks.
    """

    purpose: str
    currency: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    holder_id: int | None = None
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Posting:
    operation: str
    nonce: str
    legs: Sequence[Leg]
    reference: str | None = None
    memo: str | None = None
    actor_id: int | None = None
    reverses_id: int | None = None

    def fingerprint(self) -> str:
        """SHA-256 of what makes two requests "the same": everything but who sent it."""
        content = {
            "operation": self.operation,
            "nonce": self.nonce,
            "reference": self.reference,
            "memo": self.memo,
            "legs": [
                [
                    leg.purpose,
                    leg.currency,
                    leg.holder_id,
                    chain.money(leg.debit),
                    chain.money(leg.credit),
                ]
                for leg in self.legs
            ],
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class PostedEntry:
    account_id: int
    account_code: str
    currency: str
    debit: Decimal
    credit: Decimal
    balance_after: Decimal


@dataclass(frozen=True)
class Posted:
    """The transaction a posting wrote, or (``replayed``) the one an earlier request wrote."""

    id: int
    replayed: bool = False
    uuid: uuid.UUID | None = None
    number: str | None = None
    created_at: datetime | None = None
    entries: tuple[PostedEntry, ...] = field(default=())


@dataclass
class _Locked:
    id: int
    balance: Decimal
    allow_negative: bool
    debit_normal: bool


@dataclass(frozen=True)
class _CheckedLeg:
    leg: Leg
    #: The leg's purpose and account code, then its fallbacks' in order.
    targets: tuple[tuple[Purpose, str], ...]

    @property
    def code(self) -> str:
        return self.targets[0][1]


# -- the entry point -----------------------------------------------------------------------------


def post(posting: Posting) -> Posted:
    """Write ``posting`` in the current transaction (call inside ``transaction()``)."""
    known = registry()
    operation = known.operation(posting.operation)
    legs = _checked(posting, operation, known)
    session = Session()
    root = session.get_transaction()
    if root is not None and session.info.get("ledger.posted_in") is root:
        raise RuntimeError(
            "a database transaction posts to the ledger once: put every leg of the change "
            "into one posting (two postings could take account locks out of order)"
        )
    postgresql = get_database().primary.dialect.name == "postgresql"
    fingerprint = posting.fingerprint()
    if not postgresql:  # SQLite serialises writers: a plain look first is exact
        earlier = _earlier(posting, fingerprint)
        if earlier is not None:
            return earlier
    connection = session.connection() if postgresql else None
    if connection is not None:
        # The caller's pending changes first, as a statement through the session would: not
        # at the commit, with the ledger's locks held.
        flush_changes()
        accounts, head = _lock_accounts_and_chain(connection, legs)
    else:
        accounts, head = _lock_accounts(legs), None
    try:
        entries, balances = _apply(operation, legs, accounts)
    except InsufficientBalance:
        # The shared ledger checks the nonce before the balance: a repeat of a spend that
        # emptied the account is a replay, not "insufficient balance".
        earlier = _earlier(posting, fingerprint) if postgresql else None
        if earlier is not None:
            return earlier
        raise
    if head is None:
        head = _lock_chain()
    now = utcnow()
    # Never back into a year the chain has left: two hosts' clocks a moment apart around New
    # Year would otherwise both take number 1 of a year.
    year = max(now.year, head.year)
    year_count = head.year_count + 1 if head.year == year else 1
    number = f"LT/{year}/{year_count:05d}"
    transaction_uuid = uuid.uuid4()
    content = chain.canonical(
        transaction_uuid=transaction_uuid,
        number=number,
        operation=posting.operation,
        nonce=posting.nonce,
        reference=posting.reference,
        memo=posting.memo,
        actor_id=posting.actor_id,
        reverses_id=posting.reverses_id,
        fingerprint=fingerprint,
        created_at=now,
        legs=[(e.account_code, e.currency, e.debit, e.credit) for e in entries],
    )
    row = {
        "uuid": transaction_uuid,
        "number": number,
        "chain_index": head.last_index + 1,
        "operation": posting.operation,
        "nonce": posting.nonce,
        "fingerprint": fingerprint,
        "reference": posting.reference,
        "memo": posting.memo,
        "actor_id": posting.actor_id,
        "reverses_id": posting.reverses_id,
        "created_at": now,
        "hash": chain.link(head.last_hash, content),
    }
    head_values = {"year": year, "year_count": year_count}
    if connection is not None:
        transaction_id = _write_postgresql(connection, row, head_values, entries, balances)
        if transaction_id is None:
            earlier = _earlier(posting, fingerprint)
            assert earlier is not None, "the nonce conflicted, so its transaction exists"
            return earlier
    else:
        transaction_id = _write_sqlite(row, head_values, entries, balances)
    posted = Posted(
        id=transaction_id,
        uuid=row["uuid"],
        number=number,
        created_at=now,
        entries=tuple(entries),
    )
    session.info["ledger.posted_in"] = session.get_transaction()
    session.info["ledger.posted"] = posted
    return posted


def posted_here() -> Posted | None:
    """What the current database transaction posted (it posts once), if it posted: its
    entries carry each account's balance after it, with no query."""
    session = Session()
    root = session.get_transaction()
    if root is not None and session.info.get("ledger.posted_in") is root:
        return session.info.get("ledger.posted")
    return None


# -- 1. validation -------------------------------------------------------------------------------


def _checked(posting: Posting, operation: Operation, known: LedgerRegistry) -> list[_CheckedLeg]:
    nonce = posting.nonce
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= MAX_NONCE or not nonce.isprintable():
        raise InvalidOperation(
            "a nonce is 1 to 200 printable characters", errors={"nonce": "1 to 200 characters"}
        )
    if not 2 <= len(posting.legs) <= MAX_LEGS:
        raise InvalidOperation(
            f"a transaction has 2 to {MAX_LEGS} legs", errors={"legs": f"2 to {MAX_LEGS}"}
        )
    checked = []
    sums: dict[str, list[Decimal]] = {}
    rules = known.rules
    for index, leg in enumerate(posting.legs):
        debit, amount = _side(leg, index)
        currency = leg.currency
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise InvalidOperation(
                "a currency is three capital letters",
                errors={f"legs.{index}.currency": "ISO 4217"},
            )
        held = leg.holder_id is not None
        # What a leg may land on depends only on these: checked once per application.
        rule = (operation.code, debit, leg.purpose, tuple(leg.fallbacks), held)
        purposes = rules.get(rule)
        if purposes is None:
            purposes = rules[rule] = _purposes(known, operation, leg, debit, index)
        targets = tuple(
            (purpose, account_code(purpose, currency, leg.holder_id)) for purpose in purposes
        )
        totals = sums.get(currency)
        if totals is None:
            totals = sums[currency] = [ZERO, ZERO]
        totals[0 if debit else 1] += amount
        checked.append(_CheckedLeg(leg, targets))
    for currency, (debit_total, credit_total) in sorted(sums.items()):
        if debit_total != credit_total:
            raise InvalidOperation(
                f"the legs do not balance in {currency}: "
                f"debit {debit_total}, credit {credit_total}",
                errors={"legs": f"debits and credits differ in {currency}"},
            )
    return checked


def _purposes(
    known: LedgerRegistry, operation: Operation, leg: Leg, debit: bool, index: int
) -> tuple[Purpose, ...]:
    """The purposes a leg lands on (its own, then its fallbacks'), each allowed on its side by
    the operation and held as the leg is (``invalid-operation`` otherwise)."""
    where = f"legs.{index}"
    side = "debit" if debit else "credit"
    allowed = operation.debit if debit else operation.credit
    purposes = []
    for name in (leg.purpose, *leg.fallbacks):
        purpose = known.purpose(name, f"{where}.purpose")
        if purpose.code not in allowed:
            raise InvalidOperation(
                f"{operation.code} does not {side} {purpose.code} accounts",
                errors={f"{where}.purpose": f"{side}s one of {', '.join(sorted(allowed))}"},
            )
        if purpose.held != (leg.holder_id is not None):
            need = "needs a holder" if purpose.held else "is the platform's and has no holder"
            raise InvalidOperation(f"{purpose.code} {need}", errors={f"{where}.holder": need})
        purposes.append(purpose)
    return tuple(purposes)


def _side(leg: Leg, index: int) -> tuple[bool, Decimal]:
    """(True if the leg is a debit, its amount), checked."""
    debit, credit = leg.debit, leg.credit
    for amount in (debit, credit):
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise InvalidOperation(
                "amounts are decimals of zero or more",
                errors={f"legs.{index}": "debit/credit >= 0"},
            )
        if amount != amount.quantize(CENT) or amount > MAX_AMOUNT:
            raise InvalidOperation(
                "amounts have at most two decimals and 16 digits before them",
                errors={f"legs.{index}": "two decimals"},
            )
    if (debit > 0) == (credit > 0):
        raise InvalidOperation(
            "each leg is a debit or a credit, more than zero", errors={f"legs.{index}": "one side"}
        )
    return (True, debit) if debit > 0 else (False, credit)


# -- 2. accounts ---------------------------------------------------------------------------------

_accounts = Account.__table__
_LOCK_ACCOUNTS = (
    select(
        _accounts.c.id,
        _accounts.c.code,
        _accounts.c.balance,
        _accounts.c.allow_negative,
        _accounts.c.kind,
    )
    .where(_accounts.c.code.in_(bindparam("codes", expanding=True)))
    .order_by(_accounts.c.id)
    .with_for_update()
)


def _lock_accounts(legs: Sequence[_CheckedLeg]) -> dict[str, _Locked]:
    session = Session()
    wanted = {code: (purpose, leg.leg) for leg in legs for purpose, code in leg.targets}
    codes = sorted(wanted)
    found = session.execute(_LOCK_ACCOUNTS, {"codes": codes}).all()
    if len(found) < len(codes):
        present = {row.code for row in found}
        _create([(code, *wanted[code]) for code in codes if code not in present])
        found = session.execute(_LOCK_ACCOUNTS, {"codes": codes}).all()
    return {
        row.code: _Locked(row.id, row.balance, row.allow_negative, row.kind in DEBIT_NORMAL)
        for row in found
    }


#: The advisory locks postings queue on just before the rows they stand for ("LAC" and "LCH" in
#: ASCII; the second key is the account's id, or 1 for the chain head). PostgreSQL grants advisory
#: locks in the order they were asked for, while the waiters for a row all race for it when it
#: is freed: under load some postings lost that race again and again (32 clients posting to one
#: account: the 99th percentile was 9 times the median).
ACCOUNT_QUEUE_SPACE = 0x4C4143
CHAIN_QUEUE_SPACE = 0x4C4348


def _queued_sql(codes: str, when: str = "true") -> str:
    """The count of these accounts, each queued for in id order, when ``when`` holds (else
    0, nothing queued for): an uncorrelated subquery, so PostgreSQL runs it once, before the
    scan whose rows it stands for."""
    # Built from placeholders only; every value is a bound parameter.
    return (
        "(SELECT count(pg_advisory_xact_lock(%(account_queue)s::integer, queued.id))"  # noqa: S608
        f" FROM (SELECT id FROM ledger_account WHERE code IN ({codes}) ORDER BY id) AS queued"
        f" WHERE {when})"
    )


#: PostgreSQL: the accounts in id order, then the chain head, locked in one round trip (an
#: Append runs its branches in order, and each branch's locks follow its ORDER BY), each row
#: after its queue (the accounts' queues in id order first). The head's row carries
#: ``last_index`` in ``id`` and ``last_hash`` in ``code``. Nothing is locked unless every
#: account exists: a posting that opens an account must hold no ledger lock while it does
#: (another posting opening the same account, or holding one this posting needs, would wait
#: for it while it waits for them: a deadlock).
@functools.cache
def _lock_accounts_and_chain_sql(account_count: int) -> str:
    """The statement for ``account_count`` codes, in psycopg's own placeholders (sent as is, as
    SQLAlchemy would send an expanding ``IN :codes``: ``codes_1`` .. ``codes_n``)."""
    codes = ", ".join(f"%(codes_{i})s" for i in range(1, account_count + 1))
    # Built from a count only; every value is a bound parameter.
    every_account = f"(SELECT count(*) FROM ledger_account WHERE code IN ({codes})) = %(count)s"  # noqa: S608
    return (
        "SELECT * FROM (SELECT 'account' AS what, id::bigint AS id, code::text AS code, balance,"  # noqa: S608
        " allow_negative, kind::text AS kind, NULL::integer AS year, NULL::integer AS year_count"
        f" FROM ledger_account WHERE code IN ({codes})"
        f" AND {_queued_sql(codes, every_account)} = %(count)s"
        " ORDER BY id FOR UPDATE) AS accounts"
        " UNION ALL "
        "SELECT * FROM (SELECT 'chain', last_index, last_hash::text, NULL::numeric, NULL::boolean,"
        " NULL::text, year, year_count FROM ledger_chain WHERE id = 1"
        " AND (SELECT pg_advisory_xact_lock(%(chain_queue)s::integer, 1)"
        f" WHERE {every_account}) IS NOT NULL"
        " FOR UPDATE) AS head"
    )


def queue_parameters() -> dict[str, int]:
    """The queues' keys, for the statements that queue (the benchmarks' floors send them too)."""
    return {"account_queue": ACCOUNT_QUEUE_SPACE, "chain_queue": CHAIN_QUEUE_SPACE}


def lock_balances(codes: Sequence[str]) -> dict[str, Decimal]:
    """The balances of those of these accounts that exist, locked as a posting locks them (on
    PostgreSQL after their queues, in id order): for a module that reads a balance under its
    lock, then posts to these accounts only. Rows locked otherwise, then waited on by a
    posting's queue, could deadlock with another posting."""
    if not codes:
        return {}
    session = Session()
    if get_database().primary.dialect.name != "postgresql":
        found = session.execute(
            select(_accounts.c.code, _accounts.c.balance)
            .where(_accounts.c.code.in_(codes))
            .order_by(_accounts.c.id)
            .with_for_update()
        )
        return dict(found.all())
    placeholders = ", ".join(f"%(codes_{i})s" for i in range(1, len(codes) + 1))
    params: dict[str, Any] = {f"codes_{i}": code for i, code in enumerate(codes, 1)}
    statement = (
        "SELECT code::text, balance FROM ledger_account"  # noqa: S608 - placeholders only
        f" WHERE code IN ({placeholders}) AND {_queued_sql(placeholders)} IS NOT NULL"
        " ORDER BY id FOR UPDATE"
    )
    flush_changes()  # as a statement through the session would
    return dict(cursor_rows(session.connection(), statement, {**params, **queue_parameters()}))


_EXISTING_ACCOUNTS = select(_accounts.c.code).where(
    _accounts.c.code.in_(bindparam("codes", expanding=True))
)


@dataclass(frozen=True)
class _Head:
    last_index: int
    last_hash: str
    year: int
    year_count: int


def _lock_accounts_and_chain(
    connection: Connection, legs: Sequence[_CheckedLeg]
) -> tuple[dict[str, _Locked], Any]:
    """Lock the legs' accounts and the chain head, in one statement when the accounts exist.

    Holding the chain head from the first statement shortens the window every posting waits
    for by a round trip. The first use of an account takes the long way: open the missing
    accounts holding no ledger lock, then lock the accounts, then the head.
    """
    wanted = {code: (purpose, leg.leg) for leg in legs for purpose, code in leg.targets}
    codes = sorted(wanted)
    params: dict[str, Any] = {f"codes_{i}": code for i, code in enumerate(codes, 1)}
    params["count"] = len(codes)
    params.update(queue_parameters())
    rows = cursor_rows(connection, _lock_accounts_and_chain_sql(len(codes)), params)
    # (what, id, code, balance, allow_negative, kind, year, year_count)
    accounts = {}
    head = None
    for what, row_id, code, balance, allow_negative, kind, year, year_count in rows:
        if what == "account":
            accounts[code] = _Locked(row_id, balance, allow_negative, kind in DEBIT_NORMAL)
        else:
            head = _Head(row_id, code, year, year_count)
    if len(accounts) == len(codes) and head is not None:
        return accounts, head
    session = Session()
    if len(accounts) < len(codes):  # nothing is locked: open what is missing first
        existing = set(session.scalars(_EXISTING_ACCOUNTS, {"codes": codes}))
        _create([(code, *wanted[code]) for code in codes if code not in existing])
        # The rows without their queues (a first use, rare): safe, as this transaction waits
        # for no account's queue from here, only for rows of higher ids and for the chain.
        accounts = _locked(session.execute(_LOCK_ACCOUNTS, {"codes": codes}).all())
    return accounts, _lock_chain()


def _locked(rows: Sequence[Any]) -> dict[str, _Locked]:
    return {
        row.code: _Locked(row.id, row.balance, row.allow_negative, row.kind in DEBIT_NORMAL)
        for row in rows
    }


def _create(missing: Sequence[tuple[str, Purpose, Leg]]) -> None:
    """Open these accounts (a concurrent posting may be opening them too)."""
    if not missing:  # another posting opened them since this one looked
        return
    dialect = get_database().primary.dialect.name
    make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    rows = [
        {
            "uuid": uuid.uuid4(),
            "code": code,
            "name": account_name(purpose, leg.currency),
            "kind": purpose.kind,
            "purpose": purpose.code,
            "currency": leg.currency,
            "holder_id": leg.holder_id,
            "allow_negative": not purpose.held,
            "balance": ZERO,
            "created_at": now,
        }
        for code, purpose, leg in missing
    ]
    Session().execute(make_insert(Account).on_conflict_do_nothing(index_elements=["code"]), rows)


def _apply(
    operation: Operation, legs: Sequence[_CheckedLeg], accounts: dict[str, _Locked]
) -> tuple[list[PostedEntry], dict[int, Decimal]]:
    """Each entry's running balance and each account's new balance, checked."""
    running = {code: locked.balance for code, locked in accounts.items()}
    entries = []
    for index, checked in enumerate(legs):
        leg = checked.leg
        side_debit = leg.debit > 0
        remaining = leg.debit if side_debit else leg.credit
        for position, (purpose, code) in enumerate(checked.targets):
            locked = accounts[code]
            lowers = side_debit != locked.debit_normal
            take = remaining
            last = position == len(checked.targets) - 1
            if lowers and not locked.allow_negative:
                if not operation.draws_down:
                    raise InvalidOperation(
                        f"{operation.code} cannot lower a {purpose.code} account",
                        errors={f"legs.{index}": "this operation only adds to holders' accounts"},
                    )
                if not last:
                    take = min(remaining, max(running[code], ZERO))
                elif running[code] < remaining:
                    raise InsufficientBalance(
                        f"the {purpose.code} account holds {running[code]} {leg.currency}, "
                        f"less than the {remaining} this takes",
                        errors={f"legs.{index}": "insufficient balance"},
                        available=str(running[code]),
                        currency=leg.currency,
                    )
            if take == 0:
                continue
            running[code] += -take if lowers else take
            debit, credit = (take, ZERO) if side_debit else (ZERO, take)
            entries.append(PostedEntry(locked.id, code, leg.currency, debit, credit, running[code]))
            remaining -= take
            if remaining == 0:
                break
    touched = {entry.account_code for entry in entries}
    return entries, {accounts[code].id: running[code] for code in touched}


# -- 3. the chain head ---------------------------------------------------------------------------

_heads = ChainHead.__table__
_LOCK_CHAIN = (
    select(_heads.c.last_index, _heads.c.last_hash, _heads.c.year, _heads.c.year_count)
    .where(_heads.c.id == 1)
    .with_for_update()
)


_QUEUE_FOR_CHAIN = select(func.pg_advisory_xact_lock(bindparam("chain_queue", type_=Integer), 1))


def _lock_chain() -> Any:
    session = Session()
    if get_database().primary.dialect.name == "postgresql":
        session.execute(_QUEUE_FOR_CHAIN, {"chain_queue": CHAIN_QUEUE_SPACE})
    head = session.execute(_LOCK_CHAIN).first()
    if head is None:  # a new (or truncated) ledger
        _open_chain()
        head = session.execute(_LOCK_CHAIN).one()
    return head


def _open_chain() -> None:
    dialect = get_database().primary.dialect.name
    make_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    Session().execute(
        make_insert(ChainHead)
        .values(id=1, last_index=0, last_hash=chain.GENESIS, year=0, year_count=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )


# -- 4. writing ----------------------------------------------------------------------------------

_TRANSACTION_COLUMNS = (
    "uuid", "number", "chain_index", "operation", "nonce", "fingerprint", "reference", "memo",
    "actor_id", "reverses_id", "created_at", "hash",
)  # fmt: skip


@functools.cache
def _postgresql_write(entry_count: int, account_count: int) -> str:
    """The one statement that writes a posting of this shape (built once per shape), in
    psycopg's placeholders."""
    columns = ", ".join(_TRANSACTION_COLUMNS)
    values = ", ".join(f"%({name})s" for name in _TRANSACTION_COLUMNS)
    balances = ", ".join(
        f"(%(account_{i})s, CAST(%(balance_{i})s AS NUMERIC))" for i in range(account_count)
    )
    entries = ", ".join(
        f"({i}, %(entry_account_{i})s, %(entry_currency_{i})s,"
        f" CAST(%(entry_debit_{i})s AS NUMERIC), CAST(%(entry_credit_{i})s AS NUMERIC),"
        f" CAST(%(entry_balance_{i})s AS NUMERIC))"
        for i in range(entry_count)
    )
    # Built from column names and counts only; every value is a bound parameter.
    return (
        f"WITH tx AS ("  # noqa: S608
        f" INSERT INTO ledger_transaction ({columns}) VALUES ({values})"
        f" ON CONFLICT (operation, nonce) DO NOTHING RETURNING id"
        f"), head AS ("
        f" UPDATE ledger_chain SET last_index = %(chain_index)s, last_hash = %(hash)s,"
        f" year = %(year)s, year_count = %(year_count)s"
        f" WHERE id = 1 AND EXISTS (SELECT FROM tx)"
        f"), balances AS ("
        f" UPDATE ledger_account AS a SET balance = v.balance"
        f" FROM (VALUES {balances}) AS v(id, balance)"
        f" WHERE a.id = v.id AND EXISTS (SELECT FROM tx)"
        f"), entries AS ("
        f" INSERT INTO ledger_entry"
        f" (transaction_id, account_id, currency, debit, credit, balance_after)"
        f" SELECT tx.id, v.account_id, v.currency, v.debit, v.credit, v.balance_after"
        f" FROM tx, (VALUES {entries})"
        f" AS v(ord, account_id, currency, debit, credit, balance_after)"
        f" ORDER BY v.ord"
        f") SELECT id FROM tx"
    )


def _write_postgresql(
    connection: Connection,
    row: dict[str, Any],
    head: dict[str, int],
    entries: Sequence[PostedEntry],
    balances: dict[int, Decimal],
) -> int | None:
    params = {**row, **head}
    for i, (account_id, balance) in enumerate(sorted(balances.items())):
        params[f"account_{i}"] = account_id
        params[f"balance_{i}"] = balance
    for i, entry in enumerate(entries):
        params[f"entry_account_{i}"] = entry.account_id
        params[f"entry_currency_{i}"] = entry.currency
        params[f"entry_debit_{i}"] = entry.debit
        params[f"entry_credit_{i}"] = entry.credit
        params[f"entry_balance_{i}"] = entry.balance_after
    rows = cursor_rows(connection, _postgresql_write(len(entries), len(balances)), params)
    return rows[0][0] if rows else None


_transactions = Transaction.__table__
_entries = Entry.__table__


def _write_sqlite(
    row: dict[str, Any],
    head: dict[str, int],
    entries: Sequence[PostedEntry],
    balances: dict[int, Decimal],
) -> int:
    session = Session()
    transaction_id = session.execute(
        insert(_transactions).returning(_transactions.c.id), row
    ).scalar_one()
    session.execute(
        insert(_entries),
        [
            {
                "transaction_id": transaction_id,
                "account_id": e.account_id,
                "currency": e.currency,
                "debit": e.debit,
                "credit": e.credit,
                "balance_after": e.balance_after,
            }
            for e in entries
        ],
    )
    session.execute(
        update(_accounts)
        .where(_accounts.c.id == bindparam("account_id"))
        .values(balance=bindparam("new_balance")),
        [{"account_id": k, "new_balance": v} for k, v in sorted(balances.items())],
    )
    session.execute(
        update(_heads)
        .where(_heads.c.id == 1)
        .values(last_index=row["chain_index"], last_hash=row["hash"], **head)
    )
    return transaction_id


# -- nonces --------------------------------------------------------------------------------------

_EARLIER = select(_transactions.c.id, _transactions.c.uuid, _transactions.c.fingerprint).where(
    _transactions.c.operation == bindparam("operation"), _transactions.c.nonce == bindparam("nonce")
)


def _earlier(posting: Posting, fingerprint: str) -> Posted | None:
    """The transaction an earlier request with this operation and nonce wrote, if any."""
    found = (
        Session()
        .execute(_EARLIER, {"operation": posting.operation, "nonce": posting.nonce})
        .first()
    )
    if found is None:
        return None
    if found.fingerprint != fingerprint:
        raise DuplicateNonce(
            f"the nonce {posting.nonce!r} of {posting.operation} was used with another request; "
            "a nonce never expires: use a new one for a new request",
            transaction=str(found.uuid),
        )
    return Posted(id=found.id, replayed=True)
