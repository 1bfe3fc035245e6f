"""What a receiver's answer makes of a delivery: the one table, and ``Retry-After``.

| answer | action |
| --- | --- |
| 2xx | ``sent`` |
| no answer (network error, timeout) | ``retry`` |
| 408, 425, 429, 5xx | ``retry`` (not before ``Retry-After``, when given) |
| 410 | ``disable`` the endpoint; the delivery fails |
| any other 1xx, 3xx or 4xx | ``fail`` without retry (a redirect is never followed) |
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime


class Action(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    DISABLE = "disable"
    FAIL = "fail"


RETRIED_STATUSES = frozenset({408, 425, 429})


def action_for(status: int | None) -> Action:
    """The action for an answer's status; ``None`` is no answer at all."""
    if status is None:
        return Action.RETRY
    if 200 <= status < 300:
        return Action.SENT
    if status in RETRIED_STATUSES or 500 <= status < 600:
        return Action.RETRY
    if status == 410:
        return Action.DISABLE
    return Action.FAIL


#: Delay-seconds as RFC 9110 writes it: ASCII digits only (``str.isdigit`` also takes "²" and
#: other scripts' digits), and at most ten of them, so the number stays small.
_SECONDS = re.compile(r"[0-9]{1,10}")
#: An HTTP-date is 29 characters; anything much longer is not one.
_MAX_DATE_CHARS = 64


def retry_after(value: str | None, now: datetime, cap: timedelta) -> timedelta | None:
    """``Retry-After`` as a wait from ``now``, at most ``cap``: delay-seconds or an HTTP-date;
    None if absent or unreadable (a date in the past is no wait)."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return min(timedelta(seconds=int(text)), cap)
    if not text.isascii() or len(text) > _MAX_DATE_CHARS:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when - now, timedelta(0)), cap)
