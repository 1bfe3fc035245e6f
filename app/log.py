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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, g, has_app_context, has_request_context, request

# What every LogRecord has; anything else came in through ``extra=`` and joins the line.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


#: A Fernet token (app/vault.py): version byte 0x80 and a timestamp, then base64url. Whole
#: tokens are 100 characters and more; a start of one (a log line that cut it, as RQ's job
#: descriptions do) is hidden too.
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_-]{20,}={0,2}")
REDACTED = "[sealed]"


#: ``app.extensions`` key: the path prefixes of this app whose requests are logged without their
#: path (:func:`hide_paths`).
HIDDEN_PATHS = "lapak.log.hidden_paths"


@dataclass(frozen=True)
class HiddenPaths:
    """Paths under ``prefix`` hold a secret (a payment link's token): a request is logged as the
    route template it matched, else as ``shown``; but those under one of ``keep`` (sub-prefixes
    holding none) as they are."""

    prefix: str
    shown: str
    keep: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        """Whether ``path`` is hidden: compared as routing might still take it (doubled slashes
        merged by a redirect, any case), so a near miss holding the secret is hidden too."""
        path = _SLASHES.sub("/", path).lower()
        return path.startswith(self.prefix) and not path.startswith(self.keep)


_SLASHES = re.compile(r"/{2,}")


def hide_paths(app: Flask, prefix: str, shown: str, *, keep: tuple[str, ...] = ()) -> None:
    """Never log the paths under ``prefix`` (``/pay/``), whatever the request becomes: every log
    line of a request there (its access line included) and a problem's ``instance`` show the
    route template it matched, or ``shown`` when it matched none (a 404 or 405 from routing,
    which no module's hook sees), never the path; paths under ``keep`` are logged as they are.
    Decided from the path itself, not by a hook of a blueprint (which runs only when one of its
    rules matched). The development server's request lines are masked the same way."""
    hidden = HiddenPaths(prefix.lower(), shown, tuple(path.lower() for path in keep))
    app.extensions.setdefault(HIDDEN_PATHS, []).append(hidden)
    _DEV_SERVER_LINES.add(hidden)


def hide_path(shown: str) -> None:
    """Log this request's path as ``shown`` (for one request; see :func:`hide_paths` for a
    prefix)."""
    g.lapak_log_path = shown


def masked_path(path: str, rule: str | None, hidden: Iterable[HiddenPaths]) -> str:
    """``path`` as the logs show it: under a hidden prefix, its route template (``rule``) or
    that prefix's ``shown``."""
    for paths in hidden:
        if paths.covers(path):
            return rule if rule is not None else paths.shown
    return path


def logged_path() -> str:
    """This request's path as the logs (and a problem's ``instance``) show it."""
    shown = g.get("lapak_log_path")
    if shown:
        return shown
    hidden = current_app.extensions.get(HIDDEN_PATHS, ())
    rule = request.url_rule
    return masked_path(request.path, rule.rule if rule is not None else None, hidden)


class _MaskedRequestLines(logging.Filter):
    """The development server (``werkzeug``) logs each request line as its client sent it: the
    hidden paths in it are masked (no route known there: each prefix's ``shown``), the query
    dropped with them."""

    def __init__(self) -> None:
        super().__init__()
        self._hidden: list[HiddenPaths] = []
        self._pattern: re.Pattern[str] | None = None

    def add(self, hidden: HiddenPaths) -> None:
        if hidden in self._hidden:
            return
        self._hidden.append(hidden)
        prefixes = "|".join(re.escape(paths.prefix) for paths in self._hidden)
        self._pattern = re.compile(f'(?:{prefixes})[^\\s"]*', re.IGNORECASE)

    def _mask(self, text: str) -> str:
        assert self._pattern is not None
        return self._pattern.sub(lambda found: masked_path(found[0], None, self._hidden), text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        if isinstance(record.msg, str):
            record.msg = self._mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._mask(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


_DEV_SERVER_LINES = _MaskedRequestLines()
logging.getLogger("werkzeug").addFilter(_DEV_SERVER_LINES)


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
