"""Users and their one-time activation tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

ROLES = ("admin", "staff", "customer", "seller")


class User(Base):
    """A person who uses Lapak. Imported users have no password until they activate."""

    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
        Index("ix_user_account_role_id", "role", "id"),
        # Email prefix search (LIKE 'abc%') on PostgreSQL whatever the database collation.
        Index(
            "ix_user_account_email_key_pattern",
            "email_key",
            postgresql_ops={"email_key": "varchar_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    #: As entered, trimmed, with the domain in lower case (shown to people).
    email: Mapped[str] = mapped_column(String(254))
    #: Entirely lower case: the key that makes emails unique case-insensitively.
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), default="customer")
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def has_password(self) -> bool:
        """False for an imported user who has not activated yet."""
        return self.password_hash is not None


class ActivationToken(Base):
    """A one-time token that lets a user without a password choose one. Only its hash is kept."""

    __tablename__ = "user_activation_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
