"""A customer's wallet in one currency. Its money is the ledger's ``wallet`` holder account
(``wallet:<currency>:<customer id>``): the balance is read there, never stored twice."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

WALLET_STATES = ("active", "frozen")


class Wallet(Base):
    __tablename__ = "wallet_wallet"
    __table_args__ = (
        UniqueConstraint("customer_id", "currency"),
        CheckConstraint("state IN ('active', 'frozen')", name="state_known"),
        CheckConstraint("(state = 'frozen') = (frozen_at IS NOT NULL)", name="frozen_when_frozen"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    customer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), default="active")
    #: Why staff froze it (shown to staff and to the customer), while frozen.
    frozen_reason: Mapped[str | None] = mapped_column(String(500))
    frozen_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
