"""``/api/v1/auth``: login, logout, the current session, activation, revocation, API keys."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.http import NO_STORE, Page, page_schema
from app.security import current_principal, requires
from modules.user.services import activate

from . import api_keys, services
from .schemas import (
    ActivatedSchema,
    ActivateSchema,
    ApiKeyCreateSchema,
    ApiKeyListArgs,
    ApiKeyRollSchema,
    ApiKeySchema,
    IssuedApiKeySchema,
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


# --- API keys (people only: a key cannot mint or roll keys) -----------------------------------


def _caller() -> Any:
    return current_principal()


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @requires("seller", "admin")
    @blp.arguments(
        ApiKeyCreateSchema,
        example={"name": "Shop sync", "scopes": ["orders:read", "payments:read"]},
    )
    @blp.response(201, IssuedApiKeySchema)
    @blp.alt_response(422, description="An unknown scope, one the role may not have, a past expiry")
    def post(self, body: dict[str, Any]) -> tuple[api_keys.IssuedKey, int, dict[str, str]]:
        """Create an API key for yourself; its secret is in this answer and never again."""
        issued = api_keys.create_key(_caller(), **body)
        return issued, 201, NO_STORE

    @requires("seller", "admin")
    @blp.arguments(ApiKeyListArgs, location="query")
    @blp.response(200, page_schema(ApiKeySchema))
    def get(self, args: dict[str, Any]) -> Page:
        """Your API keys, newest first (an admin may ask for another user's with ?owner=)."""
        return api_keys.list_keys(
            _caller(), args["owner"], limit=args["limit"], cursor=args["cursor"]
        )


@blp.route("/api-keys/<string:key_id>")
class OneApiKey(MethodView):
    @requires("seller", "admin")
    @blp.response(200, ApiKeySchema)
    @blp.alt_response(404, description="No such key of yours")
    def get(self, key_id: str) -> Any:
        """One of your API keys (an admin: anyone's), without its secret."""
        return api_keys.get_key(_caller(), key_id)


@blp.route("/api-keys/<string:key_id>/revoke")
class RevokeApiKey(MethodView):
    @requires("seller", "admin")
    @blp.response(200, ApiKeySchema)
    @blp.alt_response(404, description="No such key of yours")
    def post(self, key_id: str) -> Any:
        """Revoke a key now (its owner, or an admin); both its secrets stop verifying."""
        return api_keys.revoke_key(_caller(), key_id)


@blp.route("/api-keys/<string:key_id>/roll")
class RollApiKey(MethodView):
    @requires("seller", "admin")
    @blp.arguments(ApiKeyRollSchema, example={"grace_hours": 24})
    @blp.response(200, IssuedApiKeySchema)
    @blp.alt_response(404, description="No such key of yours (only its owner rolls a key)")
    @blp.alt_response(409, description="The key is revoked or expired")
    def post(
        self, body: dict[str, Any], key_id: str
    ) -> tuple[api_keys.IssuedKey, int, dict[str, str]]:
        """A new secret for your key (in this answer only); the old one verifies during the
        grace period, then stops."""
        settings = services.runtime().settings
        hours = body["grace_hours"]
        if hours is None:
            hours = settings.api_key_roll_grace_hours
        issued = api_keys.roll_key(_caller(), key_id, hours, settings.api_key_max_grace)
        return issued, 200, NO_STORE
