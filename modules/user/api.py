"""``/api/v1/users``: admins manage users; anyone logged in reads ``/me``.

Each view parses, authorises, calls a service and serialises. ``@requires`` sits outermost:
the caller is authenticated on the primary (a revoked session must fail at once, and the
authenticator may record activity), before any input is parsed. Reads then run inside
``@read_only()`` on a caught-up replica.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from flask import Response, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.db import read_only
from app.http import API_PREFIX, NO_STORE, Page, PageArgs, ProblemSchema, page_schema
from app.openapi import link, response_links
from app.security import authenticate, requires

from . import imports, services
from .models import User
from .schemas import (
    ActivationIssuedSchema,
    ErrorsQuerySchema,
    ImportJobSchema,
    ImportOptionsSchema,
    ImportRowErrorSchema,
    ImportUploadSchema,
    UserCreateSchema,
    UserQuerySchema,
    UserSchema,
    UserUpdateSchema,
)
from .transfers import allow_upload_body, errors_csv_response, template_response

blp = Blueprint(
    "user",
    __name__,
    description="Users and roles: admins list, create, change and deactivate users and issue "
    "activation tokens; every logged-in user can read their own record.",
)

UserPageSchema = page_schema(UserSchema)
BASE = f"{API_PREFIX}/users"


def _user_links(id_at: str) -> dict[str, dict[str, Any]]:
    user = f"{BASE}/{{user_id}}"
    return {
        "GetUser": link(user, "get", "The user", user_id=id_at),
        "ChangeUser": link(user, "patch", "Change the user", user_id=id_at),
        "DeactivateUser": link(f"{user}/deactivate", "post", "Deactivate", user_id=id_at),
        "IssueActivation": link(
            f"{user}/activation", "post", "Issue an activation token", user_id=id_at
        ),
    }


def _import_links(id_at: str) -> dict[str, dict[str, Any]]:
    job = f"{BASE}/imports/{{job_id}}"
    return {
        "GetImport": link(job, "get", "The import's progress", job_id=id_at),
        "ImportErrors": link(f"{job}/errors", "get", "Its failed rows", job_id=id_at),
        "CancelImport": link(f"{job}/cancel", "post", "Stop it", job_id=id_at),
    }


@blp.route("")
class Users(MethodView):
    @requires("admin")
    @read_only()
    @blp.arguments(UserQuerySchema, location="query")
    @blp.response(200, UserPageSchema)
    @response_links(blp, 200, **_user_links("$response.body#/items/0/id"))
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
    @blp.arguments(
        UserCreateSchema,
        example={"email": "sari@example.co.id", "name": "Sari Wulandari", "role": "staff",
                 "phone": "0812-3456-789", "password": "kopi tubruk pagi hari"},
    )  # fmt: skip
    @blp.response(201, UserSchema, headers={"Location": {"description": "The new user's URL"}})
    @response_links(blp, 201, **_user_links("$response.body#/id"))
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
    @blp.arguments(UserUpdateSchema, example={"role": "staff", "phone": "+628123456789"})
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
    @response_links(
        blp,
        201,
        Activate=link(
            f"{API_PREFIX}/auth/activate",
            "post",
            "The user chooses a password",
            request_body={"token": "$response.body#/token"},
        ),
    )
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


# --- imports ---------------------------------------------------------------------------------


def _refuse_oversized_uploads(view: Any) -> Any:
    """413 before the body is read: the Content-Length, or a streamed body, over the limit."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        allow_upload_body()
        return view(*args, **kwargs)

    return guarded


@blp.route("/imports")
class Imports(MethodView):
    @requires("admin")
    @read_only()
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(ImportJobSchema))
    @response_links(blp, 200, **_import_links("$response.body#/items/0/id"))
    def get(self, args: dict[str, Any]) -> Page:
        """List imports, newest first"""
        return imports.list_imports(limit=args["limit"], cursor=args["cursor"])

    @requires("admin")
    @_refuse_oversized_uploads
    @blp.arguments(ImportOptionsSchema, location="form")
    @blp.arguments(ImportUploadSchema, location="files")
    @blp.response(202, ImportJobSchema, headers={"Location": {"description": "The job's URL"}})
    @response_links(blp, 202, **_import_links("$response.body#/id"))
    @blp.alt_response(413, schema=ProblemSchema, description="The file is too large")
    @blp.alt_response(422, schema=ProblemSchema, description="Not a CSV file, empty, too long")
    def post(self, options: dict[str, Any], files: dict[str, Any]) -> Any:
        """Upload a CSV file of users to import in the background

        Columns: email (required), name, role, phone, password_hash (an argon2 or bcrypt hash
        from a previous system). Watch the job at the Location URL.
        """
        upload = files["file"]
        job = imports.create_import(
            upload.stream,
            upload.filename or "upload.csv",
            imports.ImportOptions(**options),
            created_by_id=authenticate().user_id,
        )
        return job, 202, {"Location": url_for("user.ImportById", job_id=job.uuid)}


@blp.route("/imports/<uuid:job_id>")
class ImportById(MethodView):
    @requires("admin")
    @blp.response(200, ImportJobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such import")
    def get(self, job_id: uuid.UUID) -> Any:
        """Show an import's progress and counts (read from the primary: it moves)"""
        return imports.get_import(job_id)


@blp.route("/imports/<uuid:job_id>/errors")
class ImportErrors(MethodView):
    @requires("admin")
    @blp.arguments(ErrorsQuerySchema, location="query")
    @blp.response(200, page_schema(ImportRowErrorSchema))
    @blp.doc(
        responses={
            200: {
                "description": "JSON pages; text/csv with ?format=csv or Accept: text/csv",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    )
    def get(self, args: dict[str, Any], job_id: uuid.UUID) -> Any:
        """The rows that failed, as JSON pages or as a CSV file to fix and upload again"""
        wants_csv = args["format"] == "csv" or request.accept_mimetypes.best == "text/csv"
        if not wants_csv:
            return imports.import_errors(job_id, limit=args["limit"], cursor=args["cursor"])
        return errors_csv_response(job_id)


@blp.route("/imports/<uuid:job_id>/cancel")
class ImportCancel(MethodView):
    @requires("admin")
    @blp.response(200, ImportJobSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="The import has already finished")
    def post(self, job_id: uuid.UUID) -> Any:
        """Stop an import after its current chunk (rows already imported stay)"""
        return imports.cancel_import(job_id)


@blp.route("/import-template.csv")
class ImportTemplate(MethodView):
    @requires("admin")
    @blp.response(200, description="The header row of an import file")
    def get(self) -> Response:
        """The CSV header an import file starts with"""
        return template_response()
