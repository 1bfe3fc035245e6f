"""Webhook endpoints, the events they are sent (messages), one delivery per event and endpoint,
and every attempt of a delivery, kept as its log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JsonDocument, utcnow
from app.vault import Sealed
from modules.user.models import User

PENDING, SENT, FAILED = "pending", "sent", "failed"
DELIVERY_STATES = (PENDING, SENT, FAILED)
#: What an attempt's answer led to (see answers.py).
OUTCOMES = ("sent", "retry", "failed", "disabled")


class WebhookEndpoint(Base):
    """A receiver's URL, which events it wants, and the secret its deliveries are signed with."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (Index("ix_webhook_endpoint_owner_id_id", "owner_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    #: The event types wanted; empty: every event the owner may see.
    event_types: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Why it was disabled by Lapak (``gone``: it answered 410; ``failing``: days of failures;
    #: ``owner_deactivated``: its owner was deactivated).
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    #: ``whsec_...``, sealed by the vault; shown on creation and rotation only.
    secret: Mapped[str] = mapped_column(Sealed)
    #: The secret before the last rotation, which signs too until ``previous_secret_until``.
    previous_secret: Mapped[str | None] = mapped_column(Sealed)
    previous_secret_until: Mapped[datetime | None] = mapped_column()
    #: The first failed attempt since the last success (None: not failing).
    failing_since: Mapped[datetime | None] = mapped_column()
    #: The last failed attempt of that stretch (a long silence after it ends the stretch).
    last_failure_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class WebhookMessage(Base):
    """One event as webhooks send it: its id (the ``webhook-id``), type, time and data."""

    __tablename__ = "webhook_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The outbox event's id (a ``ping``'s own): stable across retries and redeliveries.
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """A message on its way to one endpoint: pending (with the next attempt's time), sent or
    failed. A redelivery starts a new series of attempts on the same row."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("message_id", "endpoint_id"),
        CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in DELIVERY_STATES)})", name="status_known"
        ),
        CheckConstraint(
            "(status = 'pending') = (next_attempt_at IS NOT NULL)", name="due_when_pending"
        ),
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_endpoint_id_id", "endpoint_id", "id"),
        # The health figures: deliveries finished in the last hour and day.
        Index("ix_webhook_delivery_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_message.id"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    #: 1, then one more per manual redelivery.
    series: Mapped[int] = mapped_column(Integer, default=1)
    #: Attempts made in the current series.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: When the current series was queued (creation or redelivery): the backlog's age.
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[WebhookMessage] = relationship(lazy="joined", innerjoin=True)
    endpoint: Mapped[WebhookEndpoint] = relationship(lazy="joined", innerjoin=True)
    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", viewonly=True
    )


class WebhookAttempt(Base):
    """One HTTP exchange of a delivery (or the reason none took place)."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (
        UniqueConstraint("delivery_id", "series", "number"),
        CheckConstraint(
            f"outcome IN ({', '.join(repr(s) for s in OUTCOMES)})", name="outcome_known"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_delivery.id", ondelete="CASCADE"))
    series: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    #: The first KB of the answer's body, as text (undecodable bytes replaced).
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(12))
