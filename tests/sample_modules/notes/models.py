from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.vault import Sealed


class Note(Base):
    __tablename__ = "notes_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NoteDelivery(Base):
    """One row per delivery of note.created to record_delivery: proves exactly-once effects."""

    __tablename__ = "notes_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes_note.id"))
    title: Mapped[str] = mapped_column(String(200))


class NoteSecret(Base):
    """A secret kept through the vault: proves what reaches the database (tests/app/test_vault)."""

    __tablename__ = "notes_secret"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    secret: Mapped[str | None] = mapped_column(Sealed)
