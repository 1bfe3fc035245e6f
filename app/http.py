"""HTTP conventions shared by every module.

* ``api``: the flask-smorest ``Api`` (OpenAPI 3.1 at ``/api/v1/openapi.json``, completed by
  ``app/openapi.py``; Swagger UI at ``/api/v1/docs`` served from the installed
  ``flask-swagger-ui`` wheel, so it works offline).
* Every error, ours or Werkzeug's, leaves as ``application/problem+json`` (RFC 9457), keeps its
  headers (``Allow``, ``Retry-After``, ``WWW-Authenticate``) and never carries a traceback or SQL.
* ``errors`` in a problem maps a dotted field path (``lines.0.quantity``; query arguments by
  their name) to a list of messages, whoever found them (the schemas or a service).
* Request observers (``hooks.request_observer``) see every request's answer and duration.
* ``X-Request-ID`` on every response (the caller's, if it is sane, else a new one), and
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; token answers add
  :data:`NO_STORE`.
* Requests are read by ``app/reading.py``; a value the database refuses is a 422.
* Cursor (keyset) pagination: :class:`PageArgs`, :func:`keyset_page`, :func:`page_schema`;
  :func:`cursor_scope` for a listing served by another endpoint than its own (GraphQL).
* :class:`JsonBoolean`: a JSON body's ``true``/``false``, nothing else.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import flask_swagger_ui
import marshmallow as ma
from apispec import BasePlugin
from flask import Blueprint as FlaskBlueprint
from flask import Flask, Response, after_this_request, g, request
from flask_smorest import Api
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Select, bindparam, literal, tuple_
from sqlalchemy.exc import DataError
from sqlalchemy.orm import InstrumentedAttribute
from werkzeug.exceptions import HTTPException

from app import errors, reading
from app.config import Settings
from app.db import DriverStatement, Session
from app.log import logged_path

log = logging.getLogger(__name__)
access_log = logging.getLogger("lapak.access")

API_PREFIX = "/api/v1"
PROBLEM_MIMETYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Headers of an answer that carries a token or a secret: no cache may keep it (RFC 6749 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Headers of every answer.
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Invalid: 422,
    errors.TooManyRequests: 429,
    errors.UpstreamFailed: 502,
    errors.ServiceUnavailable: 503,
    errors.UpstreamTimeout: 504,
}


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error response of this API.

    Open to extension members (RFC 9457 section 3.2): a module that adds its own (``step``,
    ``source``, ``retry_after``, ...) declares them in a subclass used by its operations.
    """

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(
        required=True,
        metadata={
            "description": "URI naming the problem type (urn:lapak:problem:<code>)",
            "example": "urn:lapak:problem:validation-failed",
        },
    )
    title = ma.fields.String(
        required=True, metadata={"description": "Short summary of the problem type"}
    )
    status = ma.fields.Integer(
        required=True,
        validate=ma.validate.Range(min=400, max=599),
        metadata={"description": "HTTP status code"},
    )
    detail = ma.fields.String(metadata={"description": "What went wrong this time"})
    instance = ma.fields.String(metadata={"description": "The request path"})
    request_id = ma.fields.String(metadata={"description": "Quote it when reporting a problem"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={
            "description": "Dotted field path (lines.0.quantity; a query argument by its name) "
            "-> messages",
            "example": {"lines.0.quantity": ["must be more than 0"]},
        },
    )


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    errors_: Any = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = logged_path()  # never a path that holds a secret (app.log.hide_paths)
    body["request_id"] = g.get("request_id")
    if errors_:
        body["errors"] = field_errors(errors_)
    body.update(extra)
    response = Response(json.dumps(body, default=str), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def problem_type(code: str) -> str:
    return f"urn:lapak:problem:{code}"


def field_errors(messages: Any, *, locations: bool = False) -> dict[str, list[str]]:
    """``errors`` in one shape: dotted field path -> list of messages.

    webargs nests messages by location and field (``{"json": {"lines": {0: {"quantity":
    [...]}}}}``; ``locations=True`` drops the location); services give ``{"lines.0.quantity":
    "..."}``. Both become ``{"lines.0.quantity": [...]}``.
    """
    flat: dict[str, list[str]] = {}

    def walk(value: Any, path: list[str]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, [*path, str(key)])
        elif isinstance(value, (list, tuple)) and not all(isinstance(m, str) for m in value):
            for index, inner in enumerate(value):
                walk(inner, [*path, str(index)])
        else:
            messages = list(value) if isinstance(value, (list, tuple)) else [str(value)]
            flat.setdefault(".".join(path) or "_schema", []).extend(messages)

    if locations and isinstance(messages, Mapping):
        for inner in messages.values():
            walk(inner, [])
    else:
        walk(messages, [])
    return flat


class LapakApi(Api):
    """flask-smorest's Api with problem+json errors that keep their headers."""

    ERROR_SCHEMA = ProblemSchema
    # No catch-all ``default``: every operation declares the statuses it answers (see
    # app/openapi.py), so clients and the fuzz gate can hold the server to them.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        code = error.code or 500
        headers = dict(error.get_headers()) if error.response is None else {}
        data = getattr(error, "data", None) or {}
        headers.update(data.get("headers") or {})
        messages = data.get("errors") or data.get("messages")
        # webargs nests messages by location ({"json": {...}}): the field paths say enough.
        messages = field_errors(messages, locations=True) if messages else None
        if code == 422 and messages:
            return problem(
                422,
                "The input is not valid",
                "One or more fields are invalid; see errors.",
                type_=problem_type("validation-failed"),
                errors_=messages,
                headers=headers,
            )
        detail = data.get("message") or error.description
        if messages:
            detail = "The request could not be read; see errors."
        if code >= 500:
            detail = "An unexpected error occurred; quote the request id when reporting it."
        type_ = "about:blank"
        if code == 413:  # Werkzeug's, for a body over MAX_CONTENT_LENGTH: reads like ours
            type_ = problem_type("payload-too-large")
            if request.max_content_length is not None:
                detail = f"the body is larger than the limit of {request.max_content_length} bytes"
        return problem(code, error.name, detail, type_=type_, errors_=messages, headers=headers)


PROBLEM_MEMBERS = frozenset(
    {"type", "title", "status", "detail", "instance", "request_id", "errors"}
)


def status_of(error: errors.DomainError) -> int:
    """The HTTP status of ``error``'s family (400 for one outside them)."""
    return next(
        (STATUS_BY_ERROR[cls] for cls in type(error).__mro__ if cls in STATUS_BY_ERROR), 400
    )


def handle_domain_error(error: errors.DomainError) -> Response:
    extra = {k: v for k, v in error.extra.items() if k not in PROBLEM_MEMBERS}
    if len(extra) < len(error.extra):
        log.warning(
            "%s: extra fields %s clash with problem members and were dropped",
            type(error).__name__,
            ", ".join(sorted(error.extra.keys() & PROBLEM_MEMBERS)),
        )
    return problem(
        status_of(error),
        error.title,
        error.detail,
        type_=problem_type(error.code),
        errors_=error.errors,
        headers=error.headers,
        **extra,
    )


def handle_unstorable_value(error: DataError) -> Response:
    """The database refused a value (a number out of its column's range, text it cannot hold):
    the input's fault, not an outage. Neither the SQL nor the value leaves the server."""
    log.info("the database refused a value: %s", type(error.orig).__name__)
    return handle_domain_error(errors.ValueNotStorable())


def handle_unexpected_error(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return api_of().handle_http_exception(error)
    log.exception("unhandled %s", type(error).__name__)
    return problem(
        500,
        "Internal Server Error",
        "An unexpected error occurred; quote the request id when reporting it.",
    )


def api_of() -> LapakApi:
    from flask import current_app

    return current_app.extensions["lapak.api"]


def init_app(
    app: Flask, settings: Settings, document_plugins: Sequence[BasePlugin] = ()
) -> LapakApi:
    """Create the Api, the docs assets route, error handlers and request ids.

    ``document_plugins`` complete the OpenAPI document (``app/openapi.py``).
    """
    app.config.update(
        API_TITLE="Lapak",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{API_PREFIX}/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Lapak: marketplace orders, invoices, payments, users and feeds. "
                "Every error is application/problem+json (RFC 9457)."
            }
        },
    )
    api = LapakApi(app, spec_kwargs={"extra_plugins": list(document_plugins)})
    app.extensions["lapak.api"] = api
    assets = Path(flask_swagger_ui.__file__).parent / "dist"
    app.register_blueprint(
        FlaskBlueprint(
            "swagger_assets",
            __name__,
            static_folder=str(assets),
            static_url_path=f"{API_PREFIX}/docs/assets",
        )
    )
    reading.init_app(app, settings.max_json_bytes)
    app.register_error_handler(errors.DomainError, handle_domain_error)
    app.register_error_handler(DataError, handle_unstorable_value)
    app.register_error_handler(Exception, handle_unexpected_error)

    @app.before_request
    def _assign_request_id() -> None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if _SAFE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _return_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
        headers = response.headers
        for name, value in SAFE_HEADERS.items():
            if name not in headers:  # Headers.setdefault costs a validating set() besides
                headers.add(name, value)
        started = g.get("request_started")
        duration = round((time.perf_counter() - started) * 1000, 2) if started else None
        access_log.info(
            "%s %s %s",
            request.method,
            logged_path(),
            response.status_code,
            extra={"event": "request", "status": response.status_code, "duration_ms": duration},
        )
        registry = app.extensions.get("lapak.registry")
        if registry is not None and duration is not None:
            for observe in registry.wiring.request_observers:
                try:
                    observe(request, response, duration)
                except Exception:  # an observer must never cost the caller the answer
                    log.exception("request observer %r failed", observe)
        return response

    return api


# --- JSON body fields -------------------------------------------------------------------------


class JsonBoolean(ma.fields.Boolean):
    """``true`` or ``false`` as JSON has them, as the document says: not 0, 1 or "yes", which
    marshmallow's Boolean also takes (right for query strings and forms, not for a JSON body)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


# --- cursor pagination ----------------------------------------------------------------------


class PageArgs(ma.Schema):
    """``?limit=&cursor=`` of every list endpoint."""

    limit = ma.fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=ma.validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Items per page (1-{MAX_PAGE_SIZE})"},
    )
    cursor = ma.fields.String(
        load_default=None,
        metadata={"description": "The next_cursor of the previous page; omit for the first"},
    )


#: The listing the cursors of the current block belong to, when not the request's endpoint.
_cursor_scope: ContextVar[str | None] = ContextVar("lapak_cursor_scope", default=None)


@contextmanager
def cursor_scope(listing: str) -> Iterator[None]:
    """Pages read in the block sign their cursors for ``listing`` (an endpoint's name, e.g.
    ``"marketplace.Orders"``) instead of the request's endpoint, and add no ``Link`` header.

    For an endpoint that answers several listings at once (GraphQL): each page's cursor is
    bound to its listing, not to the endpoint that served it, so the cursor of one listing is
    refused by another; and a page that has no URL of its own gets no ``rel="next"`` link. A
    cursor of the listing's own endpoint is taken too (the same rows in the same order).
    """
    token = _cursor_scope.set(listing)
    try:
        yield
    finally:
        _cursor_scope.reset(token)


class InvalidCursor(errors.BadRequest):
    code = "invalid-cursor"
    title = "The cursor is not valid"


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


def page_schema(item_schema: type[ma.Schema]) -> type[ma.Schema]:
    """A ``{"items": [...], "next_cursor": ...}`` schema for ``item_schema``."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema)),
            "next_cursor": ma.fields.String(
                allow_none=True,
                metadata={"description": "Pass as ?cursor= for the next page; null on the last"},
            ),
        },
        name=f"{item_schema.__name__.removesuffix('Schema')}PageSchema",
    )


def keyset_page(
    statement: Select[Any],
    order_by: Sequence[InstrumentedAttribute[Any]],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> Page:
    """One page of ``statement`` ordered by ``order_by`` (unique together), after ``cursor``.

    No OFFSET: the cursor holds the last row's sort key, signed with the app secret and bound
    to this endpoint, so a client can neither forge nor reuse it elsewhere. Adds the ``Link``
    header for the next page. The items are the first column's values (entities).
    """
    if cursor:
        key = decode_cursor(cursor, len(order_by))
        bounds = [literal(value, type_=c.type) for c, value in zip(order_by, key, strict=True)]
        statement = statement.where(_after(order_by, bounds, descending))
    ordering = [c.desc() if descending else c.asc() for c in order_by]
    statement = statement.order_by(*ordering).limit(limit + 1)
    entities = Session().scalars(statement).all()  # one fetchall, not a fetch a row
    return _page(entities, limit, lambda last: [getattr(last, c.key) for c in order_by])


class KeysetListing:
    """A hot keyset listing (see :func:`keyset_page`) of rows, whose statements are built once
    per shape and run as :class:`~app.db.DriverStatement`: building the SELECT and SQLAlchemy's
    per-execution work cost about what the query does.

    A shape is what changes the SQL (who asks, which filters are given); its ``build()`` makes
    that statement with a ``bindparam`` for every value that varies, which :meth:`page` is
    given in ``params``. The items are rows as the driver gives them (on PostgreSQL tuples in
    the SELECT's order; times in the connection's zone), and ``order_by`` must be selected.
    """

    LIMIT = "keyset_limit"

    def __init__(self, order_by: Sequence[Any], *, descending: bool = False) -> None:
        self.order_by = list(order_by)
        self.descending = descending
        self._bounds = [
            bindparam(f"keyset_after_{index}", type_=column.type)
            for index, column in enumerate(self.order_by)
        ]
        #: (shape, after a cursor) -> the statement and where the sort key is in its rows.
        self._statements: dict[tuple[Hashable, bool], tuple[DriverStatement, list[int]]] = {}

    def page(
        self,
        shape: Hashable,
        build: Callable[[], Select[Any]],
        params: Mapping[str, Any],
        *,
        limit: int,
        cursor: str | None,
    ) -> Page:
        values = {**params, self.LIMIT: limit + 1}
        if cursor:
            key = decode_cursor(cursor, len(self.order_by))
            values.update(
                (bound.key, value) for bound, value in zip(self._bounds, key, strict=True)
            )
        prepared = self._statements.get((shape, bool(cursor)))
        if prepared is None:
            prepared = self._statements[(shape, bool(cursor))] = self._prepare(build(), cursor)
        statement, positions = prepared
        rows = statement.rows(Session().connection(), values)
        return _page(rows, limit, lambda last: [_in_utc(last[i]) for i in positions])

    def _prepare(
        self, statement: Select[Any], cursor: str | None
    ) -> tuple[DriverStatement, list[int]]:
        selected = list(statement.selected_columns)
        positions = []
        for column in self.order_by:
            found = [i for i, c in enumerate(selected) if c is column]
            if not found:
                raise ValueError(f"the listing orders by {column}, which it does not select")
            positions.append(found[0])
        if cursor:
            statement = statement.where(_after(self.order_by, self._bounds, self.descending))
        ordering = [c.desc() if self.descending else c.asc() for c in self.order_by]
        statement = statement.order_by(*ordering).limit(bindparam(self.LIMIT))
        return DriverStatement(statement), positions


def _in_utc(value: Any) -> Any:
    # The driver gives times in the session's zone: the same row, the same cursor, whatever it is.
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _page(rows: Sequence[Any], limit: int, sort_key: Callable[[Any], list[Any]]) -> Page:
    """The first ``limit`` of ``rows`` (read one more than a page), with the next cursor."""
    if len(rows) <= limit:
        return Page(list(rows), None)
    rows = rows[:limit]
    next_cursor = encode_cursor(sort_key(rows[-1]))
    if _cursor_scope.get() is None:
        link_next(next_cursor)
    return Page(list(rows), next_cursor)


def encode_cursor(key: Sequence[Any]) -> str:
    """A cursor for the row whose sort key is ``key``, signed and bound to this endpoint."""
    return _cursor_serializer().dumps([_encode_value(value) for value in key])


def decode_cursor(cursor: str, length: int) -> list[Any]:
    """The sort key in ``cursor``; :class:`InvalidCursor` if altered or from another listing."""
    try:
        key = [_decode_value(value) for value in _cursor_serializer().loads(cursor)]
    except (BadSignature, ValueError, TypeError, KeyError):
        raise InvalidCursor(
            "the cursor was altered, expired or belongs to another listing; start again without it"
        ) from None
    if len(key) != length:
        raise InvalidCursor("the cursor belongs to another listing; start again without it")
    return key


def _after(columns: Sequence[Any], bounds: Sequence[Any], descending: bool) -> Any:
    # A row comparison, (a, b) < (x, y): PostgreSQL (and SQLite) use it as an index bound on
    # (a, b). The equivalent "a < x OR (a = x AND b < y)" is only a filter: a deep page would
    # scan and discard every row before it.
    if len(columns) == 1:
        return columns[0] < bounds[0] if descending else columns[0] > bounds[0]
    row, bound = tuple_(*columns), tuple_(*bounds)
    return row < bound if descending else row > bound


def _cursor_serializer() -> URLSafeSerializer:
    from flask import current_app

    listing = _cursor_scope.get() or request.endpoint
    return URLSafeSerializer(current_app.secret_key, salt=f"lapak.cursor:{listing}")


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        ((tag, text),) = value.items()
        decoders = {
            "t": datetime.fromisoformat,
            "d": Decimal,
            "u": uuid.UUID,
            "b": base64.b64decode,
        }
        return decoders[tag](text)
    return value


def link_next(next_cursor: str) -> None:
    """Add the ``Link: <...>; rel="next"`` header for ``next_cursor`` to this response."""
    query = request.args.copy()
    query["cursor"] = next_cursor  # replaces any old cursor, keeps repeated filters
    url = f"{request.base_url}?{urlencode(list(query.items(multi=True)))}"

    @after_this_request
    def _add_link(response: Response) -> Response:
        response.headers.add("Link", f'<{url}>; rel="next"')
        return response
