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
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from app.db import Session, is_unavailable, transaction, utcnow
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
#: ``webhook_attempt.error`` and ``webhook_delivery.last_error`` are String(500).
ERROR_CHARS = 500
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
    answer: PostAnswer | None = None
    error: str | None = None
    refused = False
    try:
        answer = post_once(
            f"webhook endpoint {claimed.endpoint_uuid}",
            claimed.url,
            claimed.body,
            _headers(claimed, attempted_at),
            settings.policy,
            excerpt_bytes=EXCERPT_BYTES,
        )
    except UnsafeUrl as exc:
        refused, error = True, str(exc.detail)
    except DomainError as exc:  # no answer: refused connection, reset, timeout, DNS
        error = str(exc.detail)
    except Exception as exc:
        # Anything else (a library's surprise, a bug) is an attempt without an answer too,
        # retried by the schedule: never a delivery left claimed and unrecorded. Only the
        # type: the message may quote the URL, and receivers keep tokens in it.
        _log_unexpected(delivery_id, "the attempt failed unexpectedly", exc)
        error = f"no answer: unexpected {type(exc).__name__}"
    latency_ms = answer.elapsed_ms if answer is not None else _ms_since(attempted_at)
    try:
        return _record(claimed, attempted_at, answer, error, refused, latency_ms, settings)
    except Exception as exc:
        if is_unavailable(exc):
            raise  # the job runs again; the claim's lease lets the sweep resend after it
        # Something in the answer cannot be stored: fail the delivery, recorded in a fresh
        # transaction, rather than resend it after every lease for ever.
        _log_unexpected(delivery_id, "the attempt could not be recorded", exc)
        return _record_unrecordable(claimed, attempted_at, answer, latency_ms)


def _log_unexpected(delivery_id: int, what: str, error: BaseException) -> None:
    # The type and where it was raised, not the message or the locals: they may quote the
    # endpoint's URL, where receivers keep tokens.
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log.error("webhook delivery %s: %s: %s at %s", delivery_id, what, type(error).__name__, where)


def _headers(claimed: Claimed, attempted_at: datetime) -> dict[str, str]:
    timestamp = int(attempted_at.timestamp())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            claimed.secrets, claimed.message_id, timestamp, claimed.body
        ),
    }


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
        if not endpoint.enabled or not endpoint.owner.active:
            delivery.status, delivery.next_attempt_at = FAILED, None
            delivery.finished_at = now
            delivery.last_error = (
                "the endpoint is disabled"
                if not endpoint.enabled
                else "the endpoint's owner is deactivated"
            )
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
        endpoint = _locked_endpoint(delivery.endpoint_id)
        now = utcnow()
        delivery.attempts = claimed.number
        delivery.last_status_code = status_code
        delivery.last_error = storable(error, ERROR_CHARS)
        if action is Action.SENT:
            delivery.status, delivery.next_attempt_at, delivery.finished_at = SENT, None, now
            endpoint.failing_since = endpoint.last_failure_at = None
            outcome = "sent"
        else:
            failing = _failing_for(endpoint, attempted_at, settings)
            outcome = "failed"
            if action is Action.DISABLE:
                disable(endpoint, "gone")
                outcome = "disabled"
            elif action is Action.RETRY and claimed.number < settings.max_attempts:
                wait = settings.wait_before(claimed.number)
                asked = retry_after(
                    answer.headers.get("retry-after") if answer else None, now, MAX_RETRY_AFTER
                )
                if asked is not None:
                    wait = max(wait, asked)
                delivery.next_attempt_at = attempted_at + wait
                outcome = "retry"
            if outcome != "retry":
                delivery.status, delivery.next_attempt_at, delivery.finished_at = FAILED, None, now
            if failing >= settings.disable_after:
                disable(endpoint, "failing")
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                series=claimed.series,
                number=claimed.number,
                attempted_at=attempted_at,
                status_code=status_code,
                latency_ms=latency_ms,
                response_excerpt=_excerpt(answer),
                error=storable(error, ERROR_CHARS),
                outcome=outcome,
            )
        )
        return delivery.status


def _locked_endpoint(endpoint_id: int) -> WebhookEndpoint:
    # FOR NO KEY UPDATE: the fan-out's delivery inserts take KEY SHARE on the endpoint (their
    # foreign key) and must not wait for a sender recording an attempt.
    return (
        Session()
        .scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .with_for_update(of=WebhookEndpoint, key_share=True)
            .execution_options(populate_existing=True)
        )
        .one()
    )


def _failing_for(
    endpoint: WebhookEndpoint, attempted_at: datetime, settings: WebhookSettings
) -> timedelta:
    """Note a failed attempt at ``attempted_at``; how long the endpoint has failed without a
    break. A stretch is unbroken while its failed attempts follow each other within
    ``settings.failing_gap``: after a longer silence nothing says the endpoint failed meanwhile,
    so one old failure and one new do not add up to days of failing."""
    if (
        endpoint.failing_since is None
        or endpoint.last_failure_at is None
        or attempted_at - endpoint.last_failure_at > settings.failing_gap
    ):
        endpoint.failing_since = attempted_at
    endpoint.last_failure_at = max(attempted_at, endpoint.last_failure_at or attempted_at)
    return attempted_at - endpoint.failing_since


def _record_unrecordable(
    claimed: Claimed, attempted_at: datetime, answer: PostAnswer | None, latency_ms: int
) -> str | None:
    """Fail the delivery with an attempt that keeps only the status: what the answer held
    could not be stored."""
    error = "the answer could not be recorded"
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
            return None
        now = utcnow()
        delivery.attempts = claimed.number
        delivery.last_status_code = answer.status if answer is not None else None
        delivery.status, delivery.next_attempt_at, delivery.finished_at = FAILED, None, now
        delivery.last_error = error
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                series=claimed.series,
                number=claimed.number,
                attempted_at=attempted_at,
                status_code=delivery.last_status_code,
                latency_ms=latency_ms,
                error=error,
                outcome="failed",
            )
        )
        return delivery.status


def storable(text: str | None, limit: int) -> str | None:
    """``text`` as a text column takes it: valid UTF-8 (lone surrogates replaced), without NUL
    (PostgreSQL refuses it in text), at most ``limit`` characters."""
    if text is None:
        return None
    clean = text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")
    return clean[:limit]


def _excerpt(answer: PostAnswer | None) -> str | None:
    if answer is None:
        return None
    return storable(answer.excerpt.decode("utf-8", errors="replace"), EXCERPT_BYTES)


def disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Disable ``endpoint`` (locked by the caller) and tell its owner and the admins
    (``webhook_endpoint.disabled``); nothing if it is disabled already."""
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


#: A first attempt is queued by the fan-out (or a redelivery) as it commits: the sweep leaves it
#: to that job this long, so a busy queue does not get each new delivery twice.
FIRST_ATTEMPT_GRACE = timedelta(seconds=60)


def due_deliveries(limit: int = 500) -> list[tuple[int, int, int]]:
    """(id, series, attempts made) of the pending deliveries the sweep must queue, oldest
    first: retries whose time has come (nobody else queues them), claims whose lease is over
    (their sender died), and first attempts overdue by :data:`FIRST_ATTEMPT_GRACE` (their job
    was lost). Queueing is idempotent per attempt (:func:`fanout.queue_send`)."""
    now = utcnow()
    with transaction() as session:
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.series, WebhookDelivery.attempts)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                or_(
                    WebhookDelivery.attempts > 0,
                    WebhookDelivery.next_attempt_at <= now - FIRST_ATTEMPT_GRACE,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        return [(row.id, row.series, row.attempts) for row in rows]


def _ms_since(started: datetime) -> int:
    return max(int((utcnow() - started).total_seconds() * 1000), 0)
