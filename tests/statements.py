"""The SQL an app sends, recorded as the driver gets it (SQLAlchemy's ``before_cursor_execute``):
for tests that count statements or read their plans, and for the benchmarks, which build on the
test harness already (``tests.servers``). Not in ``app/``: nothing that runs Lapak records its
statements."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import Engine, event

#: Recorded (with ``None`` for parameters) where a transaction commits, when asked for.
COMMIT = "COMMIT"


@contextmanager
def recorded(
    engines: Iterable[Engine], *, this_thread: bool = False, commits: bool = False
) -> Iterator[list[tuple[str, Any]]]:
    """``(statement, parameters)`` of every statement ``engines`` send inside the block, in
    order: with ``this_thread``, only those sent from the thread that opened the block (a test
    client's request runs in it; the audit module's writer, for one, writes from its own); with
    ``commits``, ``(COMMIT, None)`` where a transaction commits too."""
    engines = list(engines)
    sent: list[tuple[str, Any]] = []
    recorder = threading.get_ident() if this_thread else None

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if recorder is None or threading.get_ident() == recorder:
            sent.append((statement, parameters))

    def commit(_conn: Any) -> None:
        if recorder is None or threading.get_ident() == recorder:
            sent.append((COMMIT, None))

    listeners = [("before_cursor_execute", record), *([("commit", commit)] if commits else [])]
    for engine in engines:
        for name, listener in listeners:
            event.listen(engine, name, listener)
    try:
        yield sent
    finally:
        for engine in engines:
            for name, listener in listeners:
                event.remove(engine, name, listener)


def recorded_in(app: Flask) -> AbstractContextManager[list[tuple[str, Any]]]:
    """:func:`recorded` on every engine of ``app`` (its primary and replicas), this thread's
    statements only: what the requests a test client makes in the block send."""
    return recorded(app.extensions["lapak.db"].engines(), this_thread=True)
