"""Login sessions (one live session per user, each with an idle and an absolute expiry) and
the API keys programs sign their requests with."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app import clock
from app.db import Base, utcnow
from app.vault import Sealed
from modules.user.models import User

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


#: Signature versions of an API key: ``v1`` signs method, path, query and body; ``legacy`` (the
#: PayCoreX form, opt-in) signs only the timestamp and body, so one signature fits every GET.
SIGNATURE_V1, SIGNATURE_LEGACY = "v1", "legacy"
SIGNATURE_VERSIONS = (SIGNATURE_V1, SIGNATURE_LEGACY)


class ApiKey(Base):
    """A program's credential: a public ``key_id`` and a secret it signs requests with.

    The secret is sealed by the vault (the server recomputes each request's HMAC, so it must be
    read back); it is shown once, in the answer that creates or rolls the key. During a roll's
    grace period the previous secret verifies too. ``last_used_at`` is written at most once a
    minute, by a conditional UPDATE.
    """

    __tablename__ = "auth_api_key"
    __table_args__ = (
        CheckConstraint("signature_version IN ('v1', 'legacy')", name="signature_version"),
        CheckConstraint(
            "(previous_secret IS NULL) = (previous_secret_expires_at IS NULL)",
            name="previous_secret_with_expiry",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    #: Space-separated scope names (``orders:read payments:read``).
    scopes: Mapped[str] = mapped_column(String(1000))
    signature_version: Mapped[str] = mapped_column(String(16), default=SIGNATURE_V1)
    #: Deferred: listing keys does not open their secrets.
    secret: Mapped[str] = mapped_column(Sealed, deferred=True)
    previous_secret: Mapped[str | None] = mapped_column(Sealed, deferred=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    rolled_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    @property
    def scope_names(self) -> list[str]:
        return self.scopes.split()

    @property
    def state(self) -> str:
        """``active``, ``revoked`` or ``expired`` (now, by :mod:`app.clock`)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and clock.now() >= self.expires_at:
            return "expired"
        return "active"
