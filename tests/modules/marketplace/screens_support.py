"""Helpers of the order screens' tests: the tables and forms of a page read as a person reads
them (browsers and notices: ``tests.modules.ledger.screens_support``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

SCREENS = "/web/marketplace"


@dataclass
class Table:
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""

    @property
    def body(self) -> list[list[str]]:
        """The rows after the header row."""
        return self.rows[1:]


class _Tables(HTMLParser):
    """Every ``<table>`` of a page by its ``id`` (or ``#<n>``), each row as its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, Table] = {}
        self._current: Table | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._current = Table()
            key = dict(attrs).get("id") or f"#{len(self.tables)}"
            self.tables[key] = self._current
        elif self._current is not None and tag == "tr":
            self._current.rows.append([])
        elif self._current is not None and tag in ("td", "th"):
            self._cell = []
        elif self._current is not None and tag == "caption":
            self._caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._current is not None:
            self._current.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "caption" and self._caption is not None and self._current is not None:
            self._current.caption = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "table":
            self._current = None

    def handle_data(self, data: str) -> None:
        for collecting in (self._cell, self._caption):
            if collecting is not None:
                collecting.append(data)


def tables(html: str) -> dict[str, Table]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def field_value(html: str, field_id: str) -> str:
    """The ``value`` of the input with ``id``."""
    found = re.search(rf'<input id="{re.escape(field_id)}"[^>]*\svalue="([^"]*)"', html)
    assert found, f"no input #{field_id} with a value"
    return unescape(found.group(1))


def hidden(html: str, name: str, index: int = 0) -> str:
    """The value of the ``index``-th hidden field called ``name``."""
    values = re.findall(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', html)
    assert len(values) > index, f"no hidden {name} #{index}"
    return unescape(values[index])


def field_errors(html: str) -> list[str]:
    return [
        " ".join(unescape(text).split())
        for text in re.findall(r'<p class="field-error"[^>]*>(.*?)</p>', html, re.S)
    ]
