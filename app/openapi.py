"""The OpenAPI document tells the truth: what each operation can answer, and how to chain them.

flask-smorest builds the document from the views' decorators; the apispec plugins here complete
it by the conventions of this API, once, instead of a decorator per view:

* :class:`ErrorResponsesPlugin`: each operation's error statuses (a path id can be 404, a JSON
  body 400/413/415/422, a cursor 400, a bearer token 401, a database down 503), every one as
  ``application/problem+json``, with ``WWW-Authenticate`` or ``Retry-After`` where they come.
* :class:`StorableTextPlugin`: request strings state the text the database can store.
* :class:`SchemaKeywordsPlugin`: a schema's whole-body rules (``Meta.openapi``).

Views add links between operations with :func:`response_links` and :func:`link`, and mark the
few that need no dependency with :func:`needs_no_dependency`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from apispec import APISpec, BasePlugin
from flask_smorest import Blueprint

from app.http import PROBLEM_MIMETYPE

#: Marks an operation that reads no database, queue or upstream (no 503): ``@needs_no_dependency``.
NO_DEPENDENCY = "x-lapak-needs-no-dependency"


def needs_no_dependency(view: Any) -> Any:
    """Document that this view answers without any dependency (so never 503 for one)."""
    apidoc = getattr(view, "_apidoc", {})
    apidoc.setdefault("manual_doc", {})[NO_DEPENDENCY] = True
    view._apidoc = apidoc
    return view


#: Headers that come with some error statuses (none is promised on every such answer).
ERROR_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with (Bearer)",
            "schema": {"type": "string"},
        }
    },
    **{
        status: {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
        for status in (429, 503)
    },
}


class _OperationPlugin(BasePlugin):
    """A plugin that completes each operation of the document in :meth:`_declare`."""

    spec: APISpec

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            if isinstance(operation, dict):
                self._declare(path or "", operation)

    def _declare(self, path: str, operation: dict[str, Any]) -> None:
        raise NotImplementedError


class ErrorResponsesPlugin(_OperationPlugin):
    """Declare, for every operation, the error statuses the conventions of this API give it.

    One pass instead of a decorator per view: a path parameter can be 404, a JSON body can be
    malformed (400), too large (413), of the wrong media type (415) or invalid (422), a cursor
    can be bad (400), a bearer token missing (401), and a database down (503). Statuses a
    view declares itself (its own description or a Problem subclass with its extensions) are
    kept; every error response is sent, and so declared, as ``application/problem+json``.
    """

    def _declare(self, path: str, operation: dict[str, Any]) -> None:
        responses = operation.setdefault("responses", {})
        for status, description in self._statuses(path, operation):
            responses.setdefault(status, {"description": description})
        for status in list(responses):
            if str(status) == "default" or int(status) >= 400:
                responses[status] = _problem_response(int(status), responses[status])
                for name, header in ERROR_HEADERS.get(int(status), {}).items():
                    responses[status].setdefault("headers", {}).setdefault(name, header)

    @staticmethod
    def _statuses(path: str, operation: dict[str, Any]) -> list[tuple[int, str]]:
        query = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
        body = operation.get("requestBody", {}).get("content", {})
        statuses: list[tuple[int, str]] = []
        if "{" in path:
            statuses.append((404, "Nothing with this id (or not visible to the caller)"))
        if "cursor" in query:
            statuses.append((400, "The cursor was altered, expired or is from another listing"))
        if "application/json" in body:
            statuses += [
                (400, "The body is not well-formed JSON, or too deep"),
                (415, "The body is not sent as Content-Type: application/json"),
            ]
        if body:
            statuses.append((413, "The body is larger than the limit"))
        if body or query:
            statuses.append((422, "The input is not valid; errors names each field"))
        if operation.get("security"):
            statuses.append((401, "Missing, invalid, expired or revoked credentials"))
        if not operation.pop(NO_DEPENDENCY, False):
            statuses.append((503, "A dependency (the database, Redis) is down; see Retry-After"))
        statuses.append((500, "An unexpected error; quote request_id when reporting it"))
        return statuses


#: What a request string may hold: no NUL, no other C0 control but tab and line breaks (the
#: database cannot store NUL; the others break CSV exports and logs). Declared on every request
#: string that has no stricter rule, so a client (or a fuzzer) knows before the server says 422.
STORABLE_TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F]*$"


class StorableTextPlugin(_OperationPlugin):
    """Declare :data:`STORABLE_TEXT_PATTERN` on the strings of request bodies and queries."""

    def _declare(self, path: str, operation: dict[str, Any]) -> None:
        for parameter in operation.get("parameters", []):
            if isinstance(parameter, dict) and parameter.get("in") == "query":
                _storable_strings(parameter.get("schema", {}), self.spec, set())
        for media in operation.get("requestBody", {}).get("content", {}).values():
            _storable_strings(media.get("schema", {}), self.spec, set())


def _storable_strings(schema: Any, spec: APISpec, seen: set[str]) -> None:
    if not isinstance(schema, dict):
        return
    reference = schema.get("$ref", "")
    if reference.startswith("#/components/schemas/"):
        name = reference.rsplit("/", 1)[1]
        if name not in seen:  # request schemas only: no response schema is a request body
            seen.add(name)
            _storable_strings(spec.components.schemas.get(name), spec, seen)
        return
    types = schema.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    stricter = {"pattern", "enum", "const"} & schema.keys() or schema.get("format") not in (
        None,
        "password",
    )
    if is_string and not stricter:
        schema["pattern"] = STORABLE_TEXT_PATTERN
    for key in ("properties", "patternProperties"):
        for inner in (schema.get(key) or {}).values():
            _storable_strings(inner, spec, seen)
    for key in ("items", "additionalProperties"):
        _storable_strings(schema.get(key), spec, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for inner in schema.get(key) or []:
            _storable_strings(inner, spec, seen)


class SchemaKeywordsPlugin(BasePlugin):
    """Add a schema's ``Meta.openapi`` keywords to its component: the rules a marshmallow
    ``validates_schema`` checks that no field states (``{"minProperties": 1}``)."""

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict | None:
        schema = kwargs.get("schema")
        meta = getattr(schema, "Meta", None)
        return dict(getattr(meta, "openapi", None) or {}) or None


def _problem_response(status: int, response: Any) -> dict[str, Any]:
    """``response`` (a description, a flask-smorest reference or a dict) as problem+json."""
    if isinstance(response, str):  # a lazily registered flask-smorest response, by name
        response = {"description": HTTPStatus(status).phrase}
    content = response.get("content") or {}
    schema = next(
        (media["schema"] for media in content.values() if "schema" in media),
        {"$ref": "#/components/schemas/Problem"},
    )
    examples = {
        key: value
        for media in content.values()
        for key, value in media.items()
        if key in ("example", "examples")
    }
    return {**response, "content": {PROBLEM_MIMETYPE: {"schema": schema, **examples}}}


def link(path: str, method: str, description: str, **values: Any) -> dict[str, Any]:
    """An OpenAPI link to the operation ``method path`` (the full path, ``/api/v1/...``).

    ``values`` name the target's parameters (``order_id="$response.body#/order/id"``);
    ``request_body=`` gives (part of) its body, runtime expressions allowed inside.
    """
    pointer = path.replace("~", "~0").replace("/", "~1")
    target: dict[str, Any] = {
        "operationRef": f"#/paths/{pointer}/{method.lower()}",
        "description": description,
    }
    body = values.pop("request_body", None)
    if values:
        target["parameters"] = values
    if body is not None:
        target["requestBody"] = body
    return target


def response_links(blp: Blueprint, status: int, **links: dict[str, Any]) -> Any:
    """Decorator: document ``links`` (made with :func:`link`) on the ``status`` response."""
    return blp.doc(responses={status: {"links": links}})


def document_plugins() -> list[BasePlugin]:
    """The plugins that complete the document, for :func:`app.http.init_app`."""
    return [ErrorResponsesPlugin(), StorableTextPlugin(), SchemaKeywordsPlugin()]
