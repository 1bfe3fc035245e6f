"""What modules' web screens share (``hooks.screens``): reading a query string or a form with the
API endpoint's own marshmallow schema, so a screen accepts exactly what the endpoint accepts and
a refusal names the field as the API does (a person reads it as one sentence, ``str(error)``);
and the link to a keyset listing's next page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import request, url_for
from werkzeug.datastructures import MultiDict

from app.errors import DomainError, Invalid
from app.fields import UNSTORABLE_TEXT, UNSTORABLE_TEXT_MESSAGE


def load_form(
    schema: ma.Schema, values: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``values`` (``request.args`` or ``request.form``) loaded by ``schema``.

    A blank field is left out (an empty filter is no filter, an empty amount the schema's
    default), and names the schema does not know (the CSRF token) are ignored. A field the
    schema reads as a list takes every value sent under its name (checkboxes; ``values`` a
    ``MultiDict``), left out too when none is. Anything else wrong, text the database cannot
    store included, is :class:`~app.errors.Invalid` naming each field (by ``labels`` where
    given; a list's item as ``name.index``), nothing loaded.
    """
    # A field is sent under its data key (``from`` for an attribute ``since``), if it has one.
    known = {field.data_key or name for name, field in schema.fields.items()}
    given: dict[str, Any] = {
        name: value.strip()
        for name, value in values.items()
        if name in known and isinstance(value, str) and value.strip()
    }
    for name, field in schema.fields.items():
        if isinstance(field, ma.fields.List):
            key = field.data_key or name
            sent = values.getlist(key) if isinstance(values, MultiDict) else []
            items = [value.strip() for value in sent if isinstance(value, str) and value.strip()]
            given.pop(key, None)
            if items:
                given[key] = items
    try:
        # As the API's request parser (app/reading.py): text the database cannot store is
        # refused for every field, not only where a column happens to reject it.
        unstorable = {
            name: [UNSTORABLE_TEXT_MESSAGE]
            for name, value in given.items()
            if any(UNSTORABLE_TEXT.search(text) for text in _texts(value))
        }
        if unstorable:
            raise ma.ValidationError(unstorable)
        return schema.load(given, unknown=ma.EXCLUDE)
    except ma.ValidationError as error:
        complaints = dict(_flat(error.messages))
        named = labels or {}
        detail = "; ".join(
            f"{named.get(name, name.replace('_', ' ').capitalize())}: {text}"
            for name, text in complaints.items()
        )
        raise Invalid(detail, errors=complaints) from None


def _texts(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def invalid_fields(error: DomainError) -> frozenset[str]:
    """The fields a refusal names (for ``aria-invalid`` on them)."""
    return frozenset(error.errors or ())


def _flat(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's messages as (field, its complaints in one line), nested fields dotted."""
    if isinstance(messages, Mapping):
        found = []
        for name, inner in messages.items():
            found.extend(_flat(inner, f"{prefix}.{name}" if prefix else str(name)))
        return found
    if isinstance(messages, list | tuple):
        return [(prefix, " ".join(str(m).rstrip(".") + "." for m in messages))]
    return [(prefix, str(messages))]


def next_page_url(next_cursor: str | None) -> str | None:
    """This screen with the next page's cursor, its other query arguments kept; None on the
    last page."""
    if next_cursor is None:
        return None
    query = request.args.to_dict()
    query["cursor"] = next_cursor
    # The query is appended, not passed to url_for as keywords: a query name such as
    # ``endpoint``, ``_external`` or a view argument's would change the link or fail.
    return f"{url_for(request.endpoint or '', **(request.view_args or {}))}?{urlencode(query)}"


def first_page_url() -> str | None:
    """This screen's first page, its other query arguments kept; None on the first page."""
    if not request.args.get("cursor"):
        return None
    query = {name: value for name, value in request.args.items() if name != "cursor"}
    here = url_for(request.endpoint or "", **(request.view_args or {}))
    return f"{here}?{urlencode(query)}" if query else here
