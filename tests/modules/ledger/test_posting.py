"""Posting through the service: balances, running balances, nonces, the chain, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError

from app.db import Session, get_database, transaction
from modules.ledger import posting as posting_module
from modules.ledger.models import Account, Entry, Transaction
from modules.ledger.posting import DuplicateNonce, InsufficientBalance, Leg, Posting, post
from modules.ledger.registry import InvalidOperation
from modules.ledger.verify import verify
from modules.user.services import create_user

D = Decimal


def credit(holder_id: int, amount: str, nonce: str, operation: str = "CREDIT_ADD") -> Posting:
    return Posting(
        operation,
        nonce,
        (
            Leg("manual_clearing", "IDR", debit=D(amount)),
            Leg("wallet", "IDR", credit=D(amount), holder_id=holder_id),
        ),
    )


def spend(holder_id: int, amount: str, nonce: str) -> Posting:
    return Posting(
        "CREDIT_SPEND",
        nonce,
        (
            Leg("wallet", "IDR", debit=D(amount), holder_id=holder_id),
            Leg("credit_income", "IDR", credit=D(amount)),
        ),
    )


def posted(posting: Posting):  # type: ignore[no-untyped-def]
    with transaction():
        return post(posting)


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_app(request: pytest.FixtureRequest, make_app: Callable[..., Flask],
               make_embedded_app: Callable[..., Flask]) -> Flask:  # fmt: skip
    return make_app() if request.param == "postgresql" else make_embedded_app()


def test_a_posting_moves_balances_and_chains(ledger_app: Flask) -> None:
    with ledger_app.app_context():
        customer = create_user("c@example.test", role="customer", password=None, active=True).id
        first = posted(credit(customer, "100.00", "n1"))
        second = posted(spend(customer, "30.50", "n2"))
        assert not first.replayed
        assert first.number.endswith("/00001")
        assert second.number.endswith("/00002")
        wallet = Session().scalars(select(Account).where(Account.purpose == "wallet")).one()
        assert wallet.balance == D("69.50")
        assert wallet.holder_id == customer
        entries = (
            Session()
            .scalars(select(Entry).where(Entry.account_id == wallet.id).order_by(Entry.id))
            .all()
        )
        assert [e.balance_after for e in entries] == [D("100.00"), D("69.50")]
        assert verify().ok


def test_nonce_replays_and_conflicts(ledger_app: Flask) -> None:
    with ledger_app.app_context():
        customer = create_user("c@example.test", role="customer", password=None, active=True).id
        first = posted(credit(customer, "10.00", "same"))
        again = posted(credit(customer, "10.00", "same"))
        assert again.replayed
        assert again.id == first.id
        with pytest.raises(DuplicateNonce):
            posted(credit(customer, "11.00", "same"))
        assert Session().scalar(select(Transaction.id).where(Transaction.id > first.id)) is None


def test_refusals_write_nothing(ledger_app: Flask) -> None:
    with ledger_app.app_context():
        customer = create_user("c@example.test", role="customer", password=None, active=True).id
        posted(credit(customer, "10.00", "a"))
        with pytest.raises(InsufficientBalance):
            posted(spend(customer, "10.01", "b"))
        with pytest.raises(InvalidOperation):
            posted(Posting("NOPE", "c", ()))
        with pytest.raises(InvalidOperation):  # a credit cannot lower a wallet
            posted(
                Posting(
                    "CREDIT_ADD",
                    "d",
                    (
                        Leg("wallet", "IDR", debit=D("1.00"), holder_id=customer),
                        Leg("manual_clearing", "IDR", credit=D("1.00")),
                    ),
                )
            )
        with pytest.raises(InvalidOperation):  # unbalanced
            posted(
                Posting(
                    "ADJUSTMENT",
                    "e",
                    (
                        Leg("adjustment", "IDR", debit=D("1.00")),
                        Leg("manual_clearing", "IDR", credit=D("2.00")),
                    ),
                )
            )
        assert Session().scalar(select(Transaction.id).order_by(Transaction.id.desc())) == 1
        assert verify().ok


def test_a_leg_spills_over_to_its_fallbacks_and_never_below_zero(ledger_app: Flask) -> None:
    with ledger_app.app_context():
        seller = create_user("s@example.test", role="seller", password=None, active=True).id
        posted(
            Posting(
                "ADJUSTMENT",
                "fund",
                (
                    Leg("adjustment", "IDR", debit=D("20.00")),
                    Leg("seller_available", "IDR", credit=D("20.00"), holder_id=seller),
                ),
            )
        )
        result = posted(
            Posting(
                "ADJUSTMENT",
                "claw-back",
                (
                    Leg(
                        "seller_available",
                        "IDR",
                        debit=D("50.00"),
                        holder_id=seller,
                        fallbacks=("seller_receivable",),
                    ),
                    Leg("adjustment", "IDR", credit=D("50.00")),
                ),
            )
        )
        legs = [(e.account_code.split(":")[0], e.debit, e.balance_after) for e in result.entries]
        assert legs == [
            ("seller_available", D("20.00"), D("0.00")),
            ("seller_receivable", D("30.00"), D("30.00")),
            ("adjustment", D("0.00"), D("30.00")),
        ]
        assert verify().ok


def test_postgresql_statements_go_through_the_engine_and_its_error_handling(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock and the write run on the connection's DBAPI cursor, but still as the engine's
    statements: its cursor events see them, and a driver error comes out as SQLAlchemy's and
    rolls the whole posting back."""
    app = make_app()
    with app.app_context():
        customer = create_user("c@example.test", role="customer", password=None, active=True).id
        posted(credit(customer, "10.00", "opens-the-accounts"))
        seen: list[str] = []

        def before(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
            seen.append(statement)

        engine = get_database().primary
        event.listen(engine, "before_cursor_execute", before)
        try:
            posted(credit(customer, "5.00", "seen"))
        finally:
            event.remove(engine, "before_cursor_execute", before)
        assert [s.split()[0] for s in seen] == ["SELECT", "WITH"]
        assert "FOR UPDATE" in seen[0]
        assert seen[1].startswith("WITH tx AS ( INSERT INTO ledger_transaction")

        monkeypatch.setattr(posting_module, "_postgresql_write", lambda *_: "SELECT 1 / 0")
        with pytest.raises(DBAPIError):
            posted(credit(customer, "7.00", "refused"))
        monkeypatch.undo()
        assert Session().scalar(select(func.count()).select_from(Transaction)) == 2
        again = posted(credit(customer, "7.00", "after-the-error"))
        assert again.number is not None
        assert again.number.endswith("/00003")
        wallet = Session().scalars(select(Account).where(Account.purpose == "wallet")).one()
        assert wallet.balance == D("22.00")
        assert verify().ok
