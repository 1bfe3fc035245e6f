"""The current time, timezone-aware UTC, from one place that tests can move.

Expiry rules (sessions, tokens, backoff) read :func:`now`, so a test can jump past an idle
timeout with :func:`travel` instead of sleeping. ``lapak demo`` travels back to date its history
(:mod:`app.demo`): every record, posting and event of a service reads the same clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)
#: Guards the offset's read-modify-write and who is travelling: one thread at a time.
_lock = threading.Lock()
#: The thread inside :func:`travel` (``threading.get_ident()``), and how deep (nested travels).
_traveller: int | None = None
_depth = 0


def now() -> datetime:
    """The current UTC time (shifted while a test travels)."""
    return datetime.now(UTC) + _offset


@contextmanager
def travel(by: timedelta) -> Iterator[None]:
    """Move :func:`now` by ``by`` (forward, or back when negative) for the duration of the block.

    The offset is the process's: every thread reads it (tests, and ``lapak demo``, whose job
    threads run a moment's jobs at that moment). Never in a process that serves requests.

    One thread travels at a time: travels nest in that thread (each block restores the offset
    it found), and another thread's travel meanwhile raises ``RuntimeError`` at once (were the
    two to interleave, the one leaving last would restore an offset that is no longer there and
    leave the clock moved for good).
    """
    global _offset, _traveller, _depth
    me = threading.get_ident()
    with _lock:
        if _traveller not in (None, me):
            raise RuntimeError(
                "clock.travel: another thread is travelling (the clock's offset is the "
                "process's: one thread travels at a time)"
            )
        _traveller, _depth = me, _depth + 1
        previous = _offset
        _offset = previous + by
    try:
        yield
    finally:
        with _lock:
            _offset = previous
            _depth -= 1
            if not _depth:
                _traveller = None
