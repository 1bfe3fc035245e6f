"""What the desk's screens read: its views call these, as an API view calls a service, and
never query the database themselves."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import Session
from tests.sample_modules.notes.models import Note


def list_notes() -> list[Note]:
    """Every note, oldest first."""
    return list(Session().scalars(select(Note).order_by(Note.id)))


def count_notes() -> int:
    return Session().scalar(select(func.count(Note.id))) or 0
