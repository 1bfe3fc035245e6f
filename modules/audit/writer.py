"""The batched writer: rows are appended in memory on the request path and written by a
background thread, so a request never waits for its log row.

* :meth:`BatchWriter.add` only appends to a bounded in-process backlog (a lock and a list
  append) and wakes the thread when a batch is full. It never touches the database, never
  blocks on it and never raises.
* The thread writes ``flush_seconds`` after the first row arrives, or as soon as ``batch_rows``
  wait, one INSERT per table per batch, on a connection of its own from the primary's pool
  (never the request's session); with nothing waiting it sleeps until a row arrives.
* The database down (or locked): the batch goes back to the front of the backlog. While it
  fails the thread no longer wakes for arriving rows: it tries again after a pause that doubles
  from :data:`FIRST_RETRY_SECONDS` to :data:`LAST_RETRY_SECONDS`, and is back to its normal pace
  at the first batch written. The backlog is bounded by ``backlog_rows``; beyond it new rows are
  dropped, counted (:attr:`dropped`) and logged once a minute.
* Any other refusal of a batch (a bad value, a bug): each table's rows are tried on their own,
  then in halves, down to single rows, so only the rows the database refuses are dropped
  (counted and logged once a minute), never their whole batch, and none is retried forever. A
  missing table or column (a database not migrated) drops that table's rows without splitting.
* The thread starts lazily, on the first row of each process: gunicorn workers and RQ's work
  horses, forked after the app was built, each start their own with fresh state (reset in the
  child by ``os.register_at_fork``, before any of its threads runs: the parent's unwritten rows
  are the parent's to write). At interpreter exit (a worker's SIGTERM), and on :meth:`close`,
  what is left is written; what cannot be (the database down, a flush that does not end in
  time) is counted as dropped, as is any row added after :meth:`close`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Table, insert

from app.db import Database, is_unavailable
from app.log import WarningsEvery

log = logging.getLogger(__name__)

#: The pause before the first retry while the database is down; it doubles at each failed try
#: up to the last.
FIRST_RETRY_SECONDS = 0.5
LAST_RETRY_SECONDS = 10.0

#: Every writer of this process, reset in a forked child (see :func:`_reset_after_fork`).
_WRITERS: weakref.WeakSet[BatchWriter] = weakref.WeakSet()

_Row = tuple[Table, dict[str, Any]]


class BatchWriter:
    """Writes rows (``(table, values)``) in batches from a background thread; see the module."""

    def __init__(
        self,
        database: Database,
        *,
        flush_seconds: float = 0.5,
        batch_rows: int = 500,
        backlog_rows: int = 50_000,
    ) -> None:
        self.database = database
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.backlog_rows = backlog_rows
        self._reset()
        _WRITERS.add(self)
        # At exit (a gunicorn worker's SIGTERM ends in sys.exit): write what is left. A weak
        # reference, so an app that is done with (tests make hundreds) can be collected.
        reference = weakref.ref(self)
        atexit.register(lambda: (writer := reference()) is not None and writer.close())

    def _reset(self) -> None:
        """Fresh state for this process (at start, and in a forked child before it runs)."""
        self._pid = os.getpid()
        #: Rows written, and rows lost (backlog full, a row the database refused, rows left at
        #: shutdown), by this process since it started.
        self.written = 0
        self.dropped = 0
        self.failing = False
        #: The pause before the next try while the database is down.
        self.retry_seconds = FIRST_RETRY_SECONDS
        self._warnings = WarningsEvery(log, 60.0)
        self._closed = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: Set when a row arrives in an empty backlog (the idle thread wakes), and when a batch
        #: is full (the thread writes at once instead of at the end of the interval).
        self._arrived = threading.Event()
        self._full = threading.Event()
        self._stop = threading.Event()
        self._rows: list[_Row] = []
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    def _own(self) -> None:
        """Fresh state if this process is a fork the at-fork hook did not reach (it always
        does for ``os.fork``; this is a safety net, taken under the module's lock)."""
        if self._pid != os.getpid():
            with _FORK_LOCK:
                if self._pid != os.getpid():
                    self._reset()

    # --- the request path ----------------------------------------------------------------

    def add(self, table: Table, values: dict[str, Any]) -> None:
        """Queue one row for ``table``; returns at once (the row may be dropped, see above)."""
        self._own()
        if self._thread is None and not self._closed:
            self._start()
        with self._lock:
            if self._closed or len(self._rows) + self._in_flight >= self.backlog_rows:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._rows.append((table, values))
                dropped = 0
                waiting = len(self._rows)
        if dropped:
            self._warnings.warn(
                "full",
                "the audit log backlog is full (%d rows not yet written) or the writer is "
                "closed: new rows are dropped (%d so far in this process)",
                self.backlog_rows,
                dropped,
            )
        elif waiting == 1:
            self._arrived.set()
        elif waiting >= self.batch_rows:
            self._full.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"lapak-audit-writer-{self._pid}", daemon=True
            )
            self._thread.start()

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        # Idle (nothing waiting), the thread sleeps until a row arrives: an app with no traffic
        # costs no wake-ups. Then it gathers rows for one interval (or until a batch is full),
        # writes, and goes on while rows remain. While the database is down it waits out its
        # back-off instead: arriving rows (and full batches) do not wake it.
        while not self._stop.is_set():
            if self.failing:
                self._stop.wait(self.retry_seconds)
            else:
                self._arrived.wait()
                self._arrived.clear()
                self._full.wait(self.flush_seconds)
                self._full.clear()
            if self._stop.is_set():
                return  # close() writes what is left
            try:
                self.flush()
            except Exception:  # never let the thread die: the next flush tries again
                log.exception("the audit log writer failed")
            if self.waiting:
                self._arrived.set()

    def flush(self, timeout: float = -1) -> int:
        """Write every row waiting now, in batches; returns how many were written.

        Stops at the first batch the database cannot take (it stays in the backlog). Waits at
        most ``timeout`` seconds (``-1``: as long as it takes) for a flush under way in another
        thread, then returns 0 without writing.
        """
        self._own()
        if not self._flush_lock.acquire(timeout=timeout):
            return 0
        try:
            written = 0
            while True:
                with self._lock:
                    batch = self._rows[: self.batch_rows]
                    del self._rows[: self.batch_rows]
                    self._in_flight = len(batch)
                if not batch:
                    return written
                done, refused, left = self._write(batch)
                with self._lock:
                    self._in_flight = 0
                    self.written += done
                    self.dropped += refused
                    if self._closed:
                        self.dropped += len(left)  # no one will try them again
                    else:
                        self._rows[:0] = left  # tried again after the back-off
                written += done
                if left:
                    return written
                if self.failing:
                    self.failing = False
                    self.retry_seconds = FIRST_RETRY_SECONDS
                    self._warnings.forget()
                    log.warning("the audit log is written again (%d rows waiting)", self.waiting)
        finally:
            self._flush_lock.release()

    def _write(self, batch: Sequence[_Row]) -> tuple[int, int, list[_Row]]:
        """Write ``batch``; returns the rows written, the rows refused (dropped) and those left
        for later (the database unavailable)."""
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, values in batch:
            by_table.setdefault(table, []).append(values)
        self.database.after_fork()  # a forked child must not share its parent's connections
        try:
            self._insert(list(by_table.items()))  # the usual case: one transaction
            return len(batch), 0, []
        except Exception as error:
            if is_unavailable(error):
                self._down(error)
                return 0, 0, list(batch)
            first_error = error
        # A row the database refuses: each table on its own, then halves down to single rows,
        # so only the refused rows are lost.
        chunks = list(by_table.items())
        written = refused = 0
        while chunks:
            table, rows = chunks.pop(0)
            try:
                self._insert([(table, rows)])
            except Exception as error:
                if is_unavailable(error):
                    self._down(error)
                    left = [(t, values) for t, r in [(table, rows), *chunks] for values in r]
                    return written, refused, left
                if len(rows) == 1 or _schema_error(error):
                    refused += len(rows)  # a missing table refuses every row: no split
                    first_error = error
                else:
                    middle = len(rows) // 2
                    chunks[:0] = [(table, rows[:middle]), (table, rows[middle:])]
                continue
            written += len(rows)
        if refused:  # a bad value, a bug or a database not migrated: retrying would not help
            self._warnings.warn(
                "refused",
                "the database refused %d audit log rows, dropped (%s)",
                refused,
                _first_line(first_error),
            )
        return written, refused, []

    def _insert(self, chunks: Sequence[tuple[Table, list[dict[str, Any]]]]) -> None:
        with self.database.primary.begin() as connection:
            for table, rows in chunks:
                connection.execute(insert(table), rows)

    def _down(self, error: BaseException) -> None:
        if self.failing:
            self.retry_seconds = min(self.retry_seconds * 2, LAST_RETRY_SECONDS)
        self.failing = True
        self._warnings.warn(
            "down",
            "the audit log cannot be written (%s); %d rows wait",
            _first_line(error),
            self.waiting,  # the batch being written included
        )

    # --- figures and shutdown ------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Rows not yet written (the backlog, and the batch being written)."""
        self._own()
        with self._lock:
            return len(self._rows) + self._in_flight

    def figures(self) -> dict[str, Any]:
        self._own()
        return {
            "waiting": self.waiting,
            "written": self.written,
            "dropped": self.dropped,
            "failing": self.failing,
            "backlog_limit": self.backlog_rows,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is left (best effort: the database may be down).

        Never waits much longer than ``timeout`` for the thread or a flush under way; rows that
        could not be written are counted as dropped, and so is any row added afterwards.
        """
        self._own()
        if self._closed:
            return
        with self._lock:
            self._closed = True
        self._stop.set()
        self._arrived.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.flush(timeout=timeout)
        except Exception:
            log.exception("the audit log could not be written at shutdown")
        with self._lock:
            left = len(self._rows)
            self.dropped += left
            self._rows.clear()
        if left:
            log.warning("%d audit log rows were not written at shutdown, dropped", left)


#: Taken by :meth:`BatchWriter._own`; a fresh one in a forked child (a lock held by another
#: thread at the fork would never be released there).
_FORK_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    """In a forked child (only the forking thread runs): every writer starts afresh."""
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()
    for writer in list(_WRITERS):
        writer._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


def _schema_error(error: BaseException) -> bool:
    """Whether ``error`` says the table or a column is missing (a database not migrated): no
    row of the statement would be taken, so it is not split to find the bad ones."""
    original = getattr(error, "orig", None)
    if isinstance(original, psycopg.Error):
        return original.sqlstate in ("42P01", "42703")  # undefined table, undefined column
    if isinstance(original, sqlite3.OperationalError):
        return "no such table" in str(original) or "has no column" in str(original)
    return False


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:200]
