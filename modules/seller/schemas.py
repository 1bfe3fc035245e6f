"""What crosses the HTTP boundary for sellers. The payout account number goes in and never comes
out: answers show it masked (``•••• 7890``). Percentages are decimal strings, never floats.

The schemas check shapes; the services own the rules (email and phone normalisation, bank code
and account number formats, the payout schedule, the commission range).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.fields import DecimalString
from app.http import PageArgs, ProblemSchema, page_schema
from modules.marketplace.models import CURRENCY_PLACES
from modules.user.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

from .models import KYC_STATES, MONEY, PAYOUT_INTERVALS, PERCENT, SETTLEMENT_STATES, WEEKDAYS


class _AtLeastOneField(ma.Schema):
    class Meta:
        openapi = {"minProperties": 1}  # what _at_least_one_field checks

    @ma.validates_schema
    def _at_least_one_field(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError(
                f"give at least one of {', '.join(self.fields)} to change", "_schema"
            )


# -- answers ----------------------------------------------------------------------------------


class KycSchema(ma.Schema):
    state = ma.fields.String(
        metadata={
            "enum": list(KYC_STATES),
            "description": "unverified -> pending (the seller submits) -> verified | rejected "
            "(staff review); a rejected seller submits again; a verified seller's new payout "
            "account makes it pending again",
        }
    )
    submitted_at = ma.fields.DateTime(allow_none=True)
    reviewed_at = ma.fields.DateTime(allow_none=True)
    rejection_reason = ma.fields.String(
        allow_none=True, metadata={"description": "Why staff rejected it, while rejected"}
    )


class StaffKycSchema(KycSchema):
    reviewed_by = ma.fields.UUID(
        allow_none=True, metadata={"description": "The staff member who decided the review"}
    )


class BankAccountSchema(ma.Schema):
    bank_code = ma.fields.String(metadata={"example": "014"})
    holder_name = ma.fields.String(metadata={"example": "Budi Santoso"})
    number = ma.fields.String(
        metadata={"description": "Masked: its last four characters only", "example": "•••• 7890"}
    )
    last4 = ma.fields.String(metadata={"example": "7890"})
    updated_at = ma.fields.DateTime(allow_none=True)


class PayoutScheduleSchema(ma.Schema):
    interval = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(PAYOUT_INTERVALS),
        metadata={"description": "manual: the seller withdraws; weekly: paid out every week"},
    )
    weekday = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.OneOf(WEEKDAYS),
        metadata={"description": "The payout day of a weekly schedule (only then)"},
    )


class SellerSchema(ma.Schema):
    """A seller's profile, as the seller sees it."""

    id = ma.fields.UUID(metadata={"description": "The seller's user id"})
    email = ma.fields.String(metadata={"description": "The account's login email"})
    active = ma.fields.Boolean(metadata={"description": "False once the account is deactivated"})
    display_name = ma.fields.String(metadata={"example": "Toko Budi Makmur"})
    contact_email = ma.fields.String(metadata={"example": "toko@budi.co.id"})
    contact_phone = ma.fields.String(allow_none=True, metadata={"example": "+628123456789"})
    can_sell = ma.fields.Boolean(
        metadata={
            "description": "False for a seller who signed up for review, until staff verify "
            "them: their products cannot be put on sale"
        }
    )
    kyc = ma.fields.Nested(KycSchema)
    bank_account = ma.fields.Nested(
        BankAccountSchema, allow_none=True, metadata={"description": "The payout account, masked"}
    )
    commission_percent = DecimalString(
        PERCENT,
        allow_none=True,
        metadata={"description": "This seller's own commission; null: the marketplace's"},
    )
    effective_commission_percent = DecimalString(
        PERCENT, metadata={"description": "The commission that applies"}
    )
    payout_schedule = ma.fields.Nested(PayoutScheduleSchema)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class StaffSellerSchema(SellerSchema):
    """A seller's profile, as staff see it: who decided the review too."""

    kyc = ma.fields.Nested(StaffKycSchema)


SellerPageSchema = page_schema(StaffSellerSchema)


# -- requests ---------------------------------------------------------------------------------


class BankAccountInSchema(ma.Schema):
    bank_code = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=20),
        metadata={"description": "The bank's code (014) or BIC (CENAIDJA)", "example": "014"},
    )
    holder_name = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"example": "Budi Santoso"},
    )
    account_number = ma.fields.String(
        required=True,
        load_only=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={
            "description": "5 to 34 letters or digits, spaces and dashes ignored; stored sealed "
            "and never shown again (answers show its last four)",
            "example": "1234-5678-90",
        },
    )


class OwnProfileUpdateSchema(_AtLeastOneField):
    """What a seller changes of their own profile; omitted fields stay as they are."""

    display_name = ma.fields.String(
        validate=ma.validate.Length(min=1, max=100), metadata={"example": "Toko Budi Makmur"}
    )
    contact_email = ma.fields.String(
        validate=ma.validate.Length(min=3, max=254), metadata={"example": "toko@budi.co.id"}
    )
    contact_phone = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(max=40),
        metadata={"description": "As a user's phone (E.164 once stored); null removes it"},
    )
    bank_account = ma.fields.Nested(
        BankAccountInSchema,
        metadata={
            "description": "Replaces the payout account; a verified seller's KYC review becomes "
            "pending again"
        },
    )
    payout_schedule = ma.fields.Nested(PayoutScheduleSchema)


class StaffUpdateSchema(_AtLeastOneField):
    """What staff change of a seller; omitted fields stay as they are."""

    commission_percent = DecimalString(
        PERCENT,
        allow_none=True,
        metadata={"description": "0 to 99.99; null: the marketplace's (LAPAK_COMMISSION_PERCENT)"},
    )
    payout_schedule = ma.fields.Nested(PayoutScheduleSchema)


class ReviewedSubmissionSchema(ma.Schema):
    submitted_at = ma.fields.AwareDateTime(
        load_default=None,
        metadata={"description": "The submission you reviewed: the profile's "
                  "``kyc.submitted_at`` as you read it. If the seller submitted again since "
                  "(a new payout account), the answer is 409 ``stale-kyc-review``; "
                  "recommended", "example": "2026-11-29T08:15:02.123456+00:00"},
    )  # fmt: skip


class RejectSchema(ReviewedSubmissionSchema):
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=500),
        metadata={"description": "Shown to the seller", "example": "The holder name differs "
                  "from the name on the ID card"},
    )  # fmt: skip


class SellerQuerySchema(PageArgs):
    kyc_state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(KYC_STATES))
    can_sell = ma.fields.Boolean(load_default=None)
    payout_interval = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(PAYOUT_INTERVALS)
    )
    email_prefix = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=254),
        metadata={"description": "Login emails that start with this, in any letter case"},
    )


class SignUpSchema(ma.Schema):
    email = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=3, max=254),
        metadata={"description": "The login email", "example": "budi@example.co.id"},
    )
    password = ma.fields.String(
        required=True,
        load_only=True,
        metadata={
            "minLength": MIN_PASSWORD_LENGTH,
            "maxLength": MAX_PASSWORD_LENGTH,
            "description": f"{MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters, not the "
            "email address",
            "format": "password",
        },
    )
    name = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=200),
        metadata={"description": "The person's name", "example": "Budi Santoso"},
    )
    phone = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.Length(max=40)
    )
    display_name = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "The shop's name; by default the person's", "example": "Toko "
                  "Budi Makmur"},
    )  # fmt: skip


class SignUpThrottledProblemSchema(ProblemSchema):
    retry_after = ma.fields.Integer(
        metadata={"description": "Seconds until this address may sign up again (as Retry-After)"}
    )


# -- balances and settlements -----------------------------------------------------------------


class BalanceQuerySchema(ma.Schema):
    currency = ma.fields.String(
        load_default="IDR",
        validate=ma.validate.OneOf(sorted(CURRENCY_PLACES)),
        metadata={"description": "The balance's currency"},
    )


class BalanceSchema(ma.Schema):
    """A seller's balances, straight from their ledger accounts."""

    currency = ma.fields.String(metadata={"example": "IDR"})
    available = DecimalString(MONEY, metadata={"description": "Yours to withdraw now"})
    pending = DecimalString(
        MONEY,
        metadata={
            "description": "Shares of confirmed payments on hold: each becomes available "
            "LAPAK_SETTLEMENT_HOLD_DAYS x 24 h after its payment's confirmation"
        },
    )
    owed = DecimalString(
        MONEY,
        metadata={
            "description": "What you owe (a refund after a payout), taken from your next "
            "shares before they reach pending"
        },
    )
    next_release_at = ma.fields.DateTime(
        allow_none=True, metadata={"description": "When the oldest share on hold is released"}
    )
    next_release_amount = DecimalString(
        MONEY, allow_none=True, metadata={"description": "What that release moves"}
    )
    next_payout_on = ma.fields.Date(
        allow_none=True,
        metadata={"description": "The day of your next weekly payout; null for manual payouts"},
    )


class SettlementBankSchema(ma.Schema):
    bank_code = ma.fields.String(metadata={"example": "014"})
    holder_name = ma.fields.String(metadata={"example": "Budi Santoso"})
    number = ma.fields.String(
        metadata={"description": "Masked: its last four characters only", "example": "•••• 7890"}
    )
    last4 = ma.fields.String(metadata={"example": "7890"})


class SettlementSchema(ma.Schema):
    """A settlement: a seller's money on its way to their bank account."""

    id = ma.fields.UUID()
    name = ma.fields.String(metadata={"example": "STL/2026/00042"})
    seller = ma.fields.UUID(metadata={"description": "The seller's id"})
    currency = ma.fields.String(metadata={"example": "IDR"})
    amount = DecimalString(MONEY, metadata={"example": "250000.00"})
    state = ma.fields.String(
        metadata={
            "enum": list(SETTLEMENT_STATES),
            "description": "pending -> processing -> completed | failed; pending -> canceled "
            "(a failed or canceled settlement's money is back in the available balance)",
        }
    )
    bank_account = ma.fields.Nested(SettlementBankSchema)
    payout_adapter = ma.fields.String(metadata={"example": "manual"})
    payout_reference = ma.fields.String(allow_none=True)
    failure_reason = ma.fields.String(allow_none=True)
    scheduled_for = ma.fields.Date(
        allow_none=True, metadata={"description": "The day of a weekly payout; null: withdrawn"}
    )
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    processing_at = ma.fields.DateTime(allow_none=True)
    completed_at = ma.fields.DateTime(allow_none=True)
    failed_at = ma.fields.DateTime(allow_none=True)
    canceled_at = ma.fields.DateTime(allow_none=True)


SettlementPageSchema = page_schema(SettlementSchema)


class WithdrawSchema(ma.Schema):
    amount = DecimalString(
        MONEY,
        load_default=None,
        metadata={"description": "What to withdraw; omitted: all that is available"},
    )
    currency = ma.fields.String(
        load_default="IDR", validate=ma.validate.OneOf(sorted(CURRENCY_PLACES))
    )


class SettlementQuerySchema(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(SETTLEMENT_STATES))
    currency = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(sorted(CURRENCY_PLACES))
    )
    seller = ma.fields.UUID(
        load_default=None, metadata={"description": "One seller's settlements (staff)"}
    )


class SettlementOutcomeSchema(ma.Schema):
    reference = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "The transfer's reference at the bank"},
    )


class SettlementFailureSchema(SettlementOutcomeSchema):
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=500),
        metadata={"example": "account closed"},
    )
