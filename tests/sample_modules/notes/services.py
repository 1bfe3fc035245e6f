from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import func, select

from app.db import Session, transaction
from app.errors import DomainError
from app.events import emit
from app.log import audit

from .models import Note, NoteDelivery


class RefusedTitle(DomainError):
    code = "refused-title"


def create_note(title: str) -> Note:
    with transaction() as session:
        note = Note(title=title)
        session.add(note)
        session.flush()
        emit("note.created", {"note_id": note.id, "title": title})
        if title.startswith("rollback"):
            raise RefusedTitle("titles starting with rollback are refused after the emit")
    return note


def create_note_job(title: str) -> None:
    create_note(title)


def audit_note_job(title: str) -> None:
    """A job whose only effect is an audit line (stored by the audit module's writer)."""
    audit(logging.getLogger(__name__), "notes.audited", "success", title=title)


def record_delivery(payload: dict[str, Any]) -> None:
    Session().add(NoteDelivery(note_id=payload["note_id"], title=payload["title"]))
    Session().flush()


def refuse_failing_titles(payload: dict[str, Any]) -> None:
    if payload["title"].startswith("fail"):
        raise RuntimeError(f"subscriber refuses {payload['title']!r}")


def create_note_slowly_job(title: str, seconds: float) -> None:
    time.sleep(seconds)
    create_note(title)


def note_figures() -> dict[str, Any]:
    """The notes' health section (``hooks.health_section``): how many notes there are."""
    return {"notes": Session().scalar(select(func.count(Note.id)))}
