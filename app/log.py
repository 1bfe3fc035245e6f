"""JSON-line logging with the request id, so one request's lines can be found together.

:func:`audit` writes one structured line per security-relevant outcome (a login, a lockout, a
revocation) and hands it to the modules' audit sinks (``hooks.audit_sink``), which keep it
whatever the log level.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, has_app_context, has_request_context, request

# What every LogRecord has; anything else came in through ``extra=`` and joins the line.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


#: A Fernet token (app/vault.py): version byte 0x80 and a timestamp, then base64url. Whole
#: tokens are 100 characters and more; a start of one (a log line that cut it, as RQ's job
#: descriptions do) is hidden too.
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_-]{20,}={0,2}")
REDACTED = "[sealed]"


def hide_path(shown: str) -> None:
    """Log this request's path as ``shown`` (a route template, ``/pay/<token>``): for a path
    that holds a secret (a payment link's token), which must not reach the logs."""
    g.lapak_log_path = shown


def logged_path() -> str:
    """This request's path as the logs show it (see :func:`hide_path`)."""
    return g.get("lapak_log_path") or request.path


def redact_tokens(text: str) -> str:
    """``text`` with every vault token replaced: a sealed value that reached a message (an
    exception quoting a row, a debugging line) is not written to the log."""
    return FERNET_TOKEN.sub(REDACTED, text)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception.

    Vault tokens are redacted from the whole line (:func:`redact_tokens`).
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context():
            line["request_id"] = g.get("request_id") if has_app_context() else None
            line["method"] = request.method
            line["path"] = logged_path() if has_app_context() else request.path
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact_tokens(json.dumps(line, default=str, ensure_ascii=False))


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, "lapak", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    handler.lapak = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def audit(logger: logging.Logger, event: str, outcome: str, **fields: Any) -> None:
    """Log ``event outcome`` at INFO with ``fields``, and give it to every audit sink.

    ``fields`` must hold no secret (no password, token or signature): they are logged and
    stored as they are. A sink that fails is logged; the caller never sees it.
    """
    logger.info("%s %s", event, outcome, extra={"event": event, "outcome": outcome, **fields})
    if not has_app_context():
        return
    registry = current_app.extensions.get("lapak.registry")
    for sink in registry.wiring.audit_sinks if registry is not None else ():
        try:
            sink(event, outcome, dict(fields))
        except Exception:
            logging.getLogger(__name__).exception("audit sink %r failed", sink)


class WarningsEvery:
    """Logs each kind of warning at most once per ``seconds`` (``math.inf``: once), so an
    outage met by every request is one line a minute, not one a request. A warning given after
    some were held back says how many."""

    def __init__(self, logger: logging.Logger, seconds: float) -> None:
        self.logger, self.seconds = logger, seconds
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, message: str, *args: Any) -> None:
        """Log ``message % args`` unless a ``kind`` warning was logged within ``seconds``."""
        now = time.monotonic()
        with self._lock:
            last, held_back = self._last.get(kind, (-math.inf, 0))
            if now - last < self.seconds:
                self._last[kind] = (last, held_back + 1)
                return
            self._last[kind] = (now, 0)
        if held_back:
            message, args = f"{message} (%d more since the last warning)", (*args, held_back)
        self.logger.warning(message, *args)

    def forget(self) -> None:
        """The next warning of every kind is logged (an outage ended)."""
        with self._lock:
            self._last.clear()
