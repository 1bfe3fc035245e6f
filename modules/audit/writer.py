"""The batched writer: rows are appended in memory on the request path and written by a
background thread, so a request never waits for its log row.

* :meth:`BatchWriter.add` only appends to a bounded in-process backlog (a lock and a list
  append) and wakes the thread when a batch is full. It never touches the database, never
  blocks on it and never raises.
* The thread writes ``flush_seconds`` after the first row arrives, or as soon as ``batch_rows``
  wait, one INSERT per table per batch, on a connection of its own from the primary's pool
  (never the request's session); with nothing waiting it sleeps until a row arrives.
* The database down (or locked): the batch goes back to the front of the backlog and is tried
  again at the next flush. The backlog is bounded by ``backlog_rows``; beyond it new rows are
  dropped, counted (:attr:`dropped`) and logged once a minute. Any other refusal of a batch (a
  bug, a database not migrated) drops that batch, counted and logged once a minute, rather than
  retrying it forever.
* The thread starts lazily, on the first row of each process: gunicorn workers and RQ's work
  horses, forked after the app was built, each start their own (the parent's unwritten rows
  are the parent's to write). At interpreter exit (a worker's SIGTERM), and on :meth:`close`,
  what is left is written.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert

from app.db import Database, is_unavailable
from app.log import WarningsEvery

log = logging.getLogger(__name__)


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
        #: Rows written, and rows lost (backlog full, or a batch the database refused), by
        #: this process since it started.
        self.written = 0
        self.dropped = 0
        self.failing = False
        self._warnings = WarningsEvery(log, 60.0)
        self._closed = False
        self._reset()
        # At exit (a gunicorn worker's SIGTERM ends in sys.exit): write what is left. A weak
        # reference, so an app that is done with (tests make hundreds) can be collected.
        reference = weakref.ref(self)
        atexit.register(lambda: (writer := reference()) is not None and writer.close())

    def _reset(self) -> None:
        """Fresh state for this process (at start, and in a forked child)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: Set when a row arrives in an empty backlog (the idle thread wakes), and when a batch
        #: is full (the thread writes at once instead of at the end of the interval).
        self._arrived = threading.Event()
        self._full = threading.Event()
        self._stop = threading.Event()
        self._rows: list[tuple[Table, dict[str, Any]]] = []
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    # --- the request path ----------------------------------------------------------------

    def add(self, table: Table, values: dict[str, Any]) -> None:
        """Queue one row for ``table``; returns at once (the row may be dropped, see above)."""
        if self._pid != os.getpid():
            self._reset()  # a forked child: its own backlog and thread
        if self._thread is None and not self._closed:
            self._start()
        with self._lock:
            if len(self._rows) + self._in_flight >= self.backlog_rows:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._rows.append((table, values))
                dropped = 0
                waiting = len(self._rows)
        if dropped:
            self._warnings.warn(
                "full",
                "the audit log backlog is full (%d rows not yet written): new rows are dropped "
                "(%d so far in this process)",
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
        # writes, and goes on while rows remain (the database down: tried every interval).
        while not self._stop.is_set():
            self._arrived.wait()
            self._arrived.clear()
            self._full.wait(self.flush_seconds)
            self._full.clear()
            try:
                self.flush()
            except Exception:  # never let the thread die: the next flush tries again
                log.exception("the audit log writer failed")
            if self.waiting:
                self._arrived.set()

    def flush(self) -> int:
        """Write every row waiting now, in batches; returns how many were written.

        Stops at the first batch the database cannot take (it stays in the backlog).
        """
        if self._pid != os.getpid():
            self._reset()
        written = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = self._rows[: self.batch_rows]
                    del self._rows[: self.batch_rows]
                    self._in_flight = len(batch)
                if not batch:
                    return written
                try:
                    self._write(batch)
                except Exception as error:
                    with self._lock:
                        self._in_flight = 0
                        if is_unavailable(error):
                            self._rows[:0] = batch  # tried again at the next flush
                        else:
                            self.dropped += len(batch)
                    if is_unavailable(error):
                        self.failing = True
                        self._warnings.warn(
                            "down",
                            "the audit log cannot be written (%s); %d rows wait",
                            _first_line(error),
                            self.waiting,
                        )
                    else:  # a bug (or a database not migrated): retrying would not help
                        self._warnings.warn(
                            "refused",
                            "the database refused %d audit log rows, dropped (%s)",
                            len(batch),
                            _first_line(error),
                        )
                    return written
                with self._lock:
                    self._in_flight = 0
                    self.written += len(batch)
                written += len(batch)
                if self.failing:
                    self.failing = False
                    self._warnings.forget()
                    log.warning("the audit log is written again (%d rows waiting)", self.waiting)

    def _write(self, batch: Sequence[tuple[Table, dict[str, Any]]]) -> None:
        by_table: dict[Table, list[dict[str, Any]]] = {}
        for table, values in batch:
            by_table.setdefault(table, []).append(values)
        self.database.after_fork()  # a forked child must not share its parent's connections
        with self.database.primary.begin() as connection:
            for table, rows in by_table.items():
                connection.execute(insert(table), rows)

    # --- figures and shutdown ------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Rows not yet written (the backlog, and the batch being written)."""
        with self._lock:
            return len(self._rows) + self._in_flight

    def figures(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "written": self.written,
            "dropped": self.dropped,
            "failing": self.failing,
            "backlog_rows": self.backlog_rows,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is left (best effort: the database may be down)."""
        if self._pid != os.getpid() or self._closed:
            return
        self._closed = True
        self._stop.set()
        self._arrived.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("the audit log could not be written at shutdown")
        if self.waiting:
            log.warning("%d audit log rows were not written at shutdown", self.waiting)


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:200]
