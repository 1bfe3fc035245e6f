"""``lapak demo``: the sellers' part of the history (``hooks.demo_history``, see :mod:`app.demo`).

The demo seller fills in their profile and payout account and asks for the KYC review at the
history's first moment, staff verify them at the next, and they list their products (the
customers of the other modules' history buy them). Their shares are held, then released as the
periodic job releases them (:func:`.balances.release_due_holds`, at every moment); in the last
days they withdraw twice: staff pay the first out, the second waits for staff. A second seller
asks for the review near the end, and waits in staff's queue. Everything through the services
the API calls.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select

from app.db import Session, transaction
from app.demo import DemoMoment
from modules.marketplace import products
from modules.marketplace.models import Product
from modules.user.demo import (
    DEMO_NEW_SELLER_EMAIL,
    DEMO_SELLER_EMAIL,
    DEMO_STAFF_EMAIL,
    acting_as,
)

from . import balances, kyc, services, settlements
from .config import seller_settings
from .models import SellerProfile

CURRENCY = "IDR"
#: The demo seller's products: name, province, city, size, price in IDR.
SELLER_PRODUCTS = (
    ("BANDENG PRESTO", "JAWA TENGAH", "SEMARANG", "25", "55000"),
    ("CUMI-CUMI", "JAWA TIMUR", "SIDOARJO", "40", "92000"),
    ("UDANG WINDU", "LAMPUNG", "BANDAR LAMPUNG", "30", "125000"),
)
#: Made-up payout accounts (sealed by the vault like any other).
SELLER_PROFILE = {
    "display_name": "Toko Budi Makmur",
    "contact_phone": "081234567802",
    "bank_account": {
        "bank_code": "014",
        "holder_name": "Budi Santoso",
        "account_number": "0123 4567 89",
    },
}
NEW_SELLER_PROFILE = {
    "display_name": "Sinar Laut Segar",
    "bank_account": {
        "bank_code": "008",
        "holder_name": "Sinar Laut Segar",
        "account_number": "1400 0987 6543",
    },
}
#: Moments of the history: the review asked and approved; the first withdrawal made, taken in
#: hand and paid out by staff; the second seller asks for the review; the second withdrawal
#: (half of what is available) at the last moment, left to staff.
SUBMITS_AT, APPROVED_AT = 0, 1
WITHDRAWS_AT, PROCESSING_AT, PAID_OUT_AT = 28, 29, 31
NEW_SELLER_SUBMITS_AT = 38
PAYOUT_REFERENCE = "BCA-DEMO-0001"


class SellerLife:
    """This module's part of the history."""

    def __init__(self) -> None:
        with transaction():
            self.seller = acting_as(DEMO_SELLER_EMAIL)
            self.new_seller = acting_as(DEMO_NEW_SELLER_EMAIL)
            self.staff = acting_as(DEMO_STAFF_EMAIL)
            state = None
            if self.seller is not None:
                state = Session().scalar(
                    select(SellerProfile.kyc_state).where(
                        SellerProfile.user_id == self.seller.user_id
                    )
                )
        # The mark of this history: the demo seller verified (an earlier run verified them).
        self.already = state == "verified"
        self.wanted = not self.already and None not in (self.seller, self.new_seller, self.staff)
        #: The demo seller's withdrawals, oldest first.
        self.settlements: list[uuid.UUID] = []

    def step(self, moment: DemoMoment) -> None:
        assert self.seller is not None
        assert self.new_seller is not None
        assert self.staff is not None
        index = moment.index
        if index == SUBMITS_AT:
            services.update_own_profile(self.seller, SELLER_PROFILE)
            kyc.submit_kyc(self.seller)
        if index == APPROVED_AT:
            kyc.approve_kyc(self.staff, self.seller.user_uuid)
            for name, province, city, size, price in SELLER_PRODUCTS:
                products.create_product(
                    self.seller,
                    {"name": name, "province": province, "city": city,
                     "size": Decimal(size), "list_price": Decimal(price)},
                )  # fmt: skip
        # What the periodic job does: the shares whose hold is over become available.
        balances.release_due_holds()
        if index == NEW_SELLER_SUBMITS_AT:
            services.update_own_profile(self.new_seller, NEW_SELLER_PROFILE)
            kyc.submit_kyc(self.new_seller)
        if index == WITHDRAWS_AT:
            self._withdraw(share=Decimal(1))
        if index == PROCESSING_AT and self.settlements:
            settlements.move(self.staff, self.settlements[0], "processing")
        if index == PAID_OUT_AT and self.settlements:
            settlements.move(
                self.staff, self.settlements[0], "completed", reference=PAYOUT_REFERENCE
            )
        if index == moment.count - 1:
            self._withdraw(share=Decimal("0.5"))

    def _withdraw(self, share: Decimal) -> None:
        """Withdraw ``share`` of what is available (in whole ten thousands), if that is at least
        the smallest settlement."""
        assert self.seller is not None
        with transaction():
            available = balances.balance(self.seller.user_id, CURRENCY).available
        amount = (available * share // 10_000 * 10_000).quantize(Decimal("0.01"))
        if amount < seller_settings().settlement_minimum[CURRENCY]:
            return
        _, made = settlements.withdraw(
            self.seller, amount, CURRENCY, None, lambda view: {"id": view.id, "name": view.name}
        )
        self.settlements.append(made["id"])

    def summary(self) -> list[str]:
        if self.already:
            return [f"Demo seller {DEMO_SELLER_EMAIL}: already verified, history left alone."]
        if not self.wanted:
            return ["Demo sellers: left out (the demo users are missing)."]
        assert self.seller is not None
        with transaction():
            money = balances.balance(self.seller.user_id, CURRENCY)
            listed = Session().scalar(
                select(func.count())
                .select_from(Product)
                .where(Product.seller_id == self.seller.user_id)
            )
        return [
            f"Demo seller {DEMO_SELLER_EMAIL}: verified, {listed} products; {money.available} "
            f"{CURRENCY} available, {money.pending} on hold; {len(self.settlements)} "
            "withdrawals (the first paid out, the last waiting for staff on the Sellers screen).",
            f"{DEMO_NEW_SELLER_EMAIL} waits for staff's KYC review (Sellers screen).",
        ]


def start_history() -> SellerLife:
    return SellerLife()
