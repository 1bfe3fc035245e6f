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
from app.security import Principal
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
from .models import SellerProfile, Settlement

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
        self.wanted = None not in (self.seller, self.new_seller, self.staff)
        #: The demo seller's withdrawals, oldest first.
        self.settlements: list[uuid.UUID] = []

    def activity(self) -> list[str]:
        with transaction():
            made = Session().scalar(select(func.count()).select_from(Settlement))
        # The orders and ledger postings are the marketplace's part's to name.
        return [f"{made} seller settlement{'s' if made != 1 else ''}"] if made else []

    def step(self, moment: DemoMoment) -> None:
        assert self.seller is not None
        assert self.new_seller is not None
        assert self.staff is not None
        index = moment.index
        # Each review step is taken from the state it starts from: a demo seller someone used
        # before the history (an earlier demo's users) is taken from where they are.
        if index == SUBMITS_AT and _kyc_state(self.seller) in SUBMITTABLE:
            services.update_own_profile(self.seller, SELLER_PROFILE)
            kyc.submit_kyc(self.seller)
        if index == APPROVED_AT:
            if _kyc_state(self.seller) == "pending":
                kyc.approve_kyc(self.staff, self.seller.user_uuid)
            self._list_products()
        # What the periodic job does: the shares whose hold is over become available.
        balances.release_due_holds()
        if index == NEW_SELLER_SUBMITS_AT and _kyc_state(self.new_seller) in SUBMITTABLE:
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

    def _list_products(self) -> None:
        """The seller's products, those they do not list yet (by name)."""
        assert self.seller is not None
        with transaction():
            listed = set(
                Session().scalars(
                    select(Product.name).where(Product.seller_id == self.seller.user_id)
                )
            )
        for name, province, city, size, price in SELLER_PRODUCTS:
            if name not in listed:
                products.create_product(
                    self.seller,
                    {"name": name, "province": province, "city": city,
                     "size": Decimal(size), "list_price": Decimal(price)},
                )  # fmt: skip

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


#: The review states a seller submits from.
SUBMITTABLE = frozenset(kyc.KYC_TRANSITIONS["submit"][0])


def _kyc_state(seller: Principal) -> str:
    """The seller's review state (``unverified`` before they have a profile)."""
    with transaction():
        state = Session().scalar(
            select(SellerProfile.kyc_state).where(SellerProfile.user_id == seller.user_id)
        )
    return state or "unverified"


def start_history() -> SellerLife:
    return SellerLife()
