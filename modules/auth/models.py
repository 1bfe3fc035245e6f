"""Login sessions: one live session per user, each with an idle and an absolute expiry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

REPLACED, LOGOUT, ADMIN, DEACTIVATED = "replaced", "logout", "admin", "deactivated"
#: A password set with `lapak users set-password` (fits revoked_reason, VARCHAR(16)).
PASSWORD_SET = "password-set"  # noqa: S105 - a revocation reason, not a password


class AuthSession(Base):
    """A login. ``revoked_at`` is set when a newer login, a logout or an admin ends it."""

    __tablename__ = "auth_session"
    __table_args__ = (
        # The database itself guarantees a single live session per user, whatever the races.
        Index(
            "uq_auth_session_live_user",
            "user_id",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    idle_expires_at: Mapped[datetime] = mapped_column()
    absolute_expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(16))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip: Mapped[str | None] = mapped_column(String(64))
