"""Sending one delivery: claim it, POST the signed message, record the attempt, act on the
answer (answers.py), and schedule the next attempt from the retry schedule.

The HTTP exchange runs outside any transaction. Claiming moves the delivery's next attempt a
lease into the future, so a concurrent sender (a job run twice, the sweep) leaves it alone, and
a sender that dies mid-exchange is replaced once the lease is over: at least once, with the same
``webhook-id``, which receivers use to drop duplicates.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from app.db import Session, transaction, utcnow
from app.errors import DomainError
from app.events import emit
from modules.fetch.client import PostAnswer, UnsafeUrl, post_once
from modules.user.models import User

from .answers import Action, action_for, retry_after
from .config import MAX_RETRY_AFTER, WebhookSettings, webhook_settings
from .models import FAILED, PENDING, SENT, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .signing import signature_header

log = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
USER_AGENT = "Lapak-Webhooks/1"
#: How long past its timeout a claimed delivery stays claimed.
LEASE_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    series: int
    number: int
    url: str
    endpoint_uuid: str
    message_id: str
    body: bytes
    secrets: tuple[str, ...]


def message_body(event_id: Any, event_type: str, occurred_at: datetime, data: Any) -> bytes:
    """The JSON body: the event's id, type, time (RFC 3339) and data, compact and stable."""
    document = {
        "id": str(event_id),
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while its overlap lasts."""
    found = [str(endpoint.secret)]
    if (
        endpoint.previous_secret is not None
        and endpoint.previous_secret_until is not None
        and endpoint.previous_secret_until > now
    ):
        found.append(str(endpoint.previous_secret))
    return tuple(found)


def send_delivery(delivery_id: int) -> str | None:
    """Make the next attempt of a due pending delivery; its status after, or None if it was not
    due (sent, failed, not yet time, or claimed by another sender)."""
    settings = webhook_settings()
    claimed = _claim(delivery_id, settings)
    if claimed is None:
        return None
    attempted_at = utcnow()
    timestamp = int(attempted_at.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            claimed.secrets, claimed.message_id, timestamp, claimed.body
        ),
    }
    answer: PostAnswer | None = None
    error: str | None = None
    refused = False
    try:
        answer = post_once(
            f"webhook endpoint {claimed.endpoint_uuid}",
            claimed.url,
            claimed.body,
            headers,
            settings.policy,
            excerpt_bytes=EXCERPT_BYTES,
        )
    except UnsafeUrl as exc:
        refused, error = True, str(exc.detail)
    except DomainError as exc:  # no answer: refused connection, reset, timeout, DNS
        error = str(exc.detail)
    latency_ms = answer.elapsed_ms if answer is not None else _ms_since(attempted_at)
    return _record(claimed, attempted_at, answer, error, refused, latency_ms, settings)


def _claim(delivery_id: int, settings: WebhookSettings) -> Claimed | None:
    now = utcnow()
    with transaction() as session:
        delivery = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if (
            delivery is None
            or delivery.status != PENDING
            or delivery.next_attempt_at is None
            or delivery.next_attempt_at > now
        ):
            return None
        endpoint = delivery.endpoint
        if not endpoint.enabled:
            delivery.status, delivery.next_attempt_at = FAILED, None
            delivery.finished_at, delivery.last_error = now, "the endpoint is disabled"
            return None
        lease = now + timedelta(seconds=settings.timeout_seconds) + LEASE_MARGIN
        # Compare and set: on SQLite there is no row lock, so a concurrent claim loses here.
        claimed = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.series == delivery.series,
                WebhookDelivery.attempts == delivery.attempts,
                WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
            )
            .values(next_attempt_at=lease)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return None
        message = delivery.message
        return Claimed(
            delivery_id=delivery.id,
            series=delivery.series,
            number=delivery.attempts + 1,
            url=endpoint.url,
            endpoint_uuid=str(endpoint.uuid),
            message_id=str(message.event_id),
            body=message_body(
                message.event_id, message.event_type, message.occurred_at, message.payload
            ),
            secrets=active_secrets(endpoint, now),
        )


def _record(
    claimed: Claimed,
    attempted_at: datetime,
    answer: PostAnswer | None,
    error: str | None,
    refused: bool,
    latency_ms: int,
    settings: WebhookSettings,
) -> str | None:
    status_code = answer.status if answer is not None else None
    action = Action.FAIL if refused else action_for(status_code)
    with transaction() as session:
        delivery = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == claimed.delivery_id)
            .with_for_update(of=WebhookDelivery)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if delivery is None or (delivery.series, delivery.attempts + 1) != (
            claimed.series,
            claimed.number,
        ):
            return None  # deleted with its endpoint, or redelivered meanwhile
        endpoint = session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id == delivery.endpoint_id)
            .with_for_update(of=WebhookEndpoint)
            .execution_options(populate_existing=True)
        ).one()
        now = utcnow()
        delivery.attempts = claimed.number
        delivery.last_status_code = status_code
        delivery.last_error = error
        if action is Action.SENT:
            delivery.status, delivery.next_attempt_at, delivery.finished_at = SENT, None, now
            endpoint.failing_since = None
            outcome = "sent"
        else:
            if endpoint.failing_since is None:
                endpoint.failing_since = attempted_at
            outcome = "failed"
            if action is Action.DISABLE:
                _disable(endpoint, "gone")
                outcome = "disabled"
            elif action is Action.RETRY and claimed.number < settings.max_attempts:
                wait = settings.wait_before(claimed.number)
                asked = retry_after(answer.headers.get("Retry-After") if answer else None, now)
                if asked is not None:
                    wait = max(wait, min(asked, MAX_RETRY_AFTER))
                delivery.next_attempt_at = attempted_at + wait
                outcome = "retry"
            if outcome != "retry":
                delivery.status, delivery.next_attempt_at, delivery.finished_at = FAILED, None, now
            if endpoint.enabled and now - endpoint.failing_since >= settings.disable_after:
                _disable(endpoint, "failing")
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                series=claimed.series,
                number=claimed.number,
                attempted_at=attempted_at,
                status_code=status_code,
                latency_ms=latency_ms,
                response_excerpt=(
                    answer.excerpt.decode("utf-8", errors="replace") if answer else None
                ),
                error=error[:500] if error else None,
                outcome=outcome,
            )
        )
        return delivery.status


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Disable ``endpoint`` and tell its owner (``webhook_endpoint.disabled``)."""
    if not endpoint.enabled:
        return
    endpoint.enabled, endpoint.disabled_reason = False, reason
    owner = Session().scalar(select(User.uuid).where(User.id == endpoint.owner_id))
    log.warning("webhook endpoint %s disabled: %s", endpoint.uuid, reason)
    emit(
        "webhook_endpoint.disabled",
        # Not the URL: receivers often keep a token in it.
        {"endpoint": endpoint.uuid, "owner": owner, "reason": reason,
         "failing_since": endpoint.failing_since},
    )  # fmt: skip


def due_delivery_ids(limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is due, oldest first."""
    with transaction() as session:
        return list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= utcnow()
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
            )
        )


def _ms_since(started: datetime) -> int:
    return max(int((utcnow() - started).total_seconds() * 1000), 0)
