"""The Developers screens of the web client for webhooks (sellers: their own endpoints; admins:
everyone's), with the same services as ``/api/v1/webhooks``: endpoints (create, change, enable,
disable, rotate the secret, send a test ``ping``, delete), an endpoint's delivery log, a
delivery with its attempts, redeliver. The endpoints page names the endpoints Lapak disabled
(a receiver gone or failing for days), with what to do.

A new secret is shown once, in the page answering the POST that made it, as the API keys
screens do (``modules/auth/screens.py``, whose form helpers and static files these share).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from app.db import read_only
from app.errors import Conflict, Invalid
from app.screens import load_form, next_page_url
from app.security import Principal, authenticate, requires
from modules.auth.screens import Errors, form_errors, listed

from . import services
from .audience import event_types_for
from .config import webhook_settings
from .models import DELIVERY_STATES, WebhookEndpoint
from .schemas import EndpointCreateSchema, EndpointUpdateSchema

screens = Blueprint("webhook_screens", __name__, template_folder="templates")

OWNERS = ("seller", "admin")
PAGE_SIZE = 25
WHEN_EMPTY = {"url": "Enter the address of your receiver."}
#: What a person reads once an endpoint is enabled (True) or disabled.
SWITCHED = {
    True: "Endpoint enabled: new events are delivered to it again.",
    False: "Endpoint disabled: nothing is delivered to it until you enable it.",
}


def disabled_because(endpoint: WebhookEndpoint) -> str:
    """Why Lapak disabled ``endpoint``, in words."""
    reasons = {
        "gone": "the receiver answered 410 Gone, which asks for no more deliveries",
        "failing": f"its deliveries failed for {webhook_settings().disable_after.days} days "
        "without one success",
        "owner_deactivated": "its owner was deactivated",
    }
    return reasons.get(endpoint.disabled_reason or "", "Lapak disabled it")


# --- endpoints -------------------------------------------------------------------------------


@screens.get("/")
@requires(*OWNERS, browser=True)
@read_only()
def endpoints() -> str:
    """Your endpoints (admins: everyone's), and those Lapak disabled."""
    principal = authenticate()
    page = listed(lambda cursor: services.list_endpoints(principal, limit=PAGE_SIZE, cursor=cursor))
    return render_template(
        "webhook/endpoints.html",
        page=page,
        next_url=next_page_url(page.next_cursor),
        disabled=services.endpoints_disabled_by_lapak(principal),
        disabled_because=disabled_because,
    )


@screens.get("/endpoints/new")
@requires(*OWNERS, browser=True)
def new_endpoint() -> str:
    """The form that adds an endpoint."""
    return _endpoint_form(authenticate())


@screens.post("/endpoints")
@requires(*OWNERS, browser=True)
def create_endpoint() -> tuple[str, int]:
    """Add an endpoint; the answer shows its secret, this once."""
    principal = authenticate()
    try:
        body = load_form(EndpointCreateSchema(), request.form)
        created = services.create_endpoint(principal, body)
    except Invalid as refused:
        errors = form_errors(refused, request.form, WHEN_EMPTY)
        return _endpoint_form(principal, form=request.form, errors=errors), 422
    flash(f"Endpoint {created.url} added.", "success")
    return _endpoint_page(principal, created.endpoint, secret=created.secret), 201


@screens.get("/endpoints/<uuid:endpoint_id>")
@requires(*OWNERS, browser=True)
@read_only()
def endpoint(endpoint_id: uuid.UUID) -> str:
    """An endpoint, its actions and its delivery log (``?status=`` filters it)."""
    principal = authenticate()
    return _endpoint_page(principal, services.get_endpoint(principal, endpoint_id))


@screens.get("/endpoints/<uuid:endpoint_id>/edit")
@requires(*OWNERS, browser=True)
def edit_endpoint(endpoint_id: uuid.UUID) -> str:
    """The form that changes an endpoint's URL, description and event types."""
    principal = authenticate()
    found = services.get_endpoint(principal, endpoint_id)
    form = MultiDict(
        [("url", found.url), ("description", found.description)]
        + [("event_types", name) for name in found.event_types]
    )
    return _endpoint_form(principal, form=form, endpoint=found)


@screens.post("/endpoints/<uuid:endpoint_id>/edit")
@requires(*OWNERS, browser=True)
def update_endpoint(endpoint_id: uuid.UUID) -> Response | tuple[str, int]:
    principal = authenticate()
    try:
        body = load_form(EndpointUpdateSchema(), request.form)
        if "url" not in body:
            raise Invalid(errors={"url": [WHEN_EMPTY["url"]]})
        # The form shows every field: a blank description or no type checked is a choice.
        body.setdefault("description", "")
        body.setdefault("event_types", [])
        services.update_endpoint(principal, endpoint_id, body)
    except Invalid as refused:
        errors = form_errors(refused, request.form, WHEN_EMPTY)
        found = services.get_endpoint(principal, endpoint_id)
        return _endpoint_form(principal, form=request.form, errors=errors, endpoint=found), 422
    flash("Endpoint saved.", "success")
    return _back_to(endpoint_id)


@screens.post("/endpoints/<uuid:endpoint_id>/<any(enable, disable):switch>")
@requires(*OWNERS, browser=True)
def switch_endpoint(endpoint_id: uuid.UUID, switch: str) -> Response:
    """Enable an endpoint again (its failure record starts afresh), or disable it."""
    enabled = switch == "enable"
    services.update_endpoint(authenticate(), endpoint_id, {"enabled": enabled})
    flash(SWITCHED[enabled], "success")
    return _back_to(endpoint_id)


@screens.post("/endpoints/<uuid:endpoint_id>/rotate-secret")
@requires(*OWNERS, browser=True)
def rotate_secret(endpoint_id: uuid.UUID) -> Response | str:
    """A new secret, shown this once; the previous one keeps signing for a while."""
    principal = authenticate()
    try:
        # None from a page older than the field: it rotates as before.
        rotated = services.rotate_secret(principal, endpoint_id, request.form.get("version"))
    except Conflict as refused:
        flash(f"The secret was not rotated: {refused.detail or refused.title}.", "error")
        return _back_to(endpoint_id)
    flash("New signing secret made.", "success")
    return _endpoint_page(principal, rotated.endpoint, secret=rotated.secret)


@screens.post("/endpoints/<uuid:endpoint_id>/test")
@requires(*OWNERS, browser=True)
def send_test(endpoint_id: uuid.UUID) -> Response:
    """Queue a ``ping`` to the endpoint; its delivery shows in the log."""
    try:
        services.send_test(authenticate(), endpoint_id)
    except Conflict as refused:
        flash(f"No ping was sent: {refused.detail or refused.title}.", "error")
    else:
        flash("A test ping is on its way: its delivery is in the log below.", "success")
    return _back_to(endpoint_id)


@screens.post("/endpoints/<uuid:endpoint_id>/delete")
@requires(*OWNERS, browser=True)
def delete_endpoint(endpoint_id: uuid.UUID) -> Response:
    """Delete an endpoint with its deliveries."""
    principal = authenticate()
    url = services.get_endpoint(principal, endpoint_id).url
    services.delete_endpoint(principal, endpoint_id)
    flash(f"Endpoint {url} deleted, with its deliveries.", "success")
    return redirect(url_for(".endpoints"), 303)


# --- deliveries ------------------------------------------------------------------------------


@screens.get("/deliveries/<uuid:delivery_id>")
@requires(*OWNERS, browser=True)
@read_only()
def delivery(delivery_id: uuid.UUID) -> str:
    """A delivery with every attempt."""
    found = services.get_delivery(authenticate(), delivery_id)
    return render_template("webhook/delivery.html", delivery=found)


@screens.post("/deliveries/<uuid:delivery_id>/redeliver")
@requires(*OWNERS, browser=True)
def redeliver(delivery_id: uuid.UUID) -> Response:
    """Send a delivery again: a new series of attempts, the same ``webhook-id``."""
    try:
        services.redeliver(authenticate(), delivery_id)
    except Conflict as refused:
        flash(f"Not redelivered: {refused.detail or refused.title}.", "error")
    else:
        flash("Redelivery queued: a new series of attempts starts now.", "success")
    return redirect(url_for(".delivery", delivery_id=delivery_id), 303)


# --- helpers ---------------------------------------------------------------------------------


def _back_to(endpoint_id: uuid.UUID) -> Response:
    return redirect(url_for(".endpoint", endpoint_id=endpoint_id), 303)


def _endpoint_form(
    principal: Principal,
    *,
    form: Mapping[str, Any] | None = None,
    errors: Errors | None = None,
    endpoint: WebhookEndpoint | None = None,
) -> str:
    return render_template(
        "webhook/endpoint_form.html",
        endpoint=endpoint,
        event_types=event_types_for(principal.role),
        form=form or {},
        chosen=set(form.getlist("event_types")) if isinstance(form, MultiDict) else set(),
        errors=errors or {},
    )


def _endpoint_page(
    principal: Principal, found: WebhookEndpoint, *, secret: str | None = None
) -> str:
    status = request.args.get("status") or None
    if status not in (None, *DELIVERY_STATES):
        flash(f"There is no delivery status “{status}”; showing every delivery.", "warning")
        status = None
    filters = services.DeliveryFilter(endpoint=found.uuid, status=status)
    page = listed(
        lambda cursor: services.list_deliveries(principal, filters, limit=PAGE_SIZE, cursor=cursor)
    )
    return render_template(
        "webhook/endpoint.html",
        endpoint=found,
        secret=secret,
        deliveries=page,
        next_url=next_page_url(page.next_cursor),
        status=status,
        states=DELIVERY_STATES,
        disabled_because=disabled_because,
        secret_version=services.secret_version(found),
    )
