"""What crosses the HTTP boundary for the ledger. Money is a decimal string, never a float.

Request schemas refuse unknown fields; amounts are :class:`app.fields.DecimalString` (two
places, the column's range). Rules that need the operation registry (which operation takes
which form, which purposes, whose accounts) are the service's: they answer 422 with the field
named.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import marshmallow as ma

from app.fields import DecimalString
from app.http import PageArgs, ProblemSchema, page_schema

from .models import ACCOUNT_KINDS, MONEY

CURRENCY_PATTERN = "^[A-Z]{3}$"
OPERATION_PATTERN = "^[A-Z][A-Z0-9_]{0,39}$"
PURPOSE_PATTERN = "^[a-z0-9_]{1,40}$"
#: A signed amount with two places, as balances are written (a platform account may be < 0).
SIGNED_MONEY_PATTERN = "^-?[0-9]+\\.[0-9]{2}$"
#: An RFC 3339 date-time; an offset left out means UTC.
INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)
_INSTANT = re.compile(INSTANT_PATTERN)
_END = datetime(9999, 12, 31, tzinfo=UTC)
_CENT = Decimal("0.01")


class Instant(ma.fields.Field):
    """An RFC 3339 date-time (``2026-11-29T10:00:00Z``), loaded as an aware UTC datetime."""

    default_error_messages = {
        "invalid": "an RFC 3339 date-time like 2026-11-29T10:00:00Z (no offset: UTC)",
        "range": "a moment from 0001-01-01 to before 9999-12-31 (UTC)",
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("type", "string")
        metadata.setdefault("format", "date-time")
        metadata.setdefault("pattern", INSTANT_PATTERN)
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _INSTANT.fullmatch(value):
            raise self.make_error("invalid")
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            moment = moment.astimezone(UTC)
        except ValueError:
            raise self.make_error("invalid") from None
        except OverflowError:
            raise self.make_error("range") from None
        if moment >= _END:
            raise self.make_error("range")
        return moment


class Money(ma.fields.Field):
    """A Decimal written with its two places (``"-12.50"``); dump only."""

    def __init__(self, *, signed: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("dump_only", True)
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("type", "string")
        metadata.setdefault("pattern", SIGNED_MONEY_PATTERN if signed else "^[0-9]+\\.[0-9]{2}$")
        metadata.setdefault("example", "1000.00")
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format(value.quantize(_CENT), "f")


# -- requests -----------------------------------------------------------------------------------


class LegInSchema(ma.Schema):
    purpose = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(PURPOSE_PATTERN),
        metadata={"description": "The account's purpose", "example": "manual_clearing"},
    )
    holder = ma.fields.UUID(
        load_default=None,
        metadata={"description": "The holder (a user) of a holder purpose; none for the "
                  "platform's own accounts"},
    )  # fmt: skip
    debit = DecimalString(MONEY, load_default=None, metadata={"description": "More than 0"})
    credit = DecimalString(MONEY, load_default=None, metadata={"description": "More than 0"})


class TransactionInSchema(ma.Schema):
    operation = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(OPERATION_PATTERN),
        metadata={
            "description": "An operation staff may post by hand: CREDIT_ADD, CREDIT_SPEND, "
            "SIGNUP_CREDIT, DAILY_REWARD (holder + amount) or ADJUSTMENT (legs)",
            "example": "ADJUSTMENT",
        },
    )
    nonce = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={
            "description": "Unique per operation, forever: the same nonce and body replays the "
            "first transaction (200), another body is 409 duplicate-nonce",
        },
    )
    currency = ma.fields.String(
        required=True, validate=ma.validate.Regexp(CURRENCY_PATTERN), metadata={"example": "IDR"}
    )
    memo = ma.fields.String(load_default=None, validate=ma.validate.Length(max=500))
    reference = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=120),
        metadata={"description": "What caused it, e.g. a transfer's reference"},
    )
    holder = ma.fields.UUID(
        load_default=None,
        metadata={"description": "Simple form: the customer (or seller) whose account moves"},
    )
    amount = DecimalString(
        MONEY, load_default=None, metadata={"description": "Simple form: more than 0"}
    )
    legs = ma.fields.List(
        ma.fields.Nested(LegInSchema),
        load_default=None,
        validate=ma.validate.Length(min=2, max=100),
        metadata={"description": "Explicit form (ADJUSTMENT): each leg a debit or a credit; "
                  "debits equal credits"},
    )  # fmt: skip


class AccountQuerySchema(PageArgs):
    holder = ma.fields.UUID(load_default=None)
    purpose = ma.fields.String(load_default=None, validate=ma.validate.Regexp(PURPOSE_PATTERN))
    currency = ma.fields.String(load_default=None, validate=ma.validate.Regexp(CURRENCY_PATTERN))


class StatementQuerySchema(PageArgs):
    """``?limit=&cursor=`` of a statement."""


class TrialBalanceQuerySchema(ma.Schema):
    at = Instant(
        load_default=None,
        metadata={"description": "The moment (default: now): transactions created at or before"},
    )
    currency = ma.fields.String(load_default=None, validate=ma.validate.Regexp(CURRENCY_PATTERN))


# -- answers ------------------------------------------------------------------------------------


class LedgerProblemSchema(ProblemSchema):
    """A refused posting: the members the ledger's problems add."""

    available = ma.fields.String(
        metadata={"description": "insufficient-balance: what the account holds", "example": "0.00"}
    )
    currency = ma.fields.String(metadata={"example": "IDR"})
    transaction = ma.fields.UUID(
        metadata={"description": "duplicate-nonce: the transaction the nonce was first used for"}
    )


class EntrySchema(ma.Schema):
    account = ma.fields.UUID()
    purpose = ma.fields.String()
    holder = ma.fields.UUID(allow_none=True)
    currency = ma.fields.String()
    debit = Money()
    credit = Money()
    balance_after = Money(
        signed=True,
        metadata={"description": "The account's balance on its normal side after this entry"},
    )


class TransactionSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    number = ma.fields.String(metadata={"example": "LT/2026/00001"})
    operation = ma.fields.String()
    nonce = ma.fields.String()
    reference = ma.fields.String(allow_none=True)
    memo = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    actor = ma.fields.UUID(allow_none=True, metadata={"description": "Who posted it (staff)"})
    hash = ma.fields.String(metadata={"description": "$<version>$<sha256 hex> of the chain"})
    entries = ma.fields.List(
        ma.fields.Nested(EntrySchema),
        metadata={"description": "Every leg for staff; a customer or seller sees their own legs"},
    )
    replayed = ma.fields.Boolean(
        metadata={"description": "True when an earlier request with this nonce wrote it"}
    )


class AccountSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    name = ma.fields.String()
    kind = ma.fields.String(metadata={"enum": list(ACCOUNT_KINDS)})
    purpose = ma.fields.String()
    currency = ma.fields.String()
    holder = ma.fields.UUID(allow_none=True)
    allow_negative = ma.fields.Boolean()
    balance = Money(
        signed=True,
        metadata={"description": "On the normal side: debits - credits for assets and expenses, "
                  "credits - debits for the others"},
    )  # fmt: skip
    created_at = ma.fields.DateTime()


class StatementLineSchema(ma.Schema):
    transaction = ma.fields.UUID()
    number = ma.fields.String(metadata={"example": "LT/2026/00001"})
    operation = ma.fields.String()
    created_at = ma.fields.DateTime()
    debit = Money()
    credit = Money()
    balance_after = Money(signed=True)


class TrialBalanceLineSchema(ma.Schema):
    account = ma.fields.UUID()
    name = ma.fields.String()
    kind = ma.fields.String(metadata={"enum": list(ACCOUNT_KINDS)})
    purpose = ma.fields.String()
    currency = ma.fields.String()
    holder = ma.fields.UUID(allow_none=True)
    debit = Money(metadata={"description": "A debit balance (debits exceed credits), else 0"})
    credit = Money(metadata={"description": "A credit balance, else 0"})


class TrialBalanceTotalSchema(ma.Schema):
    currency = ma.fields.String()
    debit = Money()
    credit = Money()


class TrialBalanceSchema(ma.Schema):
    at = ma.fields.DateTime()
    currency = ma.fields.String(allow_none=True)
    accounts = ma.fields.List(ma.fields.Nested(TrialBalanceLineSchema))
    totals = ma.fields.List(
        ma.fields.Nested(TrialBalanceTotalSchema),
        metadata={"description": "Per currency: the debit total equals the credit total"},
    )


AccountPageSchema = page_schema(AccountSchema)
StatementPageSchema = page_schema(StatementLineSchema)
