"""``lapak demo``: a webhook endpoint of the demo seller, to see on the Webhooks screen.

Its address is made up (``.example`` never resolves), so it is made disabled, as its owner would
leave it until a receiver exists: enabled, every event would be a failing delivery. Point it at
a receiver and enable it on the screen (its secret is there, by rotating it).
"""

from __future__ import annotations

from sqlalchemy import select

from app.db import Session, transaction
from modules.user.demo import DEMO_SELLER_EMAIL, acting_as

from .audience import event_types_for
from .models import WebhookEndpoint
from .services import create_endpoint

URL = "https://toko-budi.example/webhooks/lapak"
DESCRIPTION = "Demo: point it at your receiver, then enable it"
EVENT_TYPES = (
    "order.confirmed",
    "order.cancelled",
    "payment.succeeded",
    "payment.failed",
    "refund.succeeded",
    "settlement.completed",
)


def load_demo() -> list[str]:
    """The demo seller's endpoint, unless they have one (the demo's, which they are invited to
    point at their receiver, or their own)."""
    seller = acting_as(DEMO_SELLER_EMAIL)
    if seller is None:
        return []
    with transaction():
        there = Session().scalar(
            select(WebhookEndpoint.id).where(WebhookEndpoint.owner_id == seller.user_id).limit(1)
        )
    if there is not None:
        return [f"Webhook endpoint of {DEMO_SELLER_EMAIL}: already there."]
    offered = set(event_types_for(seller.role))
    create_endpoint(
        seller,
        {
            "url": URL,
            "description": DESCRIPTION,
            "event_types": [name for name in EVENT_TYPES if name in offered],
            "enabled": False,
        },
    )
    return [
        f"Webhook endpoint of {DEMO_SELLER_EMAIL}: {URL}, disabled until you point it at your "
        "receiver (Webhooks screen)."
    ]
