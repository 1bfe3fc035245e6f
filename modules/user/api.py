"""``/api/v1/users``: admins manage users; anyone logged in reads ``/me``.

Each view parses, authorises, calls a service and serialises. ``@requires`` sits outermost:
the caller is authenticated on the primary (a revoked session must fail at once, and the
authenticator may record activity), before any input is parsed. Reads then run inside
``@read_only()`` on a caught-up replica.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import Page, ProblemSchema, page_schema
from app.security import authenticate, requires

from . import services
from .models import User
from .schemas import (
    ActivationIssuedSchema,
    UserCreateSchema,
    UserQuerySchema,
    UserSchema,
    UserUpdateSchema,
)

blp = Blueprint(
    "user",
    __name__,
    description="Users and roles: admins list, create, change and deactivate users and issue "
    "activation tokens; every logged-in user can read their own record.",
)

UserPageSchema = page_schema(UserSchema)
NO_STORE = {"Cache-Control": "no-store"}


@blp.route("")
class Users(MethodView):
    @requires("admin")
    @read_only()
    @blp.arguments(UserQuerySchema, location="query")
    @blp.response(200, UserPageSchema)
    def get(self, args: dict[str, Any]) -> Page:
        """List users, oldest first

        Filter by role, active flag and email prefix. Follow ``next_cursor`` (or the ``Link``
        header) for the next page.
        """
        filters = services.UserFilter(
            role=args["role"], active=args["active"], email_prefix=args["email_prefix"]
        )
        return services.list_users(filters, limit=args["limit"], cursor=args["cursor"])

    @requires("admin")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema, headers={"Location": {"description": "The new user's URL"}})
    @blp.alt_response(409, schema=ProblemSchema, description="The email is already registered")
    def post(self, body: dict[str, Any]) -> tuple[User, int, dict[str, str]]:
        """Create a user

        With a ``password`` the user can log in at once; without one, issue an activation
        token (``POST /api/v1/users/{id}/activation``).
        """
        user = services.create_user(
            body["email"],
            name=body["name"],
            role=body["role"],
            phone=body["phone"],
            password=body["password"],
        )
        return user, 201, {"Location": url_for("user.UserById", user_id=user.uuid)}


@blp.route("/me")
class Me(MethodView):
    @requires()
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The logged-in user's own record"""
        return services.get_user_by_id(authenticate().user_id)


@blp.route("/<uuid:user_id>")
class UserById(MethodView):
    @requires("admin")
    @read_only()
    @blp.response(200, UserSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such user")
    def get(self, user_id: uuid.UUID) -> User:
        """Show a user"""
        return services.get_user(user_id)

    @requires("admin")
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such user")
    @blp.alt_response(
        409, schema=ProblemSchema, description="The change would leave no active admin"
    )
    def patch(self, body: dict[str, Any], user_id: uuid.UUID) -> User:
        """Change a user's name, phone, role or active flag

        Setting ``active`` to false deactivates the user like ``POST .../deactivate``.
        """
        return services.update_user(user_id, body)


@blp.route("/<uuid:user_id>/deactivate")
class Deactivation(MethodView):
    @requires("admin")
    @blp.response(200, UserSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such user")
    @blp.alt_response(409, schema=ProblemSchema, description="This is the last active admin")
    def post(self, user_id: uuid.UUID) -> User:
        """Deactivate a user

        The user can no longer log in and their sessions stop working. Deactivating an
        inactive user changes nothing.
        """
        return services.deactivate_user(user_id)


@blp.route("/<uuid:user_id>/activation")
class Activation(MethodView):
    @requires("admin")
    @blp.response(201, ActivationIssuedSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such user")
    @blp.alt_response(
        409, schema=ProblemSchema, description="The user already has a password or is inactive"
    )
    def post(self, user_id: uuid.UUID) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Issue a one-time activation token

        For a user without a password (e.g. imported). The token is shown only in this
        response; it works once, expires, and any token issued earlier stops working.
        """
        token, expires_at = services.issue_activation_token(user_id)
        return {"token": token, "expires_at": expires_at}, 201, NO_STORE
