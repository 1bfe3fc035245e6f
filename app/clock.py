"""The current time, timezone-aware UTC, from one place that tests can move.

Expiry rules (sessions, tokens, backoff) read :func:`now`, so a test can jump past an idle
timeout with :func:`travel` instead of sleeping. ``lapak demo`` travels back to date its history
(:mod:`app.demo`): every record, posting and event of a service reads the same clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    """The current UTC time (shifted while a test travels)."""
    return datetime.now(UTC) + _offset


@contextmanager
def travel(by: timedelta) -> Iterator[None]:
    """Move :func:`now` by ``by`` (forward, or back when negative) for the duration of the block.

    The offset is the process's: every thread reads it (tests, and ``lapak demo``, whose job
    threads run a moment's jobs at that moment). Never in a process that serves requests.
    """
    global _offset
    previous = _offset
    _offset = previous + by
    try:
        yield
    finally:
        _offset = previous
