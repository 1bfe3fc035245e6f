"""Who is calling: the principal of a request and the ``requires`` decorator.

The core knows nothing about tokens. A module (``auth``) plugs in the function that turns a
request into a :class:`Principal` with ``hooks.authenticator(...)``; every module then guards
its views with ``@requires("admin")`` (any of the named roles) or ``@requires()`` (anyone
logged in). With no authenticator loaded, every guarded view answers 401.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, g

from app.errors import PermissionDenied, Unauthenticated
from app.registry import ApiScope


class ScopeMissing(PermissionDenied):
    code = "scope-missing"


F = TypeVar("F", bound=Callable[..., Any])
BEARER_SCHEME = "bearerAuth"
#: The OpenAPI security scheme of signed API-key requests (X-API-Key, X-Timestamp, X-Signature).
API_KEY_SCHEME = "apiKeySignature"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of the current request."""

    user_id: int
    user_uuid: uuid.UUID
    email: str
    role: str
    session_id: uuid.UUID | None = None
    # Set when the caller is a program signing with an API key rather than a person: the key's
    # public id and the scopes it was given. A person's principal has no scopes to check.
    api_key_id: str | None = None
    scopes: frozenset[str] | None = None

    def has_role(self, *roles: str) -> bool:
        return self.role in roles

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    def may_use(self, scope: str | None) -> bool:
        """Whether a view needing ``scope`` is open to this caller. People are limited by their
        role only; an API key reaches only the views that name one of its scopes."""
        if not self.is_api_key:
            return True
        return scope is not None and scope in (self.scopes or ())


Authenticator = Callable[[], Principal]


def authenticate() -> Principal:
    """The caller of this request (authenticated once, then remembered for the request)."""
    principal = g.get("lapak_principal")
    if principal is None:
        authenticator: Authenticator | None = current_app.extensions[
            "lapak.registry"
        ].wiring.authenticator
        if authenticator is None:
            raise Unauthenticated("no authentication module is loaded (enable the auth module)")
        principal = authenticator()
        g.lapak_principal = principal
    return principal


def current_principal() -> Principal | None:
    """The principal if this request has already been authenticated, else None."""
    return g.get("lapak_principal")


def scope_catalogue() -> Mapping[str, ApiScope]:
    """Every API-key scope the loaded modules declared (``hooks.scope``), by name."""
    return current_app.extensions["lapak.registry"].wiring.scopes


def browser_allowed() -> bool:
    """Whether the view being authenticated accepts a browser's session cookie
    (``@requires(..., browser=True)``): the authenticator reads the cookie only then, so the
    rest of the API stays closed to cross-site requests riding on a cookie."""
    return bool(g.get("lapak_browser", False))


def requires(*roles: str, scope: str | None = None, browser: bool = False) -> Callable[[F], F]:
    """Let the view run only for an authenticated caller with one of ``roles`` (any if none).

    ``scope`` (``"orders:read"``...) opens the view to API keys holding that scope; a view
    without one is for people only. ``browser`` lets a logged-in browser in with its session
    cookie (web screens, the event stream); the authenticator then asks state-changing requests
    for the CSRF token. 401 without valid credentials, 403 with the wrong role or a key without
    the scope. Documents security and those responses in the OpenAPI description.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if browser:
                g.lapak_browser = True
            principal = authenticate()
            if roles and not principal.has_role(*roles):
                raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
            if not principal.may_use(scope):
                if scope is None:
                    raise ScopeMissing("this endpoint is not open to API keys; log in instead")
                raise ScopeMissing(f"this API key lacks the scope {scope}")
            return view(*args, **kwargs)

        guarded._lapak_scope = scope  # type: ignore[attr-defined]

        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        manual = apidoc.setdefault("manual_doc", {})
        manual["security"] = [{BEARER_SCHEME: []}]
        if scope is not None:
            manual["security"].append({API_KEY_SCHEME: []})
        responses = manual.setdefault("responses", {})
        responses.setdefault(401, {"description": "Missing, invalid or revoked credentials"})
        needs = [f"the role {' or '.join(roles)}"] if roles else []
        if scope is not None:
            manual["x-lapak-scope"] = scope
            needs.append(f"(for an API key) the scope {scope}")
        refusal = f"Needs {' and '.join(needs)}" if needs else "Not for API keys: log in"
        if scope is None and roles:
            refusal += "; not for API keys"
        responses.setdefault(403, {"description": refusal})
        guarded._apidoc = apidoc  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate
