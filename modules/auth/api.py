"""``/api/v1/auth``: login, logout, the current session, activation, revocation."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.http import NO_STORE
from app.security import requires
from modules.user.services import activate

from . import services
from .schemas import (
    ActivatedSchema,
    ActivateSchema,
    LoginLockedProblemSchema,
    LoginSchema,
    RevokedSchema,
    SessionSchema,
    TokenSchema,
)

blp = Blueprint("auth", __name__, description="Login, sessions and activation")


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(
        LoginSchema, example={"email": "sari@example.co.id", "password": "kopi tubruk pagi hari"}
    )
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Wrong email or password (the same for unknown emails)")
    @blp.alt_response(
        429, schema=LoginLockedProblemSchema, description="Too many failures; see Retry-After"
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Log in; every other session of this user ends."""
        result = services.login(
            body["email"],
            body["password"],
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
        )
        return (
            {
                "access_token": result.token,
                "token_type": "Bearer",
                "expires_at": result.session.absolute_expires_at,
                "session": result.session,
            },
            200,
            NO_STORE,
        )  # a token: no cache may keep it (RFC 6749 5.1)


@blp.route("/logout")
class Logout(MethodView):
    @requires()
    @blp.response(204)
    def post(self) -> None:
        """End the current session."""
        services.logout()


@blp.route("/session")
class CurrentSession(MethodView):
    @requires()
    @blp.response(200, SessionSchema)
    def get(self) -> Any:
        """The session behind this request's token."""
        return services.current_session()


@blp.route("/activate")
class Activate(MethodView):
    @blp.arguments(ActivateSchema)
    @blp.response(200, ActivatedSchema)
    @blp.alt_response(422, description="Invalid, used or expired token, or a weak password")
    def post(self, body: dict[str, Any]) -> dict[str, str]:
        """Choose the first password with a one-time activation token, then log in."""
        activate(body["token"], body["password"])
        return {"status": "activated"}


@blp.route("/users/<uuid:user_id>/revoke-sessions")
class RevokeSessions(MethodView):
    @requires("admin")
    @blp.response(200, RevokedSchema)
    def post(self, user_id: uuid.UUID) -> dict[str, int]:
        """End every live session of a user."""
        return {"revoked": services.revoke_user_sessions(user_id)}
