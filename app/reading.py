"""Reading requests safely: one JSON reader and one argument parser for every endpoint.

Whatever a client sends, reading it answers a 4xx problem, never a 500:

* :func:`read_json` is the only way a body becomes data. It refuses documents nested deeper than
  :data:`MAX_JSON_DEPTH` and number literals longer than :data:`MAX_NUMBER_CHARS` before
  ``json.loads`` sees them (Python's parser recurses, and ``int()`` of 4,300+ digits raises),
  and says what is wrong and where (line and column). Both webargs (every ``@blp.arguments``)
  and Flask's ``request.get_json()`` go through it.
* :class:`RequestParser` is the webargs parser of every blueprint: a body not declared
  ``application/json`` is a 415 naming the header, and no string of a body, query or form may
  carry text the database cannot store (:data:`app.fields.UNSTORABLE_TEXT`), a 422 naming the
  field.
* Body size is bounded by ``MAX_CONTENT_LENGTH`` (``LAPAK_MAX_JSON_BYTES``): Werkzeug answers 413
  before reading a body whose ``Content-Length`` is over it, and stops a chunked one at it. An
  endpoint that takes more (the CSV import) raises ``request.max_content_length`` for itself.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import marshmallow as ma
from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider
from flask_smorest.arguments import ArgumentsMixin
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import FileStorage

from app import errors
from app.fields import UNSTORABLE_TEXT, UNSTORABLE_TEXT_MESSAGE

MAX_JSON_DEPTH = 64
#: Longer than any number a field accepts (money has 18 digits); far below ``int()``'s 4,300.
MAX_NUMBER_CHARS = 64

# The checks run at C speed on the document without its strings (brackets and digits inside a
# string are text); only a document that fails them is scanned token by token to say where.
# An unterminated string is left to json.loads to report.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING, re.DOTALL)
_SUSPECT = re.compile(
    rf"[0-9][0-9.eE+-]{{{MAX_NUMBER_CHARS - 1},}}|[eE][+-]?[0-9]{{3,}}|NaN|Infinity"
)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))  # UTF-8 never reuses these bytes
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_TOKENS = re.compile(rf"{_STRING}|[\[{{]|[\]}}]|-?[0-9][0-9.eE+-]*|-?Infinity|NaN", re.DOTALL)


class MalformedJSON(errors.BadRequest):
    code = "malformed-json"
    title = "The body is not valid JSON"


class JSONRequired(errors.UnsupportedMediaType):
    code = "unsupported-media-type"
    title = "The body must be JSON"


def read_json(data: bytes | str) -> Any:
    """The JSON document in ``data``; :class:`MalformedJSON` saying what and where if it is not
    one, or is nested too deep, or has a number too long to be a value."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedJSON(
                f"the body is not UTF-8 text: byte {error.start} cannot be read"
            ) from None
    else:
        text = data
    _check_limits(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedJSON(
            f"{error.msg} at line {error.lineno} column {error.colno} (char {error.pos})"
        ) from None


def _check_limits(text: str) -> None:
    skeleton = _STRINGS.sub('""', text)
    if _SUSPECT.search(skeleton) or _deeper_than_allowed(skeleton):
        _locate_problem(text)


def _deeper_than_allowed(skeleton: str) -> bool:
    brackets = skeleton.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKETS)
    if len(brackets) <= MAX_JSON_DEPTH:
        return False
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > MAX_JSON_DEPTH


def _locate_problem(text: str) -> None:
    """Raise :class:`MalformedJSON` for the first token over a limit, saying where."""
    depth = 0
    for token in _TOKENS.finditer(text):
        first = token.group()[0]
        if first == '"':
            continue
        if first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                _refuse(text, token.start(), f"the document is nested deeper than {MAX_JSON_DEPTH}")
        elif first in "]}":
            depth -= 1
        elif token.group().lstrip("-") in ("NaN", "Infinity"):
            _refuse(text, token.start(), f"{token.group()} is not a JSON value")
        elif len(token.group()) > MAX_NUMBER_CHARS:
            _refuse(
                text,
                token.start(),
                f"a number with {len(token.group())} characters (at most {MAX_NUMBER_CHARS})",
            )
        elif "e" in token.group().lower() and _overflows(token.group()):
            _refuse(text, token.start(), f"the number {token.group()} is too large")


def _overflows(literal: str) -> bool:
    try:
        return math.isinf(float(literal))
    except ValueError:
        return False  # not a number at all: json.loads says where


def _refuse(text: str, position: int, what: str) -> None:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    raise MalformedJSON(f"{what}, at line {line} column {column} (char {position})")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, but ``request.get_json()`` reads through :func:`read_json` too."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return read_json(s)


class RequestParser(FlaskParser):
    """The webargs parser of every ``@blp.arguments``: JSON through :func:`read_json`, a body
    of another media type refused by name, and no unstorable text anywhere."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            if _has_body(req):
                raise JSONRequired(
                    f"send the body as JSON with the header Content-Type: application/json "
                    f"(this one is {req.mimetype or 'not declared'})"
                )
            return core.missing
        return read_json(body_of(req))

    def _get_schema(self, argmap: Any, req: Request) -> ma.Schema:
        # webargs makes a new instance of a Schema class for each request (and of its nested
        # schemas with it): a tenth of a short request. A schema keeps no state between loads,
        # so one instance per class serves them all.
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            return _loader(argmap)
        return super()._get_schema(argmap, req)

    def pre_load(
        self, location_data: Any, *, schema: ma.Schema, req: Request, location: str
    ) -> Any:
        problems: dict[str, Any] = {}
        if location != "headers":  # stored nowhere; the schema reads only the ones it names
            _find_unstorable_text(location_data, [], problems)
        if problems:
            raise ma.ValidationError(problems)
        return location_data


@functools.cache
def _loader(schema_class: type[ma.Schema]) -> ma.Schema:
    schema = schema_class()
    _build_nested(schema)
    return schema


def _build_nested(schema: ma.Schema) -> None:
    """Make the nested schemas now, which marshmallow makes on first use: two threads of the
    development server could race to make them."""
    pending = list(schema.fields.values())
    seen = {type(schema)}
    while pending:
        field = pending.pop()
        if isinstance(field, ma.fields.Nested):
            nested = field.schema
            if type(nested) not in seen:  # a schema nesting itself: once
                seen.add(type(nested))
                pending.extend(nested.fields.values())
        elif isinstance(field, ma.fields.List | ma.fields.Tuple | ma.fields.Dict):
            inner = getattr(field, "inner", None) or getattr(field, "value_field", None)
            pending.extend([inner] if inner is not None else getattr(field, "tuple_fields", []))


def body_of(req: Request) -> bytes:
    """The body, at most ``max_content_length`` bytes; 413 if a streamed body is longer.

    Werkzeug refuses a ``Content-Length`` over the limit before reading, but a chunked body is
    only cut at the limit: one more read tells whether the client sent more.
    """
    data = req.get_data(cache=True)
    limit = req.max_content_length
    if limit is not None and req.content_length is None and len(data) >= limit:
        req.stream.read(1)  # past the limit: Werkzeug raises RequestEntityTooLarge
    return data


def _has_body(req: Request) -> bool:
    return bool(req.content_length) or "chunked" in req.headers.get("Transfer-Encoding", "").lower()


def _find_unstorable_text(value: Any, path: list[str], problems: dict[str, Any]) -> None:
    if isinstance(value, str):
        if UNSTORABLE_TEXT.search(value):
            problems[".".join(path) or "_schema"] = [UNSTORABLE_TEXT_MESSAGE]
    elif isinstance(value, FileStorage):  # the file is the module's to read; its name is text
        _find_unstorable_text(value.filename or "", path, problems)
    elif isinstance(value, MultiDictProxy):
        _find_unstorable_text(value.data, path, problems)
    elif hasattr(value, "getlist"):  # query and form: every value of every key
        for key in value:
            for item in value.getlist(key):
                _find_unstorable_text(item, [*path, _printable(key)], problems)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _find_unstorable_text(key, [*path, _printable(key)], problems)
            _find_unstorable_text(item, [*path, _printable(key)], problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _find_unstorable_text(item, [*path, str(index)], problems)


def _printable(key: Any) -> str:
    """A field name fit to be echoed in the problem: unstorable characters escaped."""
    return UNSTORABLE_TEXT.sub(lambda match: f"\\u{ord(match.group()):04x}", str(key))


# Every flask-smorest Blueprint, of the core and of every module, parses with this parser: it is
# installed once, here, where ``app`` is imported (before any module's ``@blp.arguments`` runs).
ArgumentsMixin.ARGUMENTS_PARSER = RequestParser()


def init_app(app: Flask, max_json_bytes: int) -> None:
    """Bound every body by ``max_json_bytes`` and read ``request.get_json()`` safely."""
    app.config["MAX_CONTENT_LENGTH"] = max_json_bytes
    app.json = JSONProvider(app)
