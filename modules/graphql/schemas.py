"""What crosses the HTTP boundary of ``POST /api/v1/graphql``: a GraphQL-over-HTTP request
(``query``, ``variables``, ``operationName``) and the GraphQL response (``data``, ``errors``)."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma

from app.openapi import STORABLE_TEXT_PATTERN

from .limits import MAX_QUERY_LENGTH

EXAMPLE_QUERY = """query Orders($first: Int) {
  orders(first: $first, filter: {state: "sale"}) {
    items { id number amount_total payment_state lines { name quantity price_total } }
    next_cursor
  }
}"""


#: A GraphQL name: of a variable, an input object's field, an operation.
NAME_PATTERN = "^[_A-Za-z][_0-9A-Za-z]*$"
_NAME = re.compile(NAME_PATTERN)
#: GraphQL's Int: 32 bits, signed.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_SCALARS: list[dict[str, Any]] = [
    {"type": "string", "pattern": STORABLE_TEXT_PATTERN},
    {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
    {"type": "boolean"},
    {"type": "null"},
]
_VALUES: list[dict[str, Any]] = [
    *_SCALARS,
    {
        "type": "object",
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": {"anyOf": _SCALARS},
    },
    {"type": "array", "items": {"anyOf": _SCALARS}},
]


class Variables(ma.fields.Field):
    """The operation's variables, as this schema's inputs can take them: GraphQL names to text,
    a 32-bit integer, a boolean or null, to an input object of those (``filter``), or to a list
    of them. Anything else (a fraction, deeper nesting, a name GraphQL cannot have) is refused
    with 422 before the query is read, as the OpenAPI document says."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        problems: dict[str, Any] = {}
        if not isinstance(value, dict):
            raise ma.ValidationError("an object of variable names to values")
        for name, inner in value.items():
            if not _NAME.match(name):
                problems[name] = ["not a GraphQL name"]
            elif isinstance(inner, dict):
                nested = {
                    key: ["not a GraphQL name"] if not _NAME.match(key) else [_SCALAR_ONLY]
                    for key, item in inner.items()
                    if not _NAME.match(key) or not _is_scalar(item)
                }
                if nested:
                    problems[name] = nested
            elif isinstance(inner, list):
                if not all(_is_scalar(item) for item in inner):
                    problems[name] = [_SCALAR_ONLY]
            elif not _is_scalar(inner):
                problems[name] = [_SCALAR_ONLY]
        if problems:
            raise ma.ValidationError(problems)
        return value


_SCALAR_ONLY = f"text, an integer from {INT_MIN} to {INT_MAX}, true, false or null"


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    # 3.0 is the integer 3 to JSON Schema, and to GraphQL's Int.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return whole and INT_MIN <= value <= INT_MAX


class GraphQLRequestSchema(ma.Schema):
    query = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_QUERY_LENGTH),
        metadata={
            "description": f"The GraphQL document (queries only): at most {MAX_QUERY_LENGTH:,} "
            "characters, comments and blanks included",
            "example": EXAMPLE_QUERY,
        },
    )
    variables = Variables(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Values of the document's variables",
            "example": {"first": 20},
            "anyOf": [
                {
                    "type": "object",
                    "propertyNames": {"pattern": NAME_PATTERN},
                    "additionalProperties": {"anyOf": _VALUES},
                },
                {"type": "null"},
            ],
        },
    )
    operation_name = ma.fields.String(
        data_key="operationName",
        load_default=None,
        allow_none=True,
        validate=ma.validate.Regexp(NAME_PATTERN, error="not a GraphQL name"),
        metadata={"description": "Which operation of the document to run (default: the first)"},
    )


class GraphQLErrorSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    message = ma.fields.String(required=True)
    locations = ma.fields.List(ma.fields.Dict())
    path = ma.fields.List(ma.fields.Raw())
    extensions = ma.fields.Dict(
        metadata={
            "description": "code: what refused it (a problem code such as not-found, "
            "validation-failed with errors, invalid-cursor, value-not-storable; or read-only, "
            "query-too-complex, query-too-costly)"
        }
    )


class GraphQLResponseSchema(ma.Schema):
    data = ma.fields.Dict(
        allow_none=True,
        metadata={"description": "The answer; absent when the query could not be run"},
    )
    errors = ma.fields.List(
        ma.fields.Nested(GraphQLErrorSchema),
        metadata={"description": "The query's errors (HTTP 200); absent when there were none"},
    )
