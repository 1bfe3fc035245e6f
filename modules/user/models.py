"""Users and their one-time activation tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JsonDocument, utcnow

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


IMPORT_STATUSES = ("queued", "running", "succeeded", "succeeded_with_errors", "failed", "cancelled")
FINISHED_STATUSES = ("succeeded", "succeeded_with_errors", "failed", "cancelled")
IMPORT_MODES = ("create", "upsert")


class ImportJob(Base):
    """One uploaded user CSV file and the progress of importing it.

    ``next_row`` is the resume point: the number of data records (blank ones included) already
    handled by committed chunks. It moves in the same transaction as the chunk's users, counts
    and errors, so a job killed at any moment resumes exactly after its last committed chunk.
    """

    __tablename__ = "user_import_job"
    __table_args__ = (
        CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in IMPORT_STATUSES)})", name="status"
        ),
        CheckConstraint(f"mode IN ({', '.join(repr(m) for m in IMPORT_MODES)})", name="mode"),
        Index("ix_user_import_job_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(24), default="queued")
    mode: Mapped[str] = mapped_column(String(8), default="create")
    dry_run: Mapped[bool] = mapped_column(default=False)
    default_role: Mapped[str] = mapped_column(String(16), default="customer")
    filename: Mapped[str] = mapped_column(String(255))
    file_path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(default=0)
    encoding: Mapped[str] = mapped_column(String(20))
    delimiter: Mapped[str] = mapped_column(String(4))
    chunk_rows: Mapped[int] = mapped_column(default=10_000)
    total_rows: Mapped[int] = mapped_column(default=0)
    next_row: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    #: Create mode: rows refused because their email already has a user (upsert updates them).
    existing: Mapped[int] = mapped_column(default=0, server_default="0")
    #: The header row as uploaded, in order (the errors CSV repeats it).
    header: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    unknown_columns: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class ImportRowError(Base):
    """Why one row of an import failed; ``raw`` keeps the row as uploaded, to fix and re-upload."""

    __tablename__ = "user_import_error"
    __table_args__ = (Index("ix_user_import_error_job_row", "job_id", "row_number", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("user_import_job.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column()
    column: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    #: What kind of problem (``invalid``, ``duplicate``, ``email-taken``, ``last-admin``...);
    #: None on rows stored before errors had codes.
    code: Mapped[str | None] = mapped_column(String(32))
    #: The cells of the row as uploaded, in file order (headers may repeat a name).
    raw: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
