"""The current time, timezone-aware UTC, from one place that tests can move.

Expiry rules (sessions, tokens, backoff) read :func:`now`, so a test can jump past an idle
timeout with :func:`travel` instead of sleeping.
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
    """Move :func:`now` forward by ``by`` for the duration of the block (tests only)."""
    global _offset
    previous = _offset
    _offset = previous + by
    try:
        yield
    finally:
        _offset = previous
