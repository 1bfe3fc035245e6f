"""The user module's web screens, for admins: users (list, create, deactivate, activate) and CSV
imports (upload, a live progress page, the failed rows as a table and as a CSV file).

Each view reads its input with the API's schema, calls the service the REST endpoint calls and
shows what that endpoint answers (an import's figures are ``ImportJobSchema``'s), so a page and
the API cannot disagree. A refusal a person can fix (a wrong field, a taken email, the last
admin, a file that cannot be imported) comes back on the page saying why, and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from app.db import read_only
from app.errors import BadRequest, DomainError, Invalid, PayloadTooLarge
from app.fields import UNSTORABLE_TEXT, UNSTORABLE_TEXT_MESSAGE
from app.http import PageArgs, cursor_scope, status_of
from app.screens import first_page_url, load_form, next_page_url
from app.security import authenticate, requires

from . import imports, services, transfers
from .csvfile import ENCODINGS
from .importer import import_settings
from .models import FINISHED_STATUSES, IMPORT_MODES, ROLES
from .passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .schemas import (
    ImportJobSchema,
    ImportOptionsSchema,
    ImportRowErrorSchema,
    UserCreateSchema,
    UserQuerySchema,
)

screens = Blueprint(
    "user_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: The user list's query, kept by its page links and by the actions taken from it.
LIST_ARGS = ("email_prefix", "role", "active", "limit", "cursor")
PAGE_SIZES = (20, 50, 100, 200)
IMPORTS_PAGE = 20
#: Failed rows shown on an import's page; the rest are a link (and the CSV) away.
FAILED_ROWS_SHOWN = 50
STATUS_TEXT = {
    "queued": "Waiting for a worker",
    "running": "Running",
    "succeeded": "Finished",
    "succeeded_with_errors": "Finished, with failed rows",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
#: How the fields are named in messages (the API's names otherwise).
LABELS = {
    "email_prefix": "Email starts with",
    "active": "Status",
    "limit": "Per page",
    "cursor": "Page",
    "dry_run": "Dry run",
    "default_role": "Role of users whose role is blank",
}

_CREATE = UserCreateSchema()
_QUERY = UserQuerySchema()
_OPTIONS = ImportOptionsSchema()
_PAGE = PageArgs()
_JOB = ImportJobSchema()
_ROW_ERRORS = ImportRowErrorSchema(many=True)


@screens.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "roles": ROLES,
        "status_text": STATUS_TEXT,
        "finished_statuses": FINISHED_STATUSES,
        "size": size,
        "password_lengths": (MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH),
    }


def size(count: int) -> str:
    """A number of bytes as people read it: whole GiB, MiB or KiB when it is one, else bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift:,} {unit}"
    return f"{count:,} bytes"


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# --- users -----------------------------------------------------------------------------------


@screens.get("/")
@requires("admin", browser=True)
@read_only()
def users() -> tuple[str, int]:
    """Users, oldest first, filtered and paged as ``GET /api/v1/users`` (from a replica)."""
    query = {name: request.args.get(name, "") for name in LIST_ARGS}
    try:
        args = load_form(_QUERY, request.args, LABELS)
        page = services.list_users(
            services.UserFilter(
                role=args["role"], active=args["active"], email_prefix=args["email_prefix"]
            ),
            limit=args["limit"],
            cursor=args["cursor"],
        )
    except (Invalid, BadRequest) as refused:  # a field, or a cursor altered or from elsewhere
        return _users_page(query, None, refused), status_of(refused)
    return _users_page(query, page, None), 200


def _users_page(query: dict[str, str], page: Any, problem: DomainError | None) -> str:
    return render_template(
        "user/users.html",
        query=query,
        page=page,
        problem=problem,
        page_sizes=PAGE_SIZES,
        first_url=first_page_url(),
        next_url=next_page_url(page.next_cursor) if page is not None else None,
    )


@screens.route("/new", methods=["GET", "POST"])
@requires("admin", browser=True)
def new_user() -> Response | tuple[str, int]:
    """Create a user with ``POST /api/v1/users``'s schema and service."""
    if request.method == "GET":
        return render_template("user/new.html", values={}, problem=None), 200
    # The password as typed: the form reader trims fields, and spaces may be part of it.
    password = request.form.get("password", "")
    try:
        body = load_form(_CREATE, request.form, LABELS)
        user = services.create_user(
            body["email"],
            name=body["name"],
            role=body["role"],
            phone=body["phone"],
            password=password or None,
        )
    except (Invalid, services.EmailTaken) as refused:
        values = {name: request.form.get(name, "") for name in ("email", "name", "role", "phone")}
        return render_template("user/new.html", values=values, problem=refused), status_of(refused)
    how = "can log in now" if user.has_password else "need an activation token to log in"
    flash(f"{user.email} was created as {user.role}; they {how}.", "success")
    return redirect(url_for(".users", email_prefix=user.email), 303)


@screens.post("/<uuid:user_id>/deactivate")
@requires("admin", browser=True)
def deactivate(user_id: uuid.UUID) -> Response:
    """Deactivate a user (``POST /api/v1/users/{id}/deactivate``)."""
    try:
        user = services.deactivate_user(user_id)
    except services.LastAdmin as refused:
        flash(f"Not deactivated: {refused.detail}.", "error")
    else:
        flash(f"{user.email} was deactivated: they can no longer log in.", "success")
    return redirect(_back_to_list(), 303)


@screens.post("/<uuid:user_id>/activate")
@requires("admin", browser=True)
def activate(user_id: uuid.UUID) -> Response:
    """Activate a user again (``PATCH /api/v1/users/{id}`` with ``active: true``)."""
    user = services.update_user(user_id, {"active": True})
    flash(f"{user.email} is active again.", "success")
    return redirect(_back_to_list(), 303)


def _back_to_list() -> str:
    """The list as the action's form saw it (its filters and page, sent as hidden fields)."""
    kept = {name: value for name in LIST_ARGS if (value := request.form.get(name, ""))}
    return f"{url_for('.users')}?{urlencode(kept)}" if kept else url_for(".users")


# --- imports ---------------------------------------------------------------------------------


@screens.get("/imports")
@requires("admin", browser=True)
@read_only()
def imports_page() -> tuple[str, int]:
    """The upload form and the imports, newest first (``GET /api/v1/users/imports``)."""
    try:
        args = load_form(_PAGE, request.args, LABELS)
        return _imports_page({}, None, cursor=args["cursor"]), 200
    except (Invalid, BadRequest) as refused:
        return _imports_page({}, refused, cursor=None), status_of(refused)


def _imports_page(
    values: Mapping[str, str], problem: DomainError | None, cursor: str | None
) -> str:
    page = imports.list_imports(limit=IMPORTS_PAGE, cursor=cursor)
    return render_template(
        "user/imports.html",
        jobs=page.items,
        next_url=next_page_url(page.next_cursor),
        first_url=first_page_url() if cursor else None,
        **_upload_form(values, problem),
    )


def _upload_form(values: Mapping[str, str], problem: DomainError | None) -> dict[str, Any]:
    settings = import_settings()
    return {
        "values": values,
        "problem": problem,
        "modes": IMPORT_MODES,
        "encodings": ENCODINGS,
        "max_bytes": settings.max_bytes,
        "max_rows": settings.max_rows,
    }


@screens.post("/imports")
@requires("admin", browser=True)
def upload() -> Response | tuple[str, int]:
    """Start an import as ``POST /api/v1/users/imports`` does (the same limits and checks; an
    RQ job, or a thread on the embedded default), then show its progress.

    The page's script sends the file with the CSRF token in a header: without one, the token
    would be looked for in the form, whose parsing stops at the app's body limit (1 MiB), not
    at the import's, which only an admin's request may raise (``allow_upload_body``).
    """
    try:
        transfers.allow_upload_body()
        options = load_form(_OPTIONS, request.form, LABELS)
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise Invalid(errors={"file": ["choose the CSV file to import"]})
        if UNSTORABLE_TEXT.search(upload.filename):
            raise Invalid(errors={"file": [f"the file's name {UNSTORABLE_TEXT_MESSAGE}"]})
        job = imports.create_import(
            upload.stream,
            upload.filename,
            imports.ImportOptions(**options),
            created_by_id=authenticate().user_id,
        )
    except RequestEntityTooLarge:  # a body without a length, cut at the limit
        return _upload_refused(imports.ImportTooLarge(transfers.too_large_message()))
    except (Invalid, PayloadTooLarge) as refused:
        return _upload_refused(refused)
    target = url_for(".import_job", job_id=job.uuid)
    if _is_htmx():
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target, 303)


def _upload_refused(problem: DomainError) -> tuple[str, int]:
    try:
        values = {name: request.form.get(name, "") for name in _OPTIONS.fields}
    except RequestEntityTooLarge:  # a body over the limit is not read: its options are lost
        values = {}
    if _is_htmx():
        # The form again, in place: htmx swaps only 2xx answers.
        return render_template("user/_upload.html", **_upload_form(values, problem)), 200
    return _imports_page(values, problem, cursor=None), status_of(problem)


@screens.get("/imports/template.csv")
@requires("admin", browser=True)
def import_template() -> Response:
    """The header row an import file starts with."""
    return transfers.template_response()


@screens.get("/imports/<uuid:job_id>")
@requires("admin", browser=True)
def import_job(job_id: uuid.UUID) -> str:
    """An import's progress page (``GET /api/v1/users/imports/{id}``: from the primary, it
    moves); it asks for :func:`import_progress` every second until the import ends."""
    return render_template("user/import.html", **_progress(job_id))


@screens.get("/imports/<uuid:job_id>/progress")
@requires("admin", browser=True)
def import_progress(job_id: uuid.UUID) -> str:
    """The live part of the progress page; once the import has ended, it stops asking again
    and fills in the page's outcome and actions."""
    return render_template("user/_progress.html", out_of_band=True, **_progress(job_id))


def _progress(job_id: uuid.UUID) -> dict[str, Any]:
    job = _JOB.dump(imports.get_import(job_id))
    finished = job["status"] in FINISHED_STATUSES
    failed_rows, more = [], False
    if finished and job["failed"]:
        with cursor_scope("user.ImportErrors"):  # a first page only: no link to a next one
            page = imports.import_errors(job_id, limit=FAILED_ROWS_SHOWN, cursor=None)
        failed_rows, more = _ROW_ERRORS.dump(page.items), page.next_cursor is not None
    return {
        "job": job,
        "finished": finished,
        "failed_rows": failed_rows,
        "more_failed_rows": more,
        "delimiter_name": DELIMITER_NAMES.get(job["delimiter"], job["delimiter"]),
    }


@screens.get("/imports/<uuid:job_id>/failed")
@requires("admin", browser=True)
def failed_rows(job_id: uuid.UUID) -> tuple[str, int]:
    """Every failed row of an import, paged (``GET /api/v1/users/imports/{id}/errors``)."""
    job = imports.get_import(job_id)
    try:
        args = load_form(_PAGE, request.args, LABELS)
        page = imports.import_errors(job_id, limit=args["limit"], cursor=args["cursor"])
    except (Invalid, BadRequest) as refused:
        shown = render_template("user/failed_rows.html", job=job, rows=[], problem=refused)
        return shown, status_of(refused)
    shown = render_template(
        "user/failed_rows.html",
        job=job,
        rows=_ROW_ERRORS.dump(page.items),
        problem=None,
        next_url=next_page_url(page.next_cursor),
        first_url=first_page_url(),
    )
    return shown, 200


@screens.get("/imports/<uuid:job_id>/failed.csv")
@requires("admin", browser=True)
def failed_rows_csv(job_id: uuid.UUID) -> Response:
    """The failed rows as uploaded plus an ``error`` column (``.../errors?format=csv``)."""
    return transfers.errors_csv_response(job_id)


@screens.post("/imports/<uuid:job_id>/cancel")
@requires("admin", browser=True)
def cancel_import(job_id: uuid.UUID) -> Response:
    """Stop an import after its current chunk (``POST /api/v1/users/imports/{id}/cancel``)."""
    try:
        imports.cancel_import(job_id)
    except imports.ImportFinished as refused:
        flash(f"Nothing to stop: {refused.detail}.", "warning")
    else:
        flash("The import was stopped; the rows already imported stay.", "success")
    return redirect(url_for(".import_job", job_id=job_id), 303)
