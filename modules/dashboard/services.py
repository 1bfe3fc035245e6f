"""The dashboard's figures, read from the rollups, and its recent transactions.

Staff (and admins) see the platform's figures; a seller sees their own share of them (see
:mod:`.facts`): the rollup rows kept under their user id. Every figure is for a period of whole
days of the marketplace (``LAPAK_MARKETPLACE_TIMEZONE``), both ends included, in one currency.

- ``transactions``: provider transactions paying invoices that reached a final state in the
  period, split into ``succeeded``, ``failed`` and ``canceled``, and payments made without a
  provider (bank transfer, cash) that staff confirmed, ``manual``;
- ``success_rate`` = succeeded / (succeeded + failed), over provider transactions only (as
  issue 15 defines it): canceled ones (given up by the payer, or expired) and manual payments
  are left out; null when there is neither;
- ``volume``: the money that came in (successes and manual payments); ``average`` = volume /
  (succeeded + manual), per payment that brought money (null when none did); ``fees``: the
  providers' fees on it (for a seller: the platform's commission on their share);
- ``refunds``: refunds whose money went back in the period, count and amount.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ARRAY, Integer, Select, and_, bindparam, case, cast, func, or_, select

from app.db import DriverStatement, Session, get_database, utcnow
from app.errors import Invalid
from app.http import KeysetListing, Page
from app.security import Principal
from modules.marketplace.config import marketplace_settings
from modules.marketplace.models import AccountMove, AccountMoveLine, Payment
from modules.payment.models import PaymentProvider, PaymentTransaction
from modules.user.models import User

from .facts import from_minor
from .models import COUNTERS, PLATFORM, DailyRollup
from .settlements import SettlementSummary, summary

STAFF_ROLES = ("staff", "admin")
#: The platform's currency: the catalogue's, which orders are priced in.
DEFAULT_CURRENCY = "IDR"
DEFAULT_DAYS = 30
MAX_DAYS = 366
CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")
#: The days a period may cover: money moved in no other (and their neighbours stay dates).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


# -- the period ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    since: date
    until: date
    currency: str


def period(since: date | None, until: date | None, currency: str | None) -> Period:
    """The period asked for: ``until`` defaults to today, ``since`` to 30 days up to
    ``until``; at most :data:`MAX_DAYS` days, ``since`` not after ``until``."""
    for name, day in (("from", since), ("to", until)):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise Invalid(
                f"{day} is outside {FIRST_DAY} to {LAST_DAY}",
                errors={name: f"a day from {FIRST_DAY} to {LAST_DAY}"},
            )
    if until is None:
        until = utcnow().astimezone(marketplace_settings().timezone).date()
    if since is None:
        since = until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise Invalid(
            f"the period starts ({since}) after it ends ({until})",
            errors={"from": f"on or before {until}"},
        )
    if (until - since).days + 1 > MAX_DAYS:
        raise Invalid(
            f"the period is {(until - since).days + 1} days long; at most {MAX_DAYS}",
            errors={"to": f"at most {MAX_DAYS} days from {since}"},
        )
    return Period(since, until, currency or DEFAULT_CURRENCY)


# -- the stats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Counters over some rollup rows, money as Decimal."""

    transactions: int
    succeeded: int
    failed: int
    canceled: int
    manual: int
    refunds: int
    volume: Decimal
    fees: Decimal
    refunded: Decimal


@dataclass(frozen=True)
class DayFigures(Figures):
    day: date


@dataclass(frozen=True)
class ProviderFigures(Figures):
    provider: str


@dataclass(frozen=True)
class StatusCount:
    state: str
    count: int


@dataclass(frozen=True)
class Stats:
    since: date
    until: date
    currency: str
    #: ``platform`` (staff) or ``seller`` (the caller's own share).
    scope: str
    totals: Figures
    success_rate: Decimal | None
    average: Decimal | None
    daily: list[DayFigures]
    providers: list[ProviderFigures]
    statuses: list[StatusCount]
    settlement: SettlementSummary


def _rollups_by(column: Any) -> DriverStatement:
    """One owner's rollup rows in one currency over a period, summed per ``column``. The
    counters are integers (hundredths for money): their sums are exact on SQLite too."""
    return DriverStatement(
        select(column, *(func.sum(DailyRollup.__table__.c[name]) for name in COUNTERS))
        .where(
            DailyRollup.seller_id == bindparam("seller_id"),
            DailyRollup.currency == bindparam("currency"),
            DailyRollup.day >= bindparam("since"),
            DailyRollup.day <= bindparam("until"),
        )
        .group_by(column)
    )


#: What every stats answer reads: the period's rollup rows per day, and per provider.
ROLLUPS_BY_DAY = _rollups_by(DailyRollup.day)
ROLLUPS_BY_PROVIDER = _rollups_by(DailyRollup.provider)


def stats(actor: Principal, asked: Period) -> Stats:
    """The figures of ``asked`` that ``actor`` may see: the platform's for staff, a seller's
    own share for a seller."""
    staff = actor.has_role(*STAFF_ROLES)
    owner = PLATFORM if staff else actor.user_id
    params = {
        "seller_id": owner,
        "currency": asked.currency,
        "since": asked.since,
        "until": asked.until,
    }
    connection = Session().connection()
    by_day = {day: counters for day, *counters in ROLLUPS_BY_DAY.rows(connection, params)}
    by_provider = {
        code: counters for code, *counters in ROLLUPS_BY_PROVIDER.rows(connection, params)
    }
    total = _zeros()
    for counters in by_provider.values():
        total = [a + int(b) for a, b in zip(total, counters, strict=True)]
    totals = _figures(Figures, total)
    days = (asked.until - asked.since).days + 1
    daily = [
        _figures(DayFigures, by_day.get(day, _zeros()), day=day)
        for day in (asked.since + timedelta(days=offset) for offset in range(days))
    ]
    providers = sorted(
        (
            _figures(ProviderFigures, counters, provider=code)
            for code, counters in by_provider.items()
        ),
        key=lambda figures: (-figures.volume, -figures.transactions, figures.provider),
    )
    decided = totals.succeeded + totals.failed
    paid = totals.succeeded + totals.manual
    return Stats(
        since=asked.since,
        until=asked.until,
        currency=asked.currency,
        scope="platform" if staff else "seller",
        totals=totals,
        success_rate=(
            (Decimal(totals.succeeded) / decided).quantize(RATE_PLACES, ROUND_HALF_UP)
            if decided
            else None
        ),
        average=(totals.volume / paid).quantize(CENT, ROUND_HALF_UP) if paid else None,
        daily=daily,
        providers=providers,
        statuses=[
            StatusCount("success", totals.succeeded),
            StatusCount("failed", totals.failed),
            StatusCount("canceled", totals.canceled),
            StatusCount("manual", totals.manual),
        ],
        settlement=summary(None if staff else actor.user_id, asked.currency, asked.since,
                           asked.until),
    )  # fmt: skip


def _zeros() -> list[int]:
    return [0] * len(COUNTERS)


def _figures(kind: type[Any], counters: list[int], **extra: Any) -> Any:
    # PostgreSQL sums bigints as NUMERIC (Decimal): every counter is a whole number.
    named = {name: int(value) for name, value in zip(COUNTERS, counters, strict=True)}
    return kind(
        transactions=named["transactions"],
        succeeded=named["succeeded"],
        failed=named["failed"],
        canceled=named["canceled"],
        manual=named["manual"],
        refunds=named["refunds"],
        volume=from_minor(named["volume_minor"]),
        fees=from_minor(named["fees_minor"]),
        refunded=from_minor(named["refunded_minor"]),
        **extra,
    )


# -- recent transactions -----------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionFilter:
    state: str | None = None
    provider: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class TransactionView:
    """A payment as the dashboard lists it: through its provider transaction when it has one."""

    payment: uuid.UUID
    transaction: uuid.UUID | None
    reference: str | None
    payment_number: str | None
    invoice_number: str | None
    provider: str
    method: str
    state: str
    amount: Decimal
    fee: Decimal
    currency: str
    #: None: the invoice's payer has no account (a standalone invoice's).
    customer: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


_P = Payment.__table__.c
_T = PaymentTransaction.__table__.c
#: A payment's state as its transaction's: a paid one is a ``success`` (staff may confirm a
#: provider's payment by hand while its transaction is still pending); a payment made without
#: a provider is ``pending`` until then, or cancelled with its order (``canceled``).
_paid = _P.state == "paid"
_payment_state = case(
    (_paid, "success"),
    (_T.id.is_not(None), _T.state),
    (_P.state == "canceled", "canceled"),
    else_="pending",
)
_provider_code = func.coalesce(PaymentProvider.__table__.c.code, _P.method)
TRANSACTIONS = (
    select(
        _P.created_at,
        _P.id,
        _P.uuid,
        _T.uuid.label("transaction"),
        func.coalesce(_T.reference, _P.name).label("reference"),
        _P.name.label("payment_number"),
        AccountMove.__table__.c.name.label("invoice_number"),
        _provider_code.label("provider"),
        _P.method,
        _payment_state.label("state"),
        _P.amount,
        _T.fee,
        _P.currency,
        User.__table__.c.uuid.label("customer"),
        case(
            (
                and_(_paid, or_(_T.id.is_(None), _T.state != "success")),
                func.coalesce(_P.confirmed_at, _P.created_at),
            ),
            else_=func.coalesce(_T.last_state_change, _P.cancelled_at, _P.created_at),
        ).label("updated_at"),
    )
    .select_from(Payment.__table__)
    .outerjoin(PaymentTransaction.__table__, _T.account_payment_id == _P.id)
    .outerjoin(PaymentProvider.__table__, PaymentProvider.__table__.c.id == _T.provider_id)
    .join(AccountMove.__table__, AccountMove.__table__.c.id == _P.invoice_id)
    # Outer: a standalone invoice's payer may have no account.
    .outerjoin(User.__table__, User.__table__.c.id == _P.customer_id)
)
_FILTERS: dict[str, Any] = {
    "state": _payment_state == bindparam("state"),
    "provider": _provider_code == bindparam("provider"),
    "currency": _P.currency == bindparam("currency"),
}
_LINE_MOVE = AccountMoveLine.__table__.c.move_id
_SELLERS_LINE = AccountMoveLine.__table__.c.seller_id == bindparam("viewer_id")


def _of_seller(dialect: str) -> Any:
    """A seller's payments, found from their invoices (the lines' ``(seller_id, move_id)``
    index) and then by invoice, never by testing every payment. On PostgreSQL the invoices are
    read first, into an array: as a semi-join the planner could scan the payments newest first
    and test each, stopping at a page, which it chooses for a seller it guesses sells a lot and
    which reads every payment for one who sells little. So a page costs what the seller's own
    payments do."""
    if dialect == "postgresql":
        invoices = select(func.array_agg(_LINE_MOVE)).where(_SELLERS_LINE).scalar_subquery()
        # The cast makes it an array value: ANY((SELECT ...)) alone is a semi-join again.
        return _P.invoice_id == func.any(cast(invoices, ARRAY(Integer)))
    return _P.invoice_id.in_(select(_LINE_MOVE).where(_SELLERS_LINE))


_PAGES = KeysetListing([_P.created_at, _P.id], descending=True)


def list_transactions(
    actor: Principal, filters: TransactionFilter, *, limit: int, cursor: str | None
) -> Page:
    """Payments newest first with their provider transactions: staff all, a seller those of
    invoices with their lines; filtered by state, provider and currency."""
    values = {name: getattr(filters, name) for name in _FILTERS if getattr(filters, name)}
    staff = actor.has_role(*STAFF_ROLES)
    params = values if staff else {**values, "viewer_id": actor.user_id}
    given = tuple(values)
    dialect = get_database().primary.dialect.name

    def build() -> Select[Any]:
        statement = TRANSACTIONS if staff else TRANSACTIONS.where(_of_seller(dialect))
        return statement.where(*(_FILTERS[name] for name in given))

    page = _PAGES.page((staff, given, dialect), build, params, limit=limit, cursor=cursor)
    return Page([_view(row) for row in page.items], page.next_cursor)


def _view(row: Any) -> TransactionView:
    (created_at, _, payment, transaction, reference, payment_number, invoice_number, provider,
     method, state, amount, fee, currency, customer, updated_at) = row  # fmt: skip
    return TransactionView(
        payment=_uuid(payment),
        transaction=_uuid(transaction) if transaction is not None else None,
        reference=reference,
        payment_number=payment_number,
        invoice_number=invoice_number,
        provider=provider,
        method=method,
        state=state,
        amount=Decimal(amount),
        fee=Decimal(fee) if fee is not None else Decimal("0.00"),
        currency=currency,
        customer=_uuid(customer) if customer is not None else None,
        created_at=_utc(created_at),
        updated_at=_utc(updated_at),
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _utc(value: datetime) -> datetime:
    # The driver gives times in the session's zone on PostgreSQL; SQLite's are UTC already.
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
