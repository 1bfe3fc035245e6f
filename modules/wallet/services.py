"""What wallets do. Their money lives on the ledger: a wallet is the customer's ``wallet``
holder account in one currency, its balance and statement are the ledger's.

- :func:`open_wallet`: one wallet per customer and currency (409 ``wallet-exists``); opening a
  customer's IDR wallet credits the sign-up credit (``SIGNUP_CREDIT``, nonce
  ``signup:<customer>``: once per customer, ever) in the same transaction. A wallet opened by
  money reaching it (a refund) gets it with its first top-up.
- :func:`freeze` / :func:`unfreeze` (staff): a frozen wallet takes no reward and pays nothing;
  refunds and credits staff post on the ledger still reach it.
- :func:`claim_daily_reward`: the customer's daily reward into their IDR wallet
  (``DAILY_REWARD``, nonce ``daily:<customer>:<date>`` in the marketplace's time zone): a
  second claim the same day replays the first.
- Reading: staff see every wallet, customers their own; anything else is 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.db import Session, get_database, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound, PermissionDenied
from app.events import emit
from app.http import Page, keyset_page
from app.security import Principal
from modules.ledger import services as ledger
from modules.ledger.chart import account_code
from modules.ledger.models import Account, Entry, Transaction
from modules.ledger.posting import Leg, Posting, post
from modules.ledger.registry import registry
from modules.marketplace.config import marketplace_settings
from modules.user.models import User

from .config import CREDIT_CURRENCY, wallet_settings
from .models import Wallet

STAFF_ROLES = ("staff", "admin")
ZERO = Decimal("0.00")


class WalletExists(Conflict):
    code = "wallet-exists"
    title = "The customer already has a wallet in this currency"


class WalletFrozen(Conflict):
    code = "wallet-frozen"
    title = "The wallet is frozen"


class WalletNotFrozen(Conflict):
    code = "wallet-not-frozen"
    title = "The wallet is not frozen"


class RewardsOff(Conflict):
    code = "rewards-off"
    title = "Daily rewards are off"


class InvalidCustomer(Invalid):
    code = "invalid-customer"
    title = "Only an active customer holds a wallet"


class RewardCurrency(Invalid):
    code = "reward-currency"
    title = "Rewards are paid into IDR wallets"


@dataclass(frozen=True)
class WalletView:
    uuid: uuid.UUID
    customer: uuid.UUID
    currency: str
    state: str
    balance: Decimal
    #: The ledger account holding the money; None until the first posting.
    account: uuid.UUID | None
    frozen_reason: str | None
    frozen_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class WalletFilter:
    customer: uuid.UUID | None = None
    currency: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class Reward:
    wallet: WalletView
    transaction: uuid.UUID
    number: str
    amount: Decimal
    day: date
    replayed: bool


def is_staff(actor: Principal) -> bool:
    return actor.has_role(*STAFF_ROLES)


# -- opening ------------------------------------------------------------------------------------


def open_wallet(actor: Principal, currency: str, customer: uuid.UUID | None = None) -> WalletView:
    """Open ``customer``'s wallet in ``currency`` (staff), or the actor's own (customers)."""
    with transaction() as session:
        holder = _holder(actor, customer)
        if session.scalar(
            select(Wallet.id).where(Wallet.customer_id == holder.id, Wallet.currency == currency)
        ):
            raise WalletExists(f"{holder.uuid} already has a {currency} wallet")
        wallet = Wallet(customer_id=holder.id, currency=currency)
        session.add(wallet)
        try:
            session.flush()
        except IntegrityError:  # opened by a concurrent request since the look above
            raise WalletExists(f"{holder.uuid} already has a {currency} wallet") from None
        credit_sign_up(wallet, holder.uuid, actor.user_id)
        emit(
            "wallet.opened",
            {"wallet": wallet.uuid, "customer": holder.uuid, "currency": currency},
        )
        return _views([wallet])[0]


def credit_sign_up(wallet: Wallet, customer: uuid.UUID, actor_id: int | None) -> None:
    """Post the sign-up credit into ``wallet`` if it is the customer's IDR wallet and they
    never had it (nonce ``signup:<customer>``), in the caller's transaction (which posts
    nothing else)."""
    credit = wallet_settings().signup_credit
    nonce = f"signup:{customer}"
    if wallet.currency != CREDIT_CURRENCY or credit <= 0 or _nonce_used("SIGNUP_CREDIT", nonce):
        return
    post(
        Posting(
            "SIGNUP_CREDIT",
            nonce,
            [
                Leg("promotion_expense", wallet.currency, debit=credit),
                Leg("wallet", wallet.currency, credit=credit, holder_id=wallet.customer_id),
            ],
            reference=str(wallet.uuid),
            memo="Sign-up credit",
            actor_id=actor_id,
        )
    )


def ensure_wallet(customer_id: int, currency: str) -> Wallet:
    """The customer's wallet in ``currency``, opened if missing (money is about to reach it:
    a refund sent to it, a top-up). In the caller's transaction; a concurrent opening is
    harmless. No sign-up credit here: that caller posts its own money movement."""
    session = Session()
    found = select(Wallet).where(Wallet.customer_id == customer_id, Wallet.currency == currency)
    wallet = session.scalars(found).first()
    if wallet is not None:
        return wallet
    insert = (
        postgresql_insert if get_database().primary.dialect.name == "postgresql" else sqlite_insert
    )
    opened = session.execute(
        insert(Wallet)
        .values(
            uuid=uuid.uuid4(),
            customer_id=customer_id,
            currency=currency,
            state="active",
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "currency"])
    )
    wallet = session.scalars(found).one()
    if opened.rowcount == 1:
        customer = session.scalar(select(User.uuid).where(User.id == customer_id))
        emit("wallet.opened", {"wallet": wallet.uuid, "customer": customer, "currency": currency})
    return wallet


def _holder(actor: Principal, customer: uuid.UUID | None) -> User:
    if customer is not None and not is_staff(actor) and customer != actor.user_uuid:
        raise PermissionDenied("only staff open a wallet for someone else")
    wanted = customer if customer is not None else actor.user_uuid
    user = Session().scalars(select(User).where(User.uuid == wanted)).first()
    if user is None or user.role != "customer" or not user.active:
        raise InvalidCustomer(
            "wallets belong to active customers", errors={"customer": "not an active customer"}
        )
    return user


def _nonce_used(operation: str, nonce: str) -> bool:
    found = select(Transaction.id).where(
        Transaction.operation == operation, Transaction.nonce == nonce
    )
    return Session().scalar(found) is not None


# -- freezing -----------------------------------------------------------------------------------


def freeze(actor: Principal, wallet_uuid: uuid.UUID, reason: str) -> WalletView:
    with transaction():
        wallet = _locked(actor, wallet_uuid)
        if wallet.state == "frozen":
            raise WalletFrozen("the wallet is already frozen")
        wallet.state, wallet.frozen_reason, wallet.frozen_at = "frozen", reason, utcnow()
        emit("wallet.frozen", {"wallet": wallet.uuid, "reason": reason, "by": actor.user_uuid})
        return _views([wallet])[0]


def unfreeze(actor: Principal, wallet_uuid: uuid.UUID) -> WalletView:
    with transaction():
        wallet = _locked(actor, wallet_uuid)
        if wallet.state != "frozen":
            raise WalletNotFrozen("the wallet is not frozen")
        wallet.state, wallet.frozen_reason, wallet.frozen_at = "active", None, None
        emit("wallet.unfrozen", {"wallet": wallet.uuid, "by": actor.user_uuid})
        return _views([wallet])[0]


def _locked(actor: Principal, wallet_uuid: uuid.UUID) -> Wallet:
    visible = _visible(actor).where(Wallet.uuid == wallet_uuid).with_for_update()
    wallet = Session().scalars(visible).first()
    if wallet is None:
        raise NotFound("there is no such wallet")
    return wallet


# -- the daily reward ---------------------------------------------------------------------------


def claim_daily_reward(actor: Principal, wallet_uuid: uuid.UUID) -> Reward:
    """Credit today's reward to the actor's IDR wallet, or replay today's claim."""
    amount = wallet_settings().daily_reward
    day = utcnow().astimezone(marketplace_settings().timezone).date()
    with transaction():
        wallet = _locked(actor, wallet_uuid)
        if wallet.customer_id != actor.user_id:
            raise PermissionDenied("a customer claims their own reward")
        if wallet.currency != CREDIT_CURRENCY:
            raise RewardCurrency(f"rewards are paid into {CREDIT_CURRENCY} wallets")
        nonce = f"daily:{actor.user_uuid}:{day.isoformat()}"
        posted = _earlier_reward(nonce)  # under the wallet's lock: claims queue behind it
        replayed = posted is not None
        if posted is None:
            if amount <= 0:
                raise RewardsOff("there is no daily reward on this marketplace")
            if wallet.state == "frozen":
                raise WalletFrozen("a frozen wallet takes no reward")
            written = post(
                Posting(
                    "DAILY_REWARD",
                    nonce,
                    [
                        Leg("promotion_expense", CREDIT_CURRENCY, debit=amount),
                        Leg("wallet", CREDIT_CURRENCY, credit=amount, holder_id=wallet.customer_id),
                    ],
                    reference=str(wallet.uuid),
                    memo=f"Daily reward {day.isoformat()}",
                    actor_id=actor.user_id,
                )
            )
            posted = Session().get(Transaction, written.id)
            assert posted is not None
        return Reward(_views([wallet])[0], posted.uuid, posted.number, _credited(posted), day,
                      replayed)  # fmt: skip


def _earlier_reward(nonce: str) -> Transaction | None:
    found = select(Transaction).where(
        Transaction.operation == "DAILY_REWARD", Transaction.nonce == nonce
    )
    return Session().scalars(found).first()


def _credited(posted: Transaction) -> Decimal:
    credits = (
        Session()
        .scalars(select(Entry.credit).where(Entry.transaction_id == posted.id, Entry.credit > 0))
        .all()
    )
    return sum(credits, ZERO)


# -- reading ------------------------------------------------------------------------------------


def list_wallets(
    actor: Principal, filters: WalletFilter, *, limit: int, cursor: str | None
) -> Page:
    statement = _visible(actor)
    if filters.customer is not None:
        holder = select(User.id).where(User.uuid == filters.customer).scalar_subquery()
        statement = statement.where(Wallet.customer_id == holder)
    if filters.currency is not None:
        statement = statement.where(Wallet.currency == filters.currency)
    if filters.state is not None:
        statement = statement.where(Wallet.state == filters.state)
    page = keyset_page(statement, [Wallet.id], limit=limit, cursor=cursor)
    return Page(_views(page.items), page.next_cursor)


def get_wallet(actor: Principal, wallet_uuid: uuid.UUID) -> WalletView:
    return _views([_visible_wallet(actor, wallet_uuid)])[0]


def statement(actor: Principal, wallet_uuid: uuid.UUID, *, limit: int, cursor: str | None) -> Page:
    """The wallet's ledger entries, newest first (the ledger's statement of its account)."""
    view = get_wallet(actor, wallet_uuid)
    if view.account is None:
        return Page([], None)
    return ledger.statement(actor, view.account, limit=limit, cursor=cursor)


def view(wallet: Wallet) -> WalletView:
    return _views([wallet])[0]


def _visible(actor: Principal):  # type: ignore[no-untyped-def]
    statement = select(Wallet)
    if is_staff(actor):
        return statement
    return statement.where(Wallet.customer_id == actor.user_id)


def _visible_wallet(actor: Principal, wallet_uuid: uuid.UUID) -> Wallet:
    wallet = Session().scalars(_visible(actor).where(Wallet.uuid == wallet_uuid)).first()
    if wallet is None:
        raise NotFound("there is no such wallet")
    return wallet


def _views(wallets: list[Wallet]) -> list[WalletView]:
    purpose = registry().purpose("wallet")
    codes = {w.id: account_code(purpose, w.currency, w.customer_id) for w in wallets}
    session = Session()
    accounts = {
        row.code: row
        for row in session.execute(
            select(Account.code, Account.uuid, Account.balance).where(
                Account.code.in_(sorted(set(codes.values())))
            )
        )
    }
    customer_ids = {w.customer_id for w in wallets}
    customers = {
        row.id: row.uuid
        for row in session.execute(select(User.id, User.uuid).where(User.id.in_(customer_ids)))
    }
    views = []
    for wallet in wallets:
        account = accounts.get(codes[wallet.id])
        views.append(
            WalletView(
                uuid=wallet.uuid,
                customer=customers[wallet.customer_id],
                currency=wallet.currency,
                state=wallet.state,
                balance=ZERO if account is None else account.balance,
                account=None if account is None else account.uuid,
                frozen_reason=wallet.frozen_reason,
                frozen_at=wallet.frozen_at,
                created_at=wallet.created_at,
            )
        )
    return views
