"""``POST /api/v1/graphql``: read-only GraphQL behind the API's own authentication.

Who may call it is decided before the query is read, as for every endpoint: a bearer token, an
API key holding ``graphql:read``, or a browser's session cookie (the web client); without them
the answer is the usual ``401``/``403`` problem+json (a key needs, field by field, the scope of
the REST endpoint reading the same data as well: see :mod:`.rest`). The query then runs on a
caught-up replica (``read_only``), and its own errors are GraphQL errors in a ``200`` answer.

Only POST: a GET (a query in the URL) is ``405``. Nothing here changes data, but one way in
keeps the query out of URLs, logs and caches, and under the request line's limit.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.security import authenticate, requires

from . import services
from .schemas import GraphQLRequestSchema, GraphQLResponseSchema

SCOPE = "graphql:read"

blp = Blueprint(
    "graphql",
    __name__,
    description="Read-only GraphQL over sale orders, invoices, payments, provider transactions, "
    "seller balances and dashboard figures: the REST API's data and visibility, nested reads "
    "batched. Query errors are GraphQL errors in a 200; credentials are checked as everywhere "
    "(401/403).",
)


@blp.route("")
class GraphQL(MethodView):
    @requires(scope=SCOPE, browser=True)
    @read_only()
    @blp.arguments(GraphQLRequestSchema)
    @blp.response(200, GraphQLResponseSchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Run a GraphQL query

        Queries only (a mutation is refused as a GraphQL error). Limits: 20,000 characters
        (a 422), 2,000 tokens, 5,000 selections with fragments spread in place (and 1,000 pairs
        of fields answering under one name at one place), depth 8, 15
        aliases, pages of 1 to 200 (`first`), and at most 10,000 objects per answer as
        counted before it runs. Introspection is open to any caller who may call this.
        """
        return jsonify(
            services.execute(
                authenticate(), body["query"], body["variables"], body["operation_name"]
            )
        )
