"""What crosses the HTTP boundary of ``POST /api/v1/graphql``: a GraphQL-over-HTTP request
(``query``, ``variables``, ``operationName``) and the GraphQL response (``data``, ``errors``)."""

from __future__ import annotations

import marshmallow as ma

EXAMPLE_QUERY = """query Orders($first: Int) {
  orders(first: $first, filter: {state: "sale"}) {
    items { id number amount_total payment_state lines { name quantity price_total } }
    next_cursor
  }
}"""


class GraphQLRequestSchema(ma.Schema):
    query = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1),
        metadata={"description": "The GraphQL document (queries only)", "example": EXAMPLE_QUERY},
    )
    variables = ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=None,
        allow_none=True,
        metadata={"description": "Values of the document's variables", "example": {"first": 20}},
    )
    operation_name = ma.fields.String(
        data_key="operationName",
        load_default=None,
        allow_none=True,
        metadata={"description": "Which operation of the document to run, if it has several"},
    )
    extensions = ma.fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={"description": "Accepted for clients that send it; not used"},
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
            "validation-failed with errors, invalid-cursor; or read-only, query-too-costly)"
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
