"""DriverStatement: a prebuilt statement on the DBAPI cursor behaves as SQLAlchemy's execute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    Numeric,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from app.db import DriverStatement, Session, cursor_rows, transaction
from tests.sample_modules.notes.models import Note

PROBE = Table(
    "driver_statement_probe",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("amount", Numeric(20, 2)),
    Column("payload", JSON),
    Column("changed_at", Integer, onupdate=lambda: 1),
)
INSERT_PROBE = DriverStatement(insert(PROBE).returning(PROBE.c.id))

INSERT_NOTE = DriverStatement(insert(Note.__table__).returning(Note.__table__.c.id))
NOTE_IDS = DriverStatement(select(Note.id).where(Note.title == func.lower("Kept")))


def insert_and_read(app: Flask, **values: Any) -> tuple[int, Any, datetime]:
    with app.app_context(), transaction() as session:
        note_id = INSERT_NOTE.scalar(session.connection(), {"title": "kept", **values})
        assert NOTE_IDS.rows(session.connection(), {}) == [(note_id,)]  # "Kept": a constant
        note = session.get(Note, note_id)
        assert note is not None
    return note_id, note.public_id, note.created_at


def test_an_insert_takes_the_python_defaults_of_the_columns_not_given(either_app: Flask) -> None:
    before = datetime.now(UTC)
    note_id, public_id, created_at = insert_and_read(either_app)
    assert note_id > 0
    assert public_id is not None  # uuid.uuid4, the column's default
    assert before <= created_at <= datetime.now(UTC)  # utcnow, the column's default


def test_the_columns_bind_processors_apply(either_app: Flask) -> None:
    jakarta = timezone(timedelta(hours=7))
    moment = datetime(2026, 11, 29, 12, 0, tzinfo=jakarta)
    _, _, created_at = insert_and_read(either_app, created_at=moment)
    assert created_at == moment
    assert created_at.tzinfo == UTC  # UTCDateTime hands back UTC, on either database
    naive = datetime(2026, 11, 29, 12, 0)  # noqa: DTZ001 - the mistake refused
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        insert_and_read(either_app, created_at=naive)


def test_the_engine_sees_the_statement_and_translates_driver_errors(app: Flask) -> None:
    seen: list[str] = []
    engine = app.extensions["lapak.db"].primary

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        note_id, _, _ = insert_and_read(app)
        assert seen[0].startswith("INSERT INTO notes_note")
        with app.app_context(), pytest.raises(IntegrityError), transaction() as session:
            INSERT_NOTE.rows(session.connection(), {"title": "again", "id": note_id})
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with app.app_context():
        titles = Session().scalars(select(Note.title)).all()
    assert titles == ["kept"]  # the failed one rolled back


def test_a_value_the_driver_cannot_load_is_a_translated_error(app: Flask) -> None:
    # psycopg raises while fetchall() loads the row, after the statement ran.
    with app.app_context(), pytest.raises(DataError):
        cursor_rows(Session().connection(), "SELECT 'infinity'::timestamptz", {})
    with app.app_context():
        assert Session().scalar(select(func.count()).select_from(Note)) == 0  # usable again
        Session.remove()


def test_money_and_json_go_as_the_dialect_sends_them(app: Flask) -> None:
    # PostgreSQL only: SQLite keeps a Numeric as a float whatever sends it.
    amount = Decimal("123456789012345678.91")  # 20 digits: a float keeps 15 or so
    payload = {"lines": [1, "dua"], "note": None}
    engine = app.extensions["lapak.db"].primary
    PROBE.create(engine)
    try:
        with app.app_context(), transaction() as session:
            probe_id = INSERT_PROBE.scalar(
                session.connection(), {"amount": amount, "payload": payload}
            )
            row = session.execute(select(PROBE).where(PROBE.c.id == probe_id)).one()
        assert row.amount == amount
        assert row.payload == payload
    finally:
        PROBE.drop(engine)


@pytest.mark.parametrize(
    ("statement", "params", "why"),
    [
        (select(Note.id).where(Note.id.in_(bindparam("ids", expanding=True))), {"ids": [1]},
         "expanding"),
        (update(PROBE).values(amount=bindparam("amount")), {"amount": 1}, "onupdate"),
        (insert(Note.__table__), {"title": "x", "colour": "red"}, "does not take"),
    ],
)  # fmt: skip
def test_a_statement_it_cannot_run_faithfully_is_refused(
    app: Flask, statement: Any, params: dict[str, Any], why: str
) -> None:
    with app.app_context(), transaction() as session:
        with pytest.raises(TypeError, match=why):
            DriverStatement(statement).rows(session.connection(), params)
        assert session.scalar(select(func.count()).select_from(Note)) == 0


def test_many_rows_go_in_one_executemany_with_defaults_events_and_translated_errors(
    either_app: Flask,
) -> None:
    insert_notes = DriverStatement(insert(Note.__table__))
    seen: list[tuple[str, bool]] = []
    engine = either_app.extensions["lapak.db"].primary

    def capture(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, many: bool) -> None:
        seen.append((statement.split(" (")[0], many))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with either_app.app_context(), transaction() as session:
            insert_notes.run_many(session.connection(), [{"title": "a"}, {"title": "b"}])
        with either_app.app_context():
            notes = Session().execute(select(Note.title, Note.public_id, Note.created_at)).all()
        assert sorted(n.title for n in notes) == ["a", "b"]
        assert all(n.public_id is not None and n.created_at is not None for n in notes)
        assert len({n.public_id for n in notes}) == 2  # the default is called per row
        assert ("INSERT INTO notes_note", True) in seen
        with (
            either_app.app_context(),
            pytest.raises(IntegrityError),
            transaction() as session,
        ):
            first = session.scalar(select(func.min(Note.id)))
            rows = [{"title": "c", "id": first + 100}, {"title": "d", "id": first}]
            insert_notes.run_many(session.connection(), rows)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with either_app.app_context():
        assert sorted(Session().scalars(select(Note.title))) == ["a", "b"]  # all or nothing
