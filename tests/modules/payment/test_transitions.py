"""The one transition function: every (from, to) pair allowed or refused, for provider callbacks
(same state = a no-op) and for people through the API (same state = 409)."""

from __future__ import annotations

import uuid
from itertools import product as pairs

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import transaction
from modules.payment.models import TRANSACTION_STATES
from modules.payment.services import _locked_by_uuid
from modules.payment.transitions import ALLOWED_SOURCES, InvalidTransition, transition
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import (
    MadeProduct,
    events,
    execute,
    ledger_operations,
    place_with_provider,
    tx_row,
)


@pytest.mark.parametrize(
    ("source", "target", "by_provider"),
    [(s, t, p) for s, t in pairs(TRANSACTION_STATES, ALLOWED_SOURCES) for p in (True, False)],
)
def test_every_transition_is_allowed_or_refused(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    product: MadeProduct,
    services: Services,
    source: str,
    target: str,
    by_provider: bool,
) -> None:
    tx = place_with_provider(client, customer, product.id)["transaction"]
    # Put the row in the source state behind the service's back (a success needs its payment
    # confirmed, which the refusals below must then leave alone).
    execute(services, "UPDATE payment_transaction SET state = %s WHERE reference = %s",
        source, tx["reference"])  # fmt: skip
    before = tx_row(services, tx["reference"])
    captures_before = ledger_operations(app).count("PAYMENT_CAPTURE")
    with app.app_context():
        try:
            with transaction():
                locked = _locked_by_uuid(uuid.UUID(tx["id"]))
                changed = transition(locked, target, "test", provider=by_provider)
            outcome = "changed" if changed else "no-op"
        except InvalidTransition:
            outcome = "refused"
    after = tx_row(services, tx["reference"])
    if source == target:
        assert outcome == ("no-op" if by_provider else "refused")
        assert after == before
    elif source in ALLOWED_SOURCES[target]:
        assert outcome == "changed"
        assert after["state"] == target
        if target == "success":
            assert after["payment"] == "paid"
            assert after["invoice"] == "paid"
            assert ledger_operations(app).count("PAYMENT_CAPTURE") == captures_before + 1
            assert len(events(services, "payment.succeeded")) == 1
        elif target in ("failed", "canceled"):
            assert after["payment"] == "canceled"
            assert after["invoice"] == "not_paid"
            assert after["residual"] > 0
    else:
        assert outcome == "refused"
        assert after == before
        assert ledger_operations(app).count("PAYMENT_CAPTURE") == captures_before
