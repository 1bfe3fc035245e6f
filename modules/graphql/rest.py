"""What the REST endpoints decide, reused by the GraphQL fields that read the same data.

An API key calls ``POST /graphql`` with ``graphql:read``; each field then asks for the scope of
the REST endpoint it answers for (read from the view by :func:`scope_of`, checked by
:func:`require_scope`): a key reads through GraphQL only what its scopes let it read over REST
(``orders:read`` for orders and invoices, ``payments:read`` for payments and transactions...).
People are limited by their role only, as everywhere (``Principal.may_use``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.security import Principal, ScopeMissing


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
