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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, g

from app.errors import PermissionDenied, Unauthenticated

F = TypeVar("F", bound=Callable[..., Any])
BEARER_SCHEME = "bearerAuth"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of the current request."""

    user_id: int
    user_uuid: uuid.UUID
    email: str
    role: str
    session_id: uuid.UUID | None = None

    def has_role(self, *roles: str) -> bool:
        return self.role in roles


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


def requires(*roles: str) -> Callable[[F], F]:
    """Let the view run only for an authenticated caller with one of ``roles`` (any if none).

    401 without valid credentials, 403 with the wrong role. Documents bearer security and
    those responses in the OpenAPI description of the view.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate()
            if roles and not principal.has_role(*roles):
                raise PermissionDenied(f"this needs the role {' or '.join(roles)}")
            return view(*args, **kwargs)

        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        manual = apidoc.setdefault("manual_doc", {})
        manual["security"] = [{BEARER_SCHEME: []}]
        responses = manual.setdefault("responses", {})
        responses.setdefault(401, {"description": "Missing, invalid or revoked credentials"})
        if roles:
            responses.setdefault(403, {"description": f"Needs the role {' or '.join(roles)}"})
        guarded._apidoc = apidoc  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate
