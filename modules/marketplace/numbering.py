"""Document numbers per code and year (``INV/2026/00042``), gap-free under any concurrency.

A number is the counter row's value, incremented in the transaction that uses it: the row lock
is held until that transaction ends, so a rolled-back transaction gives its number back and two
transactions can never take the same one. The lock serialises every transaction that numbers
the same code, so callers take numbers last, just before commit, and in one fixed order
(:func:`take_numbers` sorts the codes) so two transactions never wait for each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Session, get_database

from .models import SequenceCounter

#: Document codes: sale order, invoice, credit note (reversed invoice), payment.
CODES = ("SO", "INV", "RINV", "PAY")
DIGITS = 5


def format_number(code: str, year: int, number: int) -> str:
    return f"{code}/{year}/{number:0{DIGITS}d}"


def take_numbers(codes: Iterable[str], year: int) -> dict[str, str]:
    """The next number of each code for ``year``, in the caller's transaction."""
    numbers = {}
    for code in sorted(set(codes)):
        if code not in CODES:
            raise ValueError(f"unknown document code {code!r}")
        numbers[code] = format_number(code, year, _take(code, year))
    return numbers


def _take(code: str, year: int) -> int:
    session = Session()
    statement = (
        update(SequenceCounter)
        .where(SequenceCounter.code == code, SequenceCounter.year == year)
        .values(next_number=SequenceCounter.next_number + 1)
        .returning(SequenceCounter.next_number)
    )
    taken = session.execute(statement).scalar()
    if taken is None:  # the year's first document of this code
        dialect = get_database().primary.dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(SequenceCounter)
            .values(code=code, year=year, next_number=1)
            .on_conflict_do_nothing(index_elements=["code", "year"])
        )
        taken = session.execute(statement).scalar_one()
    return taken - 1


def last_numbers(year: int) -> dict[str, int]:
    """The last number taken per code in ``year`` (0 when none)."""
    rows = Session().execute(
        select(SequenceCounter.code, SequenceCounter.next_number).where(
            SequenceCounter.year == year
        )
    )
    return {code: next_number - 1 for code, next_number in rows}
