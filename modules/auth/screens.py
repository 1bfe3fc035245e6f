"""The Developers screens of the web client for API keys (sellers and admins, their own keys):
list, create, roll and revoke, with the same services as ``/api/v1/auth/api-keys``.

A secret is shown once, in the page that answers the POST creating or rolling the key: it is
never put in the session, a redirect or a URL, and the page is not stored (the shell sends
``no-store``). ``developers.js`` then turns the page's history entry into a plain GET of the
key's page, so a reload shows the key without its secret instead of posting the form again.

Forms are read with the API's own schemas (``app.screens.load_form``). Also the pieces the
webhook screens share (they depend on this module): :func:`form_errors`, :func:`listed`, the
macros of ``auth/_developers.html`` and the static ``developers.css`` and ``developers.js``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from app.errors import Conflict, DomainError, Invalid
from app.http import InvalidCursor, Page
from app.screens import load_form, next_page_url
from app.security import Principal, authenticate, requires, scope_catalogue

from . import api_keys, services
from .models import SIGNATURE_VERSIONS
from .schemas import ApiKeyCreateSchema, ApiKeyRollSchema

screens = Blueprint(
    "auth_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

OWNERS = api_keys.KEY_ROLES
PAGE_SIZE = 25
#: Field -> messages, ``_schema`` for the form as a whole.
Errors = dict[str, list[str]]
WHEN_EMPTY = {"name": "Give the key a name.", "scopes": "Choose at least one scope."}


def form_errors(
    refused: DomainError, form: MultiDict[str, str], when_empty: Mapping[str, str] | None = None
) -> Errors:
    """A refusal (``app.screens.load_form``'s or a service's) as messages per form field; a
    list's item counts as its list, and ``_schema`` is the form's as a whole. ``when_empty``
    words the refusal of a field left blank in ``form`` for a person (the schema's "Missing data
    for required field." is for programs)."""
    found: Errors = {}
    for name, messages in (refused.errors or {}).items():
        texts = [messages] if isinstance(messages, str) else [str(text) for text in messages]
        found.setdefault(str(name).split(".", 1)[0], []).extend(texts)
    if not found:
        found["_schema"] = [refused.detail or refused.title]
    for name, message in (when_empty or {}).items():
        if name in found and not any(value.strip() for value in form.getlist(name)):
            found[name] = [message]
    return found


def utc_field(value: str) -> str:
    """A ``datetime-local`` field's value, read as UTC, in RFC 3339 for the API's schema (the
    schema refuses it with its own message when it is no date)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.replace(tzinfo=UTC).isoformat() if moment.tzinfo is None else moment.isoformat()


# --- pages -----------------------------------------------------------------------------------


@screens.get("/api-keys")
@requires(*OWNERS, browser=True)
def api_keys_page() -> str:
    """Your API keys (newest first) and the form that creates one."""
    return _keys_page(authenticate())


@screens.post("/api-keys")
@requires(*OWNERS, browser=True)
def create_key() -> Response | tuple[str, int]:
    """Create a key; the answer shows its secret, this once."""
    principal = authenticate()
    values = request.form.copy()
    if values.get("expires_at", "").strip():
        values["expires_at"] = utc_field(values["expires_at"].strip())
    try:
        issued = api_keys.create_key(
            principal,
            **load_form(ApiKeyCreateSchema(), values),
            form_nonce=request.form.get("nonce") or None,
        )
    except Invalid as refused:
        errors = form_errors(refused, request.form, WHEN_EMPTY)
        return _keys_page(principal, form=request.form, errors=errors), 422
    except api_keys.ApiKeyFormSent as refused:
        flash(
            f"No second key was created: {refused.detail}. If you did not copy it, roll the key "
            "for a new one.",
            "error",
        )
        return redirect(url_for(".api_key_page", key_id=refused.extra["key_id"]), 303)
    flash(f"API key “{issued.name}” created.", "success")
    return render_template("auth/api_key.html", key=issued.key, issued=issued, **_roll()), 201


@screens.get("/api-keys/<string:key_id>")
@requires(*OWNERS, browser=True)
def api_key_page(key_id: str) -> str:
    """One key (admins: anyone's), with roll and revoke."""
    key = api_keys.get_key(authenticate(), key_id)
    return render_template("auth/api_key.html", key=key, **_roll())


@screens.post("/api-keys/<string:key_id>/roll")
@requires(*OWNERS, browser=True)
def roll_key(key_id: str) -> Response | tuple[str, int]:
    """A new secret for your key, shown this once; the old one verifies during the grace."""
    principal = authenticate()
    settings = services.runtime().settings
    try:
        grace = load_form(ApiKeyRollSchema(), request.form)["grace_hours"]
        issued = api_keys.roll_key(
            principal,
            key_id,
            settings.api_key_roll_grace_hours if grace is None else grace,
            settings.api_key_max_grace,
            # None from a page older than the field: it rolls as before.
            expected_version=request.form.get("version"),
        )
    except Invalid as refused:
        key = api_keys.get_key(principal, key_id)
        page = render_template(
            "auth/api_key.html",
            key=key,
            errors=form_errors(refused, request.form),
            **_roll(request.form.get("grace_hours", "")),
        )
        return page, 422
    except Conflict as refused:
        flash(f"The key was not rolled: {refused.detail or refused.title}.", "error")
        return redirect(url_for(".api_key_page", key_id=key_id), 303)
    flash(f"API key “{issued.name}” rolled: use the new secret below.", "success")
    return render_template("auth/api_key.html", key=issued.key, issued=issued, **_roll()), 200


@screens.post("/api-keys/<string:key_id>/revoke")
@requires(*OWNERS, browser=True)
def revoke_key(key_id: str) -> Response:
    """Revoke a key now (its owner, or an admin)."""
    key = api_keys.revoke_key(authenticate(), key_id)
    flash(f"API key “{key.name}” is revoked: its secrets no longer verify.", "success")
    return redirect(url_for(".api_key_page", key_id=key.key_id), 303)


# --- helpers ---------------------------------------------------------------------------------


def listed(listing: Callable[[str | None], Page]) -> Page:
    """The page of a keyset listing that ``?cursor=`` asks for; the first page, with a notice,
    if the cursor is not valid (an old or altered link). After a POST, no next page: a cursor
    is bound to the view that made it, and a POST's answer is not a listing's address."""
    try:
        page = listing(request.args.get("cursor") or None)
    except InvalidCursor:
        flash("That page link is no longer valid; here is the first page.", "warning")
        page = listing(None)
    return page if request.method == "GET" else Page(page.items, None)


def _keys_page(
    principal: Principal, *, form: Mapping[str, Any] | None = None, errors: Errors | None = None
) -> str:
    page = listed(
        lambda cursor: api_keys.list_keys(principal, None, limit=PAGE_SIZE, cursor=cursor)
    )
    catalogue = scope_catalogue()
    offered = sorted(api_keys.allowed_scopes(principal.role))
    return render_template(
        "auth/api_keys.html",
        page=page,
        next_url=next_page_url(page.next_cursor),
        scopes=[(name, catalogue[name].description) for name in offered],
        versions=SIGNATURE_VERSIONS,
        form=form or {},
        chosen=set(form.getlist("scopes")) if isinstance(form, MultiDict) else set(),
        errors=errors or {},
        nonce=uuid4().hex,
    )


def _roll(grace: str = "") -> dict[str, Any]:
    """The roll form's figures: the default and the longest grace, in hours."""
    settings = services.runtime().settings
    return {
        "key_version": api_keys.key_version,
        "grace_default": settings.api_key_roll_grace_hours,
        "grace_max": settings.api_key_max_grace_hours,
        "grace": grace,
    }
