"""What crosses the HTTP boundary for payments. Money is decimal strings; secrets never leave.

Request schemas refuse unknown fields. A provider's secret settings are write-only: the answer
lists which are set (``secrets_set``), never a value. A saved method shows its brand, the last
four digits masked (``•••• 4242``) and its expiry; never its token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
from sqlalchemy import Numeric

from app.fields import DecimalString
from app.http import JsonBoolean, PageArgs, page_schema
from app.security import current_principal
from app.vault import masked
from modules.fetch.schemas import Amount, Moment
from modules.marketplace.models import MONEY

from .models import PROVIDER_STATES, TRANSACTION_KINDS, TRANSACTION_STATES

STAFF_ROLES = ("staff", "admin")

PERCENT = Numeric(5, 2)


# -- requests -----------------------------------------------------------------------------------


class PayInSchema(ma.Schema):
    invoice = ma.fields.UUID(required=True, metadata={"description": "The invoice to pay"})
    provider = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=32),
        metadata={"example": "bank_transfer"},
    )
    amount = DecimalString(
        MONEY, load_default=None, metadata={"description": "Default: the whole amount due"}
    )
    token = ma.fields.UUID(
        load_default=None,
        metadata={"description": "A saved method of the customer's: paid off-session"},
    )
    save_method = JsonBoolean(
        load_default=False,
        metadata={"description": "Ask the provider to save the method the payer uses"},
    )


class ProviderTransactionQuerySchema(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(TRANSACTION_STATES))
    provider = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=32))
    customer = ma.fields.UUID(load_default=None)
    since = Moment(data_key="from", load_default=None)
    until = Moment(data_key="to", load_default=None)
    amount_min = DecimalString(MONEY, load_default=None)
    amount_max = DecimalString(MONEY, load_default=None)

    @ma.post_load
    def _bounds(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        since, until = data.pop("since"), data.pop("until")
        data["since"] = since[0] if since else None
        data["before"] = None
        if until is not None:
            moment, whole_day = until
            step = timedelta(days=1) if whole_day else timedelta(microseconds=1)
            data["before"] = moment + step
        return data


class ProviderPatchSchema(ma.Schema):
    state = ma.fields.String(validate=ma.validate.OneOf(PROVIDER_STATES))
    currencies = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(equal=3)), validate=ma.validate.Length(max=10)
    )
    fee_percent = DecimalString(PERCENT)
    fee_fixed = DecimalString(MONEY)
    settings = ma.fields.Nested(
        "ProviderSettingsSchema",
        metadata={"description": "Plain settings (the bank details shown to payers)"},
    )
    secrets = ma.fields.Nested(
        "ProviderSecretsSchema",
        load_only=True,
        metadata={"description": "Write-only secret settings (null removes one)"},
    )


def _setting(description: str) -> ma.fields.String:
    return ma.fields.String(
        allow_none=True, validate=ma.validate.Length(max=500), metadata={"description": description}
    )


class ProviderSettingsSchema(ma.Schema):
    """The plain settings the built-in adapters read (each adapter takes only its own)."""

    bank_name = _setting("Manual bank transfer: the bank")
    account_holder = _setting("Manual bank transfer: the account's holder")
    account_number = _setting("Manual bank transfer: the account number payers transfer to")
    instructions = _setting("Manual bank transfer: what the payer is told")


class ProviderSecretsSchema(ma.Schema):
    webhook_secret = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(min=16, max=500),
        metadata={"description": "The key notifications are signed with (HMAC-SHA256)"},
    )


class SavedMethodQuerySchema(ma.Schema):
    customer = ma.fields.UUID(load_default=None, metadata={"description": "Staff only"})


# -- answers --------------------------------------------------------------------------------------


def _uuid_of(attribute: str, **kwargs: Any) -> ma.fields.Field:
    return ma.fields.UUID(attribute=attribute, dump_only=True, **kwargs)


class ProviderTransactionSchema(ma.Schema):
    id = _uuid_of("uuid")
    reference = ma.fields.String(metadata={"example": "TX/2026/00001"})
    provider = ma.fields.String(attribute="provider.code")
    state = ma.fields.String(metadata={"enum": list(TRANSACTION_STATES)})
    state_message = ma.fields.String(allow_none=True)
    kind = ma.fields.String(
        metadata={"enum": list(TRANSACTION_KINDS),
                  "description": "invoice: pays the invoice; top_up: credits the payer's wallet"}
    )  # fmt: skip
    invoice = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: str(tx.invoice.uuid) if tx.invoice is not None else None,
        metadata={"description": "The invoice paid (null for a top-up)", "type": "string"},
    )
    invoice_number = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: tx.invoice.name if tx.invoice is not None else None,
        metadata={"type": "string", "example": "INV/2026/00001"},
    )
    customer = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: str(tx.customer.uuid) if tx.customer is not None else None,
        metadata={"description": "The payer (null: an invoice's payer without an account)",
                  "type": "string", "format": "uuid"},
    )  # fmt: skip
    payment = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: (
            str(tx.account_payment.uuid) if tx.account_payment is not None else None
        ),
        metadata={"description": "The accounting payment it confirms", "type": "string"},
    )
    token = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: str(tx.token.uuid) if tx.token is not None else None,
        metadata={"description": "The saved method used or saved", "type": "string"},
    )
    amount = Amount()
    fee = Amount()
    net = Amount()
    currency = ma.fields.String()
    provider_reference = ma.fields.String(allow_none=True)
    late_success = ma.fields.Boolean(
        metadata={"description": "The provider captured the money after Lapak gave this "
                  "transaction up: staff refund it (nothing was posted)"}
    )  # fmt: skip
    action = ma.fields.Function(
        allow_none=True,
        serialize=lambda tx: tx.action if _payer_or_staff(tx) else None,
        metadata={"type": "object", "description": "What the payer does next (the checkout "
                  "page, bank details; a wallet's new balance): shown to the payer and staff"},
    )  # fmt: skip
    expires_at = ma.fields.DateTime()
    last_state_change = ma.fields.DateTime()
    created_at = ma.fields.DateTime()


ProviderTransactionPageSchema = page_schema(ProviderTransactionSchema)


class ProviderSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    state = ma.fields.String(metadata={"enum": list(PROVIDER_STATES)})
    currencies = ma.fields.List(ma.fields.String())
    fee_percent = Amount()
    fee_fixed = Amount()
    settings = ma.fields.Dict()
    secrets_set = ma.fields.Function(
        lambda provider: _secret_names(provider),
        metadata={"description": "Which secret settings have a value (never the values)",
                  "type": "array", "items": {"type": "string"}},
    )  # fmt: skip
    updated_at = ma.fields.DateTime()


def _payer_or_staff(tx: Any) -> bool:
    """A seller sees the transactions of their sales, not what their payer does next (the
    checkout page is the payer's; a wallet's balance is theirs)."""
    viewer = current_principal()
    return viewer is None or viewer.user_id == tx.customer_id or viewer.has_role(*STAFF_ROLES)


def _secret_names(provider: Any) -> list[str]:
    from .providers import secret_names_set

    return secret_names_set(provider)


class SavedMethodSchema(ma.Schema):
    id = _uuid_of("uuid")
    provider = ma.fields.String(attribute="provider.code")
    brand = ma.fields.String()
    card = ma.fields.Function(lambda token: masked(token.last4), metadata={"type": "string"})
    exp_month = ma.fields.Integer()
    exp_year = ma.fields.Integer()
    created_at = ma.fields.DateTime()


class SavedMethodListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SavedMethodSchema))
