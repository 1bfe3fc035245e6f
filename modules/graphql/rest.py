"""What the REST endpoints decide, reused by the GraphQL fields that read the same data.

Arguments are read by the REST endpoint's own query schema (:func:`read_arguments`), so a
value REST refuses is refused here with the same message, named as GraphQL names it.

An API key calls ``POST /graphql`` with ``graphql:read``; each field then asks for the scope of
the REST endpoint it answers for (read from the view by :func:`scope_of`, checked by
:func:`require_scope`): a key reads through GraphQL only what its scopes let it read over REST
(``orders:read`` for orders and invoices, ``payments:read`` for payments and transactions...).
People are limited by their role only, as everywhere (``Principal.may_use``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma

from app.errors import Invalid
from app.http import field_errors
from app.security import Principal, ScopeMissing

#: REST's argument names as GraphQL calls them, for the messages of a refusal.
ARGUMENT_NAMES = {"limit": "first", "cursor": "after"}


def scope_of(view: Callable[..., Any]) -> str:
    """The API-key scope a REST view guarded by ``app.security.requires`` asks for."""
    scope = getattr(view, "_lapak_scope", None)
    if scope is None:
        raise LookupError(f"{view.__qualname__} is not open to API keys")
    return scope


def require_scope(actor: Principal, scope: str) -> None:
    """Refuses (``scope-missing``) an API key without ``scope``, as ``requires`` does."""
    if not actor.may_use(scope):
        raise ScopeMissing(f"this API key lacks the scope {scope}")


def read_arguments(schema: ma.Schema, raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (REST's names; a value left out or null takes REST's default) read by a REST
    endpoint's query ``schema``; ``validation-failed`` naming GraphQL's arguments if refused."""
    try:
        return schema.load({name: value for name, value in raw.items() if value is not None})
    except ma.ValidationError as error:
        messages = field_errors(error.messages)
        raise Invalid(
            "one or more arguments are invalid; see errors",
            errors={ARGUMENT_NAMES.get(name, name): text for name, text in messages.items()},
        ) from None
