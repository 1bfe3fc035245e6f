"""insert_record, adopt_written, update_record and flush_changes: plain statements for new and
changed records that leave the session as a flush would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from app.db import (
    ReadOnlyViolation,
    Session,
    adopt_written,
    flush_changes,
    get_database,
    insert_record,
    read_only,
    transaction,
    update_record,
)
from modules.user.models import User
from modules.user.services import create_user
from tests.sample_modules.notes.models import Note, NoteDelivery


@contextmanager
def statements() -> Iterator[list[str]]:
    """The statements the primary is sent inside the block (first line, upper-cased verb)."""
    sent: list[str] = []
    engine = get_database().primary

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def written(title: str) -> Note:
    note = Note(title=title)
    insert_record(note)
    return adopt_written(note)


def test_a_written_record_holds_its_row_and_is_clean_in_the_session(either_app: Flask) -> None:
    with either_app.app_context():
        with transaction() as session:
            with statements() as sent:
                note = written("kept")
                assert note.id > 0
                # Its defaults were given on the record too: reading them costs no query.
                assert note.public_id is not None
                assert note.created_at is not None
                session.flush()
            assert [s.split(" ")[0] for s in sent] == ["INSERT"]
            assert note in session
            assert note not in session.dirty
            assert note not in session.new
        with transaction() as session:
            row = session.execute(
                select(Note.public_id, Note.created_at, Note.title).where(Note.id == note.id)
            ).one()
        assert tuple(row) == (note.public_id, note.created_at, "kept")


def test_flush_changes_updates_only_the_changed_columns_in_the_unit_of_works_order(
    either_app: Flask,
) -> None:
    with either_app.app_context():
        with transaction():
            first, second = written("first"), written("second")
            delivery = NoteDelivery(note_id=first.id, title="to first")
            insert_record(delivery)
            adopt_written(delivery)
        with transaction() as session:
            delivery.title = "renamed delivery"  # a child table: written after its parent's
            second.title = "renamed second"
            first.title = "first"  # the same value: nothing to write
            with statements() as sent:
                flush_changes()
                assert not session.dirty
                session.flush()  # nothing left for the unit of work
        assert len(sent) == 2, sent
        assert sent[0].startswith("UPDATE notes_note SET title=")
        assert sent[1].startswith("UPDATE notes_delivery SET title=")
        with transaction() as session:
            titles = dict(session.execute(select(Note.id, Note.title)).all())
            assert titles[first.id] == "first"
            assert titles[second.id] == "renamed second"
            assert session.get(NoteDelivery, delivery.id).title == "renamed delivery"


def test_flush_changes_leaves_a_new_record_to_the_unit_of_work(either_app: Flask) -> None:
    with either_app.app_context():
        with transaction() as session:
            note = written("before")
            note.title = "after"
            session.add(Note(title="pending"))
            flush_changes()
            assert not session.new
            assert not session.dirty
        with transaction() as session:
            titles = set(session.scalars(select(Note.title)))
        assert {"after", "pending"} <= titles


def test_a_table_with_an_onupdate_column_is_flushed_by_the_unit_of_work(app: Flask) -> None:
    with app.app_context():
        with transaction():
            user_id = create_user(f"{uuid.uuid4().hex}@example.com", name="Before").id
        with transaction() as session:
            user = session.get(User, user_id)
            assert user is not None
            before = user.updated_at
            user.name = "Renamed By Flush"
            flush_changes()
            assert not session.dirty
        with transaction() as session:
            stored = session.get(User, user_id, populate_existing=True)
            assert stored is not None
            assert stored.name == "Renamed By Flush"
            assert before is None or stored.updated_at >= before


def test_update_record_writes_now_and_leaves_nothing_for_the_flush(either_app: Flask) -> None:
    with either_app.app_context():
        with transaction() as session:
            note = written("draft")
            with statements() as sent:
                update_record(note, title="final")
                session.flush()
            assert len(sent) == 1
            assert sent[0].startswith("UPDATE notes_note SET title=")
            assert note.title == "final"
        with transaction() as session:
            assert session.scalar(select(Note.title).where(Note.id == note.id)) == "final"


def test_none_of_them_writes_inside_read_only(app: Flask) -> None:
    with app.app_context():
        with transaction():
            note = written("read only")
        note_id = note.id
        with read_only():
            Session().add(note)
            with pytest.raises(ReadOnlyViolation):
                insert_record(Note(title="refused"))
            with pytest.raises(ReadOnlyViolation):
                update_record(note, title="refused")
            note.title = "refused"
            with pytest.raises(ReadOnlyViolation):
                flush_changes()
            Session().rollback()
        with transaction() as session:
            assert session.scalar(select(Note.title).where(Note.id == note_id)) == "read only"
            assert session.scalar(select(Note.id).where(Note.title == "refused")) is None
