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

from sqlalchemy import Select, and_, bindparam, case, cast, func, null, or_, select, union_all

from app.db import DriverStatement, Session, utcnow
from app.errors import Invalid
from app.http import KeysetListing, Page
from app.security import Principal
from modules.marketplace.config import marketplace_settings
from modules.marketplace.models import AccountMove, Payment
from modules.payment.models import PaymentProvider, PaymentTransaction
from modules.user.models import User

from .facts import from_minor
from .models import COUNTERS, PLATFORM, DailyRollup, SellerPayment
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


def _rollups() -> DriverStatement:
    """One owner's rollup rows in one currency over a period, summed per day and per provider,
    in one statement (one round trip, not one per grouping): a day's row has no provider, a
    provider's no day. The counters are integers (hundredths for money): their sums are exact
    on SQLite too."""
    rollup = DailyRollup.__table__.c

    def summed(day: Any, provider: Any, by: Any) -> Select[Any]:
        return (
            select(day, provider, *(func.sum(rollup[name]) for name in COUNTERS))
            .where(
                rollup.seller_id == bindparam("seller_id"),
                rollup.currency == bindparam("currency"),
                rollup.day >= bindparam("since"),
                rollup.day <= bindparam("until"),
            )
            .group_by(by)
        )

    return DriverStatement(
        union_all(
            summed(rollup.day, cast(null(), rollup.provider.type), rollup.day),
            summed(cast(null(), rollup.day.type), rollup.provider, rollup.provider),
        )
    )


#: What every stats answer reads: the period's rollup rows per day, and per provider.
ROLLUPS = _rollups()


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
    by_day: dict[date, Any] = {}
    by_provider: dict[str, Any] = {}
    for day, provider, *counters in ROLLUPS.rows(Session().connection(), params):
        if provider is None:
            by_day[day] = counters
        else:
            by_provider[provider] = counters
    total = [sum(column) for column in zip(*by_provider.values(), strict=True)] or _ZEROS
    totals = _figures(Figures, total)
    days = (asked.until - asked.since).days + 1
    daily = []
    for offset in range(days):
        day = asked.since + timedelta(days=offset)
        counters = by_day.get(day)
        daily.append(_zero_day(day) if counters is None else _figures(DayFigures, counters, day))
    providers = sorted(
        (_figures(ProviderFigures, counters, code) for code, counters in by_provider.items()),
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


_ZEROS = [0] * len(COUNTERS)
_NOTHING = from_minor(0)


def _figures(kind: type[Any], counters: list[Any], *extra: Any) -> Any:
    """``kind`` (a :class:`Figures`, then ``extra``) of the summed counters, in
    :data:`~.models.COUNTERS`' order. PostgreSQL sums integers as bigints and bigints as NUMERIC
    (Decimal): every one is a whole number; money is in hundredths."""
    transactions, succeeded, failed, canceled, manual, refunds, volume, fees, refunded = counters
    return kind(int(transactions), int(succeeded), int(failed), int(canceled), int(manual),
                int(refunds), from_minor(volume), from_minor(fees), from_minor(refunded),
                *extra)  # fmt: skip


def _zero_day(day: date) -> DayFigures:
    return DayFigures(0, 0, 0, 0, 0, 0, _NOTHING, _NOTHING, _NOTHING, day)


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
#: What a row shows after its sort key (the payment's time and id).
_SHOWN = (
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


def _listing(created_at: Any, payment_id: Any, payments: Any) -> Select[Any]:
    """Payments (``payments``: the table, or a join giving its rows) with what a row shows,
    sorted by ``(created_at, payment_id)``: the payment's, or equal to them."""
    return (
        select(created_at, payment_id, *_SHOWN)
        .select_from(payments)
        .outerjoin(PaymentTransaction.__table__, _T.account_payment_id == _P.id)
        .outerjoin(PaymentProvider.__table__, PaymentProvider.__table__.c.id == _T.provider_id)
        .join(AccountMove.__table__, AccountMove.__table__.c.id == _P.invoice_id)
        # Outer: a standalone invoice's payer may have no account.
        .outerjoin(User.__table__, User.__table__.c.id == _P.customer_id)
    )


_S = SellerPayment.__table__.c
#: Every payment, through the marketplace's index on ``(created_at, id)``.
TRANSACTIONS = _listing(_P.created_at, _P.id, Payment.__table__)
#: A seller's payments (those of invoices with their lines), through the seller's rows of
#: ``dashboard_seller_payment`` (:class:`~.models.SellerPayment`) in its index's order: the same
#: time and id as the payment's, so the same order and the same cursors as staff's. A page
#: reads a page of the seller's rows (and, with a filter, those it skips), never all of them.
SELLER_TRANSACTIONS = _listing(
    _S.created_at,
    _S.payment_id,
    SellerPayment.__table__.join(Payment.__table__, _P.id == _S.payment_id),
).where(_S.seller_id == bindparam("viewer_id"))
_FILTERS: dict[str, Any] = {
    "state": _payment_state == bindparam("state"),
    "provider": _provider_code == bindparam("provider"),
    "currency": _P.currency == bindparam("currency"),
}
_PAGES = KeysetListing([_P.created_at, _P.id], descending=True)
_SELLER_PAGES = KeysetListing([_S.created_at, _S.payment_id], descending=True)


def list_transactions(
    actor: Principal, filters: TransactionFilter, *, limit: int, cursor: str | None
) -> Page:
    """Payments newest first with their provider transactions: staff all, a seller those of
    invoices with their lines; filtered by state, provider and currency."""
    values = {name: getattr(filters, name) for name in _FILTERS if getattr(filters, name)}
    staff = actor.has_role(*STAFF_ROLES)
    params = values if staff else {**values, "viewer_id": actor.user_id}
    given = tuple(values)
    listing = _PAGES if staff else _SELLER_PAGES

    def build() -> Select[Any]:
        statement = TRANSACTIONS if staff else SELLER_TRANSACTIONS
        return statement.where(*(_FILTERS[name] for name in given))

    page = listing.page(given, build, params, limit=limit, cursor=cursor)
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
