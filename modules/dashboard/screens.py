"""The dashboard's web screens, at ``/web/dashboard/``: the first screen after login.

- The dashboard: a period's figures (volume, transactions, success rate, average, refunds), the
  daily volume chart, the status and provider splits, the recent transactions, the settlement
  summary, an activity feed of live events, and for staff the system health panel. Staff and
  admins see the platform's figures, a seller their own share.
- The transactions: every payment with its provider transaction, filtered, in keyset pages.

The period is read with the stats endpoint's own schema and :func:`services.period` (the same
defaults and refusals), the figures come from :func:`services.stats` and are written by the
endpoint's schema (``9500.00``, never a float), the transactions from
:func:`services.list_transactions`: the screens calculate nothing. Reads go to a caught-up
replica. The activity feed is the browser's own ``EventSource`` on the live module's stream
(``GET /api/v1/events/stream``, same origin, the session cookie goes along) when that stream is
served, from the newest event when the page was drawn; how it reconnects, and what it does when
the session ends, is in ``static/feed.js``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import func, select
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.db import Session, read_only
from app.errors import BadRequest, Invalid
from app.events import OutboxEvent
from app.http import API_PREFIX
from app.screens import invalid_fields, load_form, next_page_url
from app.security import Principal, authenticate, requires
from modules.payment.models import TRANSACTION_STATES

from . import health, services
from .schemas import (
    DashboardStatsQuerySchema,
    DashboardTransactionQuerySchema,
    DashboardTransactionSchema,
    dump_stats,
)

screens = Blueprint(
    "dashboard_screens",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

VIEWERS = ("staff", "admin", "seller")
#: Recent transactions on the dashboard itself; the transactions screen pages through the rest.
RECENT = 10
#: The live module's event stream, which the activity feed listens to.
EVENT_STREAM = f"{API_PREFIX}/events/stream"
#: Events committed before the page that its feed replays on opening (of them, those the
#: viewer may see and of the kinds below): without them, a dashboard opened on a quiet day
#: shows no activity at all.
FEED_RECENT_EVENTS = 50
#: The events the activity feed shows, with what it calls them: sales, money and payouts.
FEED_EVENTS = {
    "order.confirmed": "Order placed",
    "order.cancelled": "Order cancelled",
    "invoice.posted": "Invoice posted",
    "invoice.paid": "Invoice paid",
    "invoice.reversed": "Invoice reversed",
    "payment.registered": "Payment registered",
    "payment.confirmed": "Payment confirmed",
    "payment.cancelled": "Payment cancelled",
    "payment.succeeded": "Transaction succeeded",
    "payment.failed": "Transaction failed",
    "payment.canceled": "Transaction canceled",
    "payment.late_success": "Late success",
    "refund.created": "Refund requested",
    "refund.succeeded": "Refund done",
    "settlement.created": "Payout requested",
    "settlement.completed": "Payout completed",
    "settlement.failed": "Payout failed",
    "seller.signed_up": "Seller signed up",
    "seller.kyc_submitted": "KYC submitted",
    "seller.verified": "Seller verified",
    "seller.kyc_rejected": "KYC rejected",
    "webhook_endpoint.disabled": "Webhook endpoint disabled",
}
LABELS = {
    "from": "From",
    "to": "To",
    "currency": "Currency",
    "state": "State",
    "provider": "Provider",
    "cursor": "Page",
    "limit": "Limit",
}
# One instance each: a schema builds its nested schemas once, not per request.
_TRANSACTION = DashboardTransactionSchema()
PERCENT = Decimal("0.01")


@screens.get("/")
@requires(*VIEWERS, browser=True)
def dashboard() -> tuple[str, int]:
    """The period's figures (default the last 30 days in IDR) with the widgets around them."""
    actor = authenticate()
    chosen = {name: request.args.get(name, "") for name in ("from", "to", "currency")}
    try:
        shown = _figures(actor)
    except (Invalid, BadRequest) as refused:
        return render_template(
            "dashboard/dashboard.html",
            chosen=chosen,
            error=str(refused),
            invalid=invalid_fields(refused),
        ), 422
    staff = actor.has_role(*services.STAFF_ROLES)
    return render_template(
        "dashboard/dashboard.html",
        chosen={"from": shown["stats"]["from"], "to": shown["stats"]["to"],
                "currency": shown["stats"]["currency"]},
        staff=staff,
        health=health.system_health() if staff else None,
        feed=_feed(),
        **shown,
    ), 200  # fmt: skip


@read_only()
def _figures(actor: Principal) -> dict[str, Any]:
    """The stats of the asked period and the first page of recent transactions, from a replica,
    as the API writes them."""
    args = load_form(DashboardStatsQuerySchema(), request.args, LABELS)
    asked = services.period(args["since"], args["until"], args["currency"])
    stats = services.stats(actor, asked)
    recent = services.list_transactions(
        actor, services.TransactionFilter(currency=asked.currency), limit=RECENT, cursor=None
    )
    return {
        "stats": dump_stats(stats),
        "success_percent": (
            (stats.success_rate * 100).quantize(PERCENT) if stats.success_rate is not None else None
        ),
        "series": {
            "days": [str(day.day) for day in stats.daily],
            "volume": [str(day.volume) for day in stats.daily],
            "currency": stats.currency,
        },
        "recent": [_TRANSACTION.dump(shown) for shown in recent.items],
        "more": recent.next_cursor is not None,
    }


@screens.get("/transactions")
@requires(*VIEWERS, browser=True)
@read_only()
def transactions() -> tuple[str, int]:
    """Every payment (a seller: those of their sales), newest first, filtered, in pages."""
    chosen = {name: request.args.get(name, "") for name in ("state", "provider", "currency")}
    try:
        args = load_form(DashboardTransactionQuerySchema(), request.args, LABELS)
        filters = services.TransactionFilter(
            state=args["state"], provider=args["provider"], currency=args["currency"]
        )
        page = services.list_transactions(
            authenticate(), filters, limit=args["limit"], cursor=args["cursor"]
        )
    except (Invalid, BadRequest) as refused:
        return render_template("dashboard/transactions.html", chosen=chosen,
                               states=TRANSACTION_STATES, error=str(refused),
                               invalid=invalid_fields(refused)), 422  # fmt: skip
    return render_template(
        "dashboard/transactions.html",
        chosen=chosen,
        states=TRANSACTION_STATES,
        transactions=[_TRANSACTION.dump(shown) for shown in page.items],
        next_url=next_page_url(page.next_cursor),
    ), 200


def _feed() -> dict[str, Any] | None:
    """What the activity feed's script needs, or None when no event stream is served here
    (the live module is not loaded)."""
    try:
        current_app.url_map.bind("localhost").match(EVENT_STREAM, method="GET")
    except (NotFound, MethodNotAllowed):
        return None
    # No further back than the stream replays (the live module's settings, when it is loaded):
    # the page would open on a feed that says some activity is not shown.
    live = current_app.extensions.get("live.settings")
    recent = (
        FEED_RECENT_EVENTS if live is None else min(FEED_RECENT_EVENTS, live.replay_max_events - 1)
    )
    position = max(_newest_event() - recent, 0)
    return {"stream": EVENT_STREAM, "events": FEED_EVENTS, "position": position}


def _newest_event() -> int:
    """The newest committed event's id: the feed resumes a few events before it (the recent
    activity, as far as the viewer may see it), so what is committed between this page and its
    stream, or while the feed reconnects before it received an event, is replayed too. Read on
    the primary: a replica that lags could put it further back than the stream replays (see the
    live module), and the page would keep reloading."""
    return Session().scalar(select(func.max(OutboxEvent.id))) or 0


@screens.app_template_filter("dashboard_facts")
def facts(figures: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A health section's figures as (label, value) pairs, nested ones named by their path
    (``last hour · sent``)."""
    found: list[tuple[str, Any]] = []
    for name, value in figures.items():
        label = f"{prefix}{name.replace('_', ' ')}"
        if isinstance(value, Mapping):
            found.extend(facts(value, f"{label} · "))
        else:
            found.append((label, value))
    return found
