"""Running one GraphQL request for an authenticated caller, and what its answer says.

The schema runs on an event loop of its own for the request (DataLoaders batch on it), in the
request's thread, on the request's session: inside the view's ``read_only`` it reads from a
caught-up replica. The answer is the GraphQL response (``data`` and ``errors``):

* errors of the query itself (syntax, validation, a limit, an argument REST would refuse, an
  object that is not there or not yours) are GraphQL errors; those raised by a service keep
  its problem code in ``extensions.code`` (``not-found``, ``validation-failed`` with
  ``extensions.errors``, ``invalid-cursor``, ``forbidden``...); so is whatever failed before
  any resolver ran (nothing was read: the document tripped a validation rule);
* a mutation or a subscription is refused as such (``extensions.code`` ``read-only``);
* anything else raised by a resolver (a database or replica failure, a bug, a service
  unavailable) is raised: the view's ``read_only`` retries a failed replica read on the
  primary, and the app answers the rest with its problem+json (503 with ``Retry-After``,
  500), as every endpoint does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.errors import DomainError, Unauthenticated
from app.http import field_errors, status_of
from app.security import Principal

from .loaders import Context
from .schema import schema

log = logging.getLogger(__name__)

READ_ONLY = (
    "Lapak's GraphQL API is read-only: it has no mutations or subscriptions. "
    "Change data through the REST API (/api/v1/docs)."
)


def execute(
    actor: Principal,
    query: str,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """The GraphQL response to ``query`` as ``actor`` asks it."""
    try:
        result = asyncio.run(_execute(actor, query, variables, operation_name))
    except InvalidOperationTypeError:
        return {"errors": [{"message": READ_ONLY, "extensions": {"code": "read-only"}}]}
    except CannotGetOperationTypeError:
        if operation_name is None:
            message = "the document holds no operation to run"
        else:
            message = f"the document has no operation named {operation_name!r}"
        return {"errors": [{"message": message}]}
    answer: dict[str, Any] = {}
    if result.errors:
        answer["errors"] = [_formatted(error) for error in result.errors]
    if result.data is not None:
        answer["data"] = result.data
    return answer


async def _execute(
    actor: Principal,
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> Any:
    return await schema.execute(
        query,
        variable_values=dict(variables) if variables is not None else None,
        context_value=Context.for_actor(actor),
        operation_name=operation_name,
        allowed_operation_types=(OperationType.QUERY,),
    )


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """One error of the answer; raises what is not the query's fault."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return error.formatted
    if not isinstance(original, DomainError):
        if error.path is not None:
            raise original  # a resolver's: the database, a replica, a bug reading the data
        # Raised before any resolver ran, by a validation rule or an extension given this
        # document (a library's bug tripped by the query): nothing was read, so it is the
        # query's error; logged, as it should not happen.
        log.warning("a GraphQL document failed outside the resolvers", exc_info=original)
        return error.formatted
    if isinstance(original, Unauthenticated) or status_of(original) >= 500:
        raise original  # the app's problem+json, with its headers (Retry-After)
    formatted = dict(error.formatted)
    extensions: dict[str, Any] = {"code": original.code}
    if original.errors:
        extensions["errors"] = field_errors(original.errors)
    formatted["extensions"] = extensions
    return formatted
