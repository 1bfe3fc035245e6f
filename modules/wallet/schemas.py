"""What crosses the HTTP boundary for wallets. Money is a decimal string, never a float."""

from __future__ import annotations

import marshmallow as ma

from app.fields import DecimalString
from app.http import PageArgs, page_schema
from modules.ledger.schemas import Money
from modules.marketplace.models import CURRENCY_PLACES, MONEY
from modules.payment.schemas import ProviderTransactionSchema

from .models import WALLET_STATES

CURRENCIES = sorted(CURRENCY_PLACES)


class WalletInSchema(ma.Schema):
    currency = ma.fields.String(
        load_default="IDR", validate=ma.validate.OneOf(CURRENCIES), metadata={"example": "IDR"}
    )
    customer = ma.fields.UUID(
        load_default=None, metadata={"description": "Staff only: whose wallet to open"}
    )


class WalletSchema(ma.Schema):
    id = ma.fields.UUID(attribute="uuid")
    customer = ma.fields.UUID()
    currency = ma.fields.String(metadata={"example": "IDR"})
    state = ma.fields.String(metadata={"enum": list(WALLET_STATES)})
    balance = Money(metadata={"description": "What the wallet holds, from the ledger"})
    account = ma.fields.UUID(
        allow_none=True,
        metadata={"description": "The ledger account holding the money (null before the first "
                  "posting): /api/v1/ledger/accounts/{account}"},
    )  # fmt: skip
    frozen_reason = ma.fields.String(allow_none=True)
    frozen_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()


class WalletQuerySchema(PageArgs):
    customer = ma.fields.UUID(load_default=None)
    currency = ma.fields.String(load_default=None, validate=ma.validate.OneOf(CURRENCIES))
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(WALLET_STATES))


class FreezeSchema(ma.Schema):
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=500),
        metadata={"example": "Chargeback under review"},
    )


class RewardSchema(ma.Schema):
    wallet = ma.fields.Nested(WalletSchema)
    transaction = ma.fields.UUID(metadata={"description": "The ledger transaction"})
    number = ma.fields.String(metadata={"example": "LT/2026/00042"})
    amount = Money()
    day = ma.fields.Date(metadata={"description": "The day claimed (marketplace time zone)"})
    replayed = ma.fields.Boolean(metadata={"description": "Already claimed today: this claim"})


WalletPageSchema = page_schema(WalletSchema)


class TopUpInSchema(ma.Schema):
    provider = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"description": "An enabled provider (not the wallet itself)", "example": "demo"},
    )
    amount = DecimalString(
        MONEY, required=True, metadata={"description": "Within the marketplace's limits",
                                        "example": "50000.00"}
    )  # fmt: skip
    currency = ma.fields.String(
        load_default="IDR", validate=ma.validate.OneOf(CURRENCIES), metadata={"example": "IDR"}
    )


class TopUpSchema(ma.Schema):
    wallet = ma.fields.Nested(WalletSchema, metadata={"description": "Opened on the first top-up"})
    transaction = ma.fields.Nested(
        ProviderTransactionSchema,
        metadata={"description": "The provider transaction (kind top_up): its action says what "
                  "the payer does next; the wallet is credited when it succeeds"},
    )  # fmt: skip
