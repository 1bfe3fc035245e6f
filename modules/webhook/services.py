"""Webhook endpoints and deliveries as their owners manage them: create (the secret shown
once), change, delete, rotate the secret, send a ``ping``; list and read deliveries with their
attempts, redeliver. Sellers reach only their own endpoints and deliveries (others' are 404);
admins reach all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, select

from app.db import Session, after_commit, transaction, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.http import Page, keyset_page
from app.security import Principal
from app.vault import fingerprint
from modules.fetch.client import SourceFailed, UnsafeUrl, vet_url

from .audience import EVENT_AUDIENCE, PING, event_types_for
from .config import webhook_settings
from .fanout import queue_deliveries, queue_send
from .models import PENDING, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookMessage
from .sending import disable
from .signing import new_secret

ADMIN = "admin"


class EndpointNotFound(NotFound):
    code = "webhook-endpoint-not-found"
    title = "No such webhook endpoint"


class DeliveryNotFound(NotFound):
    code = "webhook-delivery-not-found"
    title = "No such webhook delivery"


class UrlRefused(Invalid):
    code = "webhook-url-refused"
    title = "The webhook URL is not allowed"


class UnknownEventType(Invalid):
    code = "unknown-event-type"
    title = "An event type is unknown or not available to you"


class EndpointDisabled(Conflict):
    code = "webhook-endpoint-disabled"
    title = "The webhook endpoint is disabled; enable it first"


class SecretRotatedSince(Conflict):
    code = "webhook-secret-rotated-since"
    title = "The webhook endpoint's secret was rotated since"


class DeliveryPending(Conflict):
    code = "webhook-delivery-pending"
    title = "The delivery is still being attempted"


@dataclass(frozen=True)
class EndpointWithSecret:
    """An endpoint as shown on creation and rotation: with its new secret, this once."""

    endpoint: WebhookEndpoint
    secret: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)


# -- endpoints ----------------------------------------------------------------------------------


def create_endpoint(actor: Principal, body: Mapping[str, Any]) -> EndpointWithSecret:
    url = checked_url(body["url"])
    event_types = checked_event_types(actor.role, body.get("event_types") or [])
    secret = new_secret()
    with transaction() as session:
        endpoint = WebhookEndpoint(
            owner_id=actor.user_id,
            url=url,
            description=body.get("description") or "",
            event_types=event_types,
            enabled=body.get("enabled", True),
            secret=secret,
        )
        session.add(endpoint)
        session.flush()
    return EndpointWithSecret(endpoint, secret)


def list_endpoints(actor: Principal, *, limit: int, cursor: str | None) -> Page:
    """Oldest first: one's own, or everyone's for admins."""
    statement: Select[Any] = select(WebhookEndpoint)
    if not actor.has_role(ADMIN):
        statement = statement.where(WebhookEndpoint.owner_id == actor.user_id)
    return keyset_page(statement, [WebhookEndpoint.id], limit=limit, cursor=cursor)


def endpoints_disabled_by_lapak(actor: Principal, *, limit: int = 20) -> list[WebhookEndpoint]:
    """One's own endpoints (admins: everyone's) that Lapak disabled (``disabled_reason``: it
    answered 410, failed for days, or its owner was deactivated), last changed first: what the
    web client's notice names. Endpoints their owners disabled are not among them."""
    statement: Select[Any] = select(WebhookEndpoint).where(
        WebhookEndpoint.enabled.is_(False), WebhookEndpoint.disabled_reason.is_not(None)
    )
    if not actor.has_role(ADMIN):
        statement = statement.where(WebhookEndpoint.owner_id == actor.user_id)
    order = (WebhookEndpoint.updated_at.desc(), WebhookEndpoint.id.desc())
    return list(Session().scalars(statement.order_by(*order).limit(limit)))


def get_endpoint(
    actor: Principal, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    statement = select(WebhookEndpoint).where(WebhookEndpoint.uuid == endpoint_id)
    if not actor.has_role(ADMIN):
        statement = statement.where(WebhookEndpoint.owner_id == actor.user_id)
    if lock:
        statement = statement.with_for_update(of=WebhookEndpoint).execution_options(
            populate_existing=True
        )
    endpoint = Session().scalars(statement).one_or_none()
    if endpoint is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id} of yours")
    return endpoint


def update_endpoint(
    actor: Principal, endpoint_id: uuid.UUID, body: Mapping[str, Any]
) -> WebhookEndpoint:
    """Change the URL, description, event types or enabled flag; enabling clears the failure
    record (the next failure starts a new count)."""
    url = checked_url(body["url"]) if "url" in body else None
    event_types = (
        checked_event_types(actor.role, body["event_types"] or [])
        if "event_types" in body
        else None
    )
    with transaction():
        endpoint = get_endpoint(actor, endpoint_id)
        if url is not None:
            endpoint.url = url
        if event_types is not None:
            endpoint.event_types = event_types
        if "description" in body:
            endpoint.description = body["description"] or ""
        if "enabled" in body and body["enabled"] != endpoint.enabled:
            endpoint.enabled = body["enabled"]
            endpoint.failing_since = endpoint.last_failure_at = None
            endpoint.disabled_reason = None
        endpoint.updated_at = utcnow()
    return endpoint


def delete_endpoint(actor: Principal, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint with its deliveries and their attempts."""
    with transaction() as session:
        endpoint = get_endpoint(actor, endpoint_id)
        deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
        session.delete(endpoint)


def secret_version(endpoint: WebhookEndpoint) -> str:
    """Which secret ``endpoint`` has (a keyed hash of it, which tells nothing of the secret; not
    ``updated_at``, which every failed delivery moves): a rotate form sends it back."""
    return fingerprint(str(endpoint.secret), "webhook.secret-version")[:32]


def rotate_secret(
    actor: Principal, endpoint_id: uuid.UUID, expected_version: str | None = None
) -> EndpointWithSecret:
    """A new secret; the previous one keeps signing too for ``LAPAK_WEBHOOK_SECRET_OVERLAP_
    SECONDS`` so the receiver can switch without losing a delivery.

    With ``expected_version`` (the :func:`secret_version` a form was shown), a secret rotated
    since is not rotated again (:class:`SecretRotatedSince`): a form sent twice would otherwise
    end the secret in use for one nobody saw."""
    secret = new_secret()
    overlap = webhook_settings().secret_overlap
    with transaction():
        endpoint = get_endpoint(actor, endpoint_id, lock=True)
        if expected_version is not None and expected_version != secret_version(endpoint):
            raise SecretRotatedSince(
                "rotated since this page was opened; the secret shown then is still in use"
            )
        now = utcnow()
        endpoint.previous_secret = str(endpoint.secret) if overlap else None
        endpoint.previous_secret_until = now + overlap if overlap else None
        endpoint.secret = secret
        endpoint.updated_at = now
    return EndpointWithSecret(endpoint, secret)


def send_test(actor: Principal, endpoint_id: uuid.UUID) -> WebhookDelivery:
    """Queue a ``ping`` to the endpoint now (whatever its event types); the delivery."""
    with transaction() as session:
        endpoint = get_endpoint(actor, endpoint_id)
        if not endpoint.enabled:
            raise EndpointDisabled(f"webhook endpoint {endpoint.uuid} is disabled")
        now = utcnow()
        message = WebhookMessage(
            event_id=uuid.uuid4(),
            event_type=PING,
            occurred_at=now,
            payload={"endpoint": str(endpoint.uuid), "message": "ping from Lapak"},
        )
        session.add(message)
        session.flush()
        [delivery_id] = queue_deliveries(message.id, [endpoint.id])
        return session.get_one(WebhookDelivery, delivery_id)


def checked_url(url: str) -> str:
    """``url`` if the fetch module's address rules allow it, else a 422 (``webhook-url-
    refused``). The host is resolved now and every address it has must be public; a host that
    does not resolve (yet) is accepted: it reaches nothing, and every delivery checks again."""
    try:
        vet_url("webhook endpoint", url, webhook_settings().policy)
    except UnsafeUrl as error:
        raise UrlRefused(errors={"url": [str(error.detail).split(": ", 1)[-1]]}) from None
    except SourceFailed:
        pass  # no address now: the deliveries are retried, then fail, until it has one
    return url


def checked_event_types(role: str, event_types: list[str]) -> list[str]:
    """The event types, each once, sorted; 422 naming the unknown or unavailable ones."""
    allowed = set(event_types_for(role))
    wrong = sorted({name for name in event_types if name not in allowed})
    if wrong:
        unknown = [name for name in wrong if name not in EVENT_AUDIENCE]
        detail = (
            f"unknown event type(s): {', '.join(unknown)}"
            if unknown
            else f"not available to a {role}: {', '.join(wrong)}"
        )
        raise UnknownEventType(detail, errors={"event_types": [detail]})
    return sorted(set(event_types))


# -- deliveries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilter:
    endpoint: uuid.UUID | None = None
    status: str | None = None


def list_deliveries(
    actor: Principal, filters: DeliveryFilter, *, limit: int, cursor: str | None
) -> Page:
    """Newest first: one's own endpoints', or every one's for admins."""
    statement: Select[Any] = select(WebhookDelivery)
    if not actor.has_role(ADMIN):
        own = select(WebhookEndpoint.id).where(WebhookEndpoint.owner_id == actor.user_id)
        statement = statement.where(WebhookDelivery.endpoint_id.in_(own))
    if filters.endpoint is not None:
        chosen = select(WebhookEndpoint.id).where(WebhookEndpoint.uuid == filters.endpoint)
        statement = statement.where(WebhookDelivery.endpoint_id == chosen.scalar_subquery())
    if filters.status is not None:
        statement = statement.where(WebhookDelivery.status == filters.status)
    return keyset_page(statement, [WebhookDelivery.id], limit=limit, cursor=cursor, descending=True)


def get_delivery(actor: Principal, delivery_id: uuid.UUID) -> WebhookDelivery:
    statement = select(WebhookDelivery).where(WebhookDelivery.uuid == delivery_id)
    if not actor.has_role(ADMIN):
        own = select(WebhookEndpoint.id).where(WebhookEndpoint.owner_id == actor.user_id)
        statement = statement.where(WebhookDelivery.endpoint_id.in_(own))
    delivery = Session().scalars(statement).one_or_none()
    if delivery is None:
        raise DeliveryNotFound(f"no webhook delivery {delivery_id} of yours")
    return delivery


def redeliver(actor: Principal, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Start a new series of attempts of a sent or failed delivery, now, with the same
    ``webhook-id``."""
    with transaction():
        delivery = get_delivery(actor, delivery_id)
        if delivery.status == PENDING:
            raise DeliveryPending(f"webhook delivery {delivery.uuid} is still being attempted")
        if not delivery.endpoint.enabled:
            raise EndpointDisabled(f"webhook endpoint {delivery.endpoint.uuid} is disabled")
        now = utcnow()
        delivery.status, delivery.series, delivery.attempts = PENDING, delivery.series + 1, 0
        delivery.next_attempt_at, delivery.queued_at, delivery.finished_at = now, now, None
        delivery.last_status_code = delivery.last_error = None
        series = delivery.series
        after_commit(lambda: queue_send(delivery.id, series, 0))
    return delivery


def disable_endpoints_of_deactivated(payload: Mapping[str, Any]) -> None:
    """Subscriber of ``user.deactivated``: the user's enabled endpoints are disabled
    (``owner_deactivated``); their pending deliveries fail when next due. Enabling one again
    is the owner's choice once active."""
    session = Session()
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.owner_id == payload.get("user_id"),
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookEndpoint.id)
        .with_for_update(of=WebhookEndpoint, key_share=True)
    ).all()
    for endpoint in endpoints:
        disable(endpoint, "owner_deactivated")
