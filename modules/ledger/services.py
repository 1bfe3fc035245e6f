"""What the ledger's API does: staff post by hand; everyone reads what they may see.

- :func:`post_transaction`: an operation marked ``manual``, in the simple form (a holder and an
  amount, for operations with a ``holder_purpose``) or with explicit legs, through
  :func:`.posting.post` in its own transaction. The same nonce and body replays the first
  transaction; a database failure is ``ledger-write-failed`` (503, nothing written), a value the
  database cannot store ``value-not-storable`` (422).
- Reading: staff and admins see every account and transaction; a customer or a seller sees only
  the accounts they hold, and a transaction only if one of its entries is on one of them (its
  other legs show their purpose and amounts, not whose account they are nor its balance).
  Anything else is "not found", never "forbidden": existence does not leak.
- :func:`trial_balance`: every account's balance at a moment, summed from the entries of the
  transactions created at or before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, tuple_, type_coerce
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import aliased

from app.db import Session, transaction, utcnow
from app.errors import Invalid, NotFound, ServiceUnavailable, ValueNotStorable
from app.http import Page, decode_cursor, encode_cursor, keyset_page, link_next
from app.security import Principal
from modules.user.models import User

from .chart import Purpose
from .models import MONEY, Account, Entry, Transaction
from .operations import Operation
from .posting import Leg, Posting, post
from .registry import InvalidOperation, registry

STAFF_ROLES = ("staff", "admin")
ZERO = Decimal("0.00")


class LedgerWriteFailed(ServiceUnavailable):
    code = "ledger-write-failed"
    title = "The ledger could not write the transaction"


class InvalidHolder(Invalid):
    code = "invalid-holder"
    title = "The holder cannot hold this account"


# -- requests and views -------------------------------------------------------------------------


@dataclass(frozen=True)
class LegRequest:
    purpose: str
    holder: uuid.UUID | None = None
    debit: Decimal | None = None
    credit: Decimal | None = None


@dataclass(frozen=True)
class TransactionRequest:
    operation: str
    nonce: str
    currency: str
    memo: str | None = None
    reference: str | None = None
    holder: uuid.UUID | None = None
    amount: Decimal | None = None
    legs: Sequence[LegRequest] | None = None


@dataclass(frozen=True)
class EntryView:
    #: ``account``, ``holder`` and ``balance_after`` are None on a leg the caller may not see.
    account: uuid.UUID
    purpose: str
    holder: uuid.UUID | None
    currency: str
    debit: Decimal
    credit: Decimal
    balance_after: Decimal


@dataclass(frozen=True)
class TransactionView:
    uuid: uuid.UUID
    number: str
    operation: str
    nonce: str
    reference: str | None
    memo: str | None
    created_at: datetime
    actor: uuid.UUID | None
    hash: str
    entries: list[EntryView]
    replayed: bool = False


@dataclass(frozen=True)
class AccountView:
    uuid: uuid.UUID
    name: str
    kind: str
    purpose: str
    currency: str
    holder: uuid.UUID | None
    allow_negative: bool
    balance: Decimal
    created_at: datetime


@dataclass(frozen=True)
class AccountFilter:
    holder: uuid.UUID | None = None
    purpose: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class StatementLine:
    transaction: uuid.UUID
    number: str
    operation: str
    created_at: datetime
    debit: Decimal
    credit: Decimal
    balance_after: Decimal


@dataclass(frozen=True)
class TrialBalanceLine:
    account: uuid.UUID
    name: str
    kind: str
    purpose: str
    currency: str
    holder: uuid.UUID | None
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True)
class TrialBalanceTotal:
    currency: str
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True)
class TrialBalance:
    at: datetime
    currency: str | None
    accounts: list[TrialBalanceLine]
    totals: list[TrialBalanceTotal]


def is_staff(actor: Principal) -> bool:
    return actor.has_role(*STAFF_ROLES)


# -- posting by hand ----------------------------------------------------------------------------


def post_transaction(actor: Principal, request: TransactionRequest) -> TransactionView:
    """Post ``request`` for staff member ``actor``, or replay the transaction its nonce wrote.

    Only operations marked ``manual``; holders must be active users of the purpose's role.
    """
    operation = registry().operation(request.operation)
    if not operation.manual:
        manual = sorted(code for code, op in registry().operations.items() if op.manual)
        raise InvalidOperation(
            f"{operation.code} is posted by Lapak itself, not by hand",
            errors={"operation": f"one of {', '.join(manual)}"},
        )
    try:
        with transaction():
            holders = _Holders()
            legs = _legs(operation, request, holders)
            if holders.refusal is not None and not _nonce_used(operation.code, request.nonce):
                raise holders.refusal
            posted = post(
                Posting(
                    operation.code,
                    request.nonce,
                    legs,
                    reference=request.reference,
                    memo=request.memo,
                    actor_id=actor.user_id,
                )
            )
            view = _transaction_view(Transaction.id == posted.id, actor)
    except DataError as error:
        # A value does not fit its column: the input's fault, never "try again".
        raise ValueNotStorable() from error
    except DBAPIError as error:
        # The database refused or lost the write (nothing was committed); the client may
        # retry with the same nonce: it either writes now or replays what did commit.
        raise LedgerWriteFailed(
            f"the database refused the posting ({type(error.orig).__name__}); nothing was "
            "written, try again with the same nonce"
        ) from error
    assert view is not None, "the posted transaction is visible to the staff member who posted it"
    if posted.replayed:
        view = TransactionView(**{**view.__dict__, "replayed": True})
    return view


def _legs(operation: Operation, request: TransactionRequest, holders: _Holders) -> list[Leg]:
    simple = request.holder is not None or request.amount is not None
    if request.legs is not None:
        if simple:
            raise InvalidOperation(
                "send either holder and amount, or legs, not both",
                errors={"legs": "not with holder and amount"},
            )
        if operation.holder_purpose is not None:
            # Its other purposes are for the modules that post it (a top-up's provider
            # clearing account): by hand it moves a holder's account against its counter only.
            raise InvalidOperation(
                f"{operation.code} is posted from a holder and an amount",
                errors={"legs": f"not for {operation.code}: send holder and amount"},
            )
        return [
            _explicit(index, leg, request.currency, holders)
            for index, leg in enumerate(request.legs)
        ]
    if operation.holder_purpose is None or operation.counter_purpose is None:
        raise InvalidOperation(
            f"{operation.code} is posted with explicit legs", errors={"legs": "required"}
        )
    missing = {name: "required" for name in ("holder", "amount") if getattr(request, name) is None}
    if missing:
        raise InvalidOperation(f"{operation.code} needs a holder and an amount", errors=missing)
    holder, amount = request.holder, request.amount
    assert holder is not None
    assert amount is not None
    if amount <= 0:
        raise InvalidOperation("the amount is more than 0", errors={"amount": "more than 0"})
    purpose = registry().purpose(operation.holder_purpose)
    holder_id = holders.id_of(holder, purpose, "holder")
    if operation.holder_side == "debit":
        return [
            Leg(purpose.code, request.currency, debit=amount, holder_id=holder_id),
            Leg(operation.counter_purpose, request.currency, credit=amount),
        ]
    return [
        Leg(operation.counter_purpose, request.currency, debit=amount),
        Leg(purpose.code, request.currency, credit=amount, holder_id=holder_id),
    ]


def _explicit(index: int, leg: LegRequest, currency: str, holders: _Holders) -> Leg:
    where = f"legs.{index}"
    if (leg.debit is None) == (leg.credit is None):
        raise InvalidOperation(
            "each leg is a debit or a credit", errors={where: "either debit or credit"}
        )
    side = "debit" if leg.debit is not None else "credit"
    amount = leg.debit if leg.debit is not None else leg.credit
    assert amount is not None
    if amount <= 0:
        raise InvalidOperation("a leg's amount is more than 0", errors={f"{where}.{side}": "> 0"})
    purpose = registry().purpose(leg.purpose, f"{where}.purpose")
    holder_id = None
    if leg.holder is not None:
        if not purpose.held:
            raise InvalidOperation(
                f"{purpose.code} is the platform's and has no holder",
                errors={f"{where}.holder": "the platform's account has no holder"},
            )
        holder_id = holders.id_of(leg.holder, purpose, f"{where}.holder")
    return Leg(purpose.code, currency, holder_id=holder_id, **{side: amount})


class _Holders:
    """Holders by public id, checked: an active user of the purpose's role.

    A user who exists but may not hold the account (deactivated since, another role) is
    refused only if the nonce is new: the ledger decides a used nonce first, so the repeat of
    a request that was posted replays it (or is a ``duplicate-nonce``) whatever became of its
    holder since.
    """

    def __init__(self) -> None:
        self.refusal: InvalidHolder | None = None

    def id_of(self, user_uuid: uuid.UUID, purpose: Purpose, field_name: str) -> int:
        found = (
            Session()
            .execute(select(User.id, User.role, User.active).where(User.uuid == user_uuid))
            .first()
        )
        if found is None:
            raise InvalidHolder(
                f"there is no user {user_uuid}", errors={field_name: "no such user"}
            )
        if self.refusal is None:
            if not found.active:
                self.refusal = InvalidHolder(
                    f"the user {user_uuid} is deactivated", errors={field_name: "not active"}
                )
            elif found.role != purpose.holder:
                self.refusal = InvalidHolder(
                    f"a {purpose.code} account is held by a {purpose.holder}, not a {found.role}",
                    errors={field_name: f"must be a {purpose.holder}"},
                )
        return found.id


def _nonce_used(operation: str, nonce: str) -> bool:
    used = select(Transaction.id).where(
        Transaction.operation == operation, Transaction.nonce == nonce
    )
    return Session().execute(used.limit(1)).first() is not None


# -- transactions -------------------------------------------------------------------------------

_holder = aliased(User, name="holder")
_actor = aliased(User, name="actor")


def get_transaction(actor: Principal, transaction_uuid: uuid.UUID) -> TransactionView:
    view = _transaction_view(Transaction.uuid == transaction_uuid, actor)
    if view is None:
        raise NotFound("there is no such transaction")
    return view


def transactions_referring_to(actor: Principal, references: Iterable[str]) -> list[TransactionView]:
    """The transactions whose ``reference`` is one of ``references`` (what caused them, e.g.
    ``invoice:<uuid>``), in posting order, as ``actor`` may see them: a customer or seller only
    those with a leg on their own accounts, and only those legs."""
    wanted = sorted(set(references))
    if not wanted:
        return []
    return _transaction_views(Transaction.reference.in_(wanted), actor)


def _transaction_view(where: object, viewer: Principal) -> TransactionView | None:
    """The transaction ``where`` picks, as ``viewer`` may see it (None if they may not)."""
    views = _transaction_views(where, viewer)
    return views[0] if views else None


def _transaction_views(where: object, viewer: Principal) -> list[TransactionView]:
    """The transactions ``where`` picks, in posting order, as ``viewer`` may see them: two
    queries, whatever their number."""
    session = Session()
    found = session.execute(
        select(Transaction, _actor.uuid)
        .outerjoin(_actor, _actor.id == Transaction.actor_id)
        .where(where)  # type: ignore[arg-type]
        .order_by(Transaction.id)
    ).all()
    if not found:
        return []
    rows = session.execute(
        select(
            Entry.transaction_id,
            Entry.currency,
            Entry.debit,
            Entry.credit,
            Entry.balance_after,
            Account.uuid,
            Account.purpose,
            Account.holder_id,
            _holder.uuid.label("holder_uuid"),
        )
        .join(Account, Account.id == Entry.account_id)
        .outerjoin(_holder, _holder.id == Account.holder_id)
        .where(Entry.transaction_id.in_([record.id for record, _ in found]))
        .order_by(Entry.id)
    ).all()
    legs: dict[int, list[Any]] = {}
    for row in rows:
        legs.setdefault(row.transaction_id, []).append(row)
    staff = is_staff(viewer)
    views = []
    for record, actor_uuid in found:
        own = legs.get(record.id, [])
        if not staff and not any(row.holder_id == viewer.user_id for row in own):
            continue
        # A customer or seller sees their own legs only: another leg's amount can tell another
        # holder's balance (a seller's pending share, the commission) even without its account.
        entries = [
            EntryView(
                account=row.uuid,
                purpose=row.purpose,
                holder=row.holder_uuid,
                currency=row.currency,
                debit=row.debit,
                credit=row.credit,
                balance_after=row.balance_after,
            )
            for row in own
            if staff or row.holder_id == viewer.user_id
        ]
        views.append(
            TransactionView(
                uuid=record.uuid,
                number=record.number,
                operation=record.operation,
                nonce=record.nonce,
                reference=record.reference,
                memo=record.memo,
                created_at=record.created_at,
                actor=actor_uuid if staff else None,
                hash=record.hash,
                entries=entries,
            )
        )
    return views


# -- accounts -----------------------------------------------------------------------------------


def list_accounts(
    actor: Principal, filters: AccountFilter, *, limit: int, cursor: str | None
) -> Page:
    """The accounts ``actor`` may see, oldest first, filtered, one page."""
    statement = _visible_accounts(actor)
    if filters.holder is not None:
        holder_id = select(User.id).where(User.uuid == filters.holder).scalar_subquery()
        statement = statement.where(Account.holder_id == holder_id)
    if filters.purpose is not None:
        statement = statement.where(Account.purpose == filters.purpose)
    if filters.currency is not None:
        statement = statement.where(Account.currency == filters.currency)
    page = keyset_page(statement, [Account.id], limit=limit, cursor=cursor)
    return Page(_account_views(page.items), page.next_cursor)


def get_account(actor: Principal, account_uuid: uuid.UUID) -> AccountView:
    return _account_views([_visible_account(actor, account_uuid)])[0]


def _visible_accounts(actor: Principal):  # type: ignore[no-untyped-def]
    statement = select(Account)
    if is_staff(actor):
        return statement
    return statement.where(Account.holder_id == actor.user_id)


def _visible_account(actor: Principal, account_uuid: uuid.UUID) -> Account:
    visible = _visible_accounts(actor).where(Account.uuid == account_uuid)
    account = Session().scalars(visible).first()
    if account is None:
        raise NotFound("there is no such account")
    return account


def _account_views(accounts: Sequence[Account]) -> list[AccountView]:
    holder_ids = {a.holder_id for a in accounts if a.holder_id is not None}
    holders = _user_uuids(holder_ids)
    return [
        AccountView(
            uuid=a.uuid,
            name=a.name,
            kind=a.kind,
            purpose=a.purpose,
            currency=a.currency,
            holder=holders.get(a.holder_id) if a.holder_id is not None else None,
            allow_negative=a.allow_negative,
            balance=a.balance,
            created_at=a.created_at,
        )
        for a in accounts
    ]


def _user_uuids(user_ids: Iterable[int]) -> dict[int, uuid.UUID]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = Session().execute(select(User.id, User.uuid).where(User.id.in_(ids)))
    return {row.id: row.uuid for row in rows}


#: Above every entry id (a BIGINT): the start of a statement's first page.
LAST_ID = 2**63 - 1


def statement(actor: Principal, account_uuid: uuid.UUID, *, limit: int, cursor: str | None) -> Page:
    """The account's entries, newest first, one keyset page.

    One index range scan of ``(account_id, id)`` backwards from the cursor, joined to each
    entry's transaction by primary key: a page costs the same on the millionth entry.
    """
    account = _visible_account(actor, account_uuid)
    query = (
        select(
            Entry.id,
            Entry.debit,
            Entry.credit,
            Entry.balance_after,
            Transaction.uuid,
            Transaction.number,
            Transaction.operation,
            Transaction.created_at,
        )
        .join(Transaction, Transaction.id == Entry.transaction_id)
        # A range of the (account_id, id) index written as row comparisons: with a plain
        # ``account_id = X AND id < cursor`` the planner may walk the primary key backwards
        # instead, through millions of other accounts' entries, for an account whose entries
        # are all old.
        .where(tuple_(Entry.account_id, Entry.id) > tuple_(account.id, 0))
    )
    after = decode_cursor(cursor, 1)[0] if cursor else LAST_ID
    query = query.where(tuple_(Entry.account_id, Entry.id) < tuple_(account.id, after))
    query = query.order_by(Entry.account_id.desc(), Entry.id.desc()).limit(limit + 1)
    rows = Session().execute(query).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].id])
        link_next(next_cursor)
    return Page(
        [
            StatementLine(
                transaction=row.uuid,
                number=row.number,
                operation=row.operation,
                created_at=row.created_at,
                debit=row.debit,
                credit=row.credit,
                balance_after=row.balance_after,
            )
            for row in rows
        ],
        next_cursor,
    )


# -- the trial balance --------------------------------------------------------------------------


def trial_balance(at: datetime | None = None, currency: str | None = None) -> TrialBalance:
    """Every account's balance at ``at`` (default now), as a debit or a credit balance.

    Summed from the entries of the transactions created at or before ``at``, never from the
    cached balances, so it holds for any moment; per currency the debit total equals the
    credit total, because every transaction balances.
    """
    moment = at or utcnow()
    debit = type_coerce(func.sum(Entry.debit), MONEY).label("debit")
    credit = type_coerce(func.sum(Entry.credit), MONEY).label("credit")
    query = (
        select(
            Account.uuid,
            Account.name,
            Account.kind,
            Account.purpose,
            Account.currency,
            _holder.uuid.label("holder_uuid"),
            debit,
            credit,
        )
        .select_from(Entry)
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .join(Account, Account.id == Entry.account_id)
        .outerjoin(_holder, _holder.id == Account.holder_id)
        .where(Transaction.created_at <= moment)
        .group_by(Account.id, _holder.id)
        .order_by(Account.currency, Account.id)
    )
    if currency is not None:
        query = query.where(Account.currency == currency)
    lines = []
    totals: dict[str, list[Decimal]] = {}
    for row in Session().execute(query):
        net = row.debit - row.credit
        line = TrialBalanceLine(
            account=row.uuid,
            name=row.name,
            kind=row.kind,
            purpose=row.purpose,
            currency=row.currency,
            holder=row.holder_uuid,
            debit=net if net > 0 else ZERO,
            credit=-net if net < 0 else ZERO,
        )
        lines.append(line)
        total = totals.setdefault(line.currency, [ZERO, ZERO])
        total[0] += line.debit
        total[1] += line.credit
    return TrialBalance(
        at=moment,
        currency=currency,
        accounts=lines,
        totals=[TrialBalanceTotal(code, d, c) for code, (d, c) in sorted(totals.items())],
    )
