"""The KYC review: every allowed step, every refused one (409, nothing changed), re-review of a
verified seller's new payout account, and two staff members deciding at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import BANK, call, events, ok, problem, profile_rows

ALLOWED = {
    ("unverified", "submit"): "pending",
    ("rejected", "submit"): "pending",
    ("pending", "approve"): "verified",
    ("pending", "reject"): "rejected",
}
STATES = ("unverified", "pending", "verified", "rejected")
ACTIONS = ("submit", "approve", "reject")


def act(client: FlaskClient, seller: Caller, staff: Caller, action: str):
    if action == "submit":
        return call(client, seller, "POST", "/me/kyc")
    body = {"reason": "the ID card is blurry"} if action == "reject" else None
    return call(client, staff, "POST", f"/{seller.uuid}/kyc/{action}", json=body)


def test_submitted_then_verified_with_who_and_when(
    client: FlaskClient, services: Services, seller: Caller, staff: Caller
) -> None:
    ok(call(client, seller, "PATCH", "/me", json={"bank_account": BANK}))
    submitted = ok(call(client, seller, "POST", "/me/kyc"))
    assert submitted["kyc"]["state"] == "pending"
    assert submitted["kyc"]["submitted_at"] is not None
    assert submitted["kyc"]["reviewed_at"] is None
    assert "reviewed_by" not in submitted["kyc"]  # the seller does not see who reviews

    verified = ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/approve"))
    assert verified["kyc"]["state"] == "verified"
    assert verified["kyc"]["reviewed_by"] == str(staff.uuid)
    assert verified["kyc"]["reviewed_at"] >= verified["kyc"]["submitted_at"]
    assert verified["can_sell"] is True
    own = ok(call(client, seller, "GET", "/me"))
    assert own["kyc"]["state"] == "verified"
    assert "reviewed_by" not in own["kyc"]

    assert [(name, payload["seller"]) for name, payload in events(services)] == [
        ("seller.updated", str(seller.uuid)),
        ("seller.kyc_submitted", str(seller.uuid)),
        ("seller.verified", str(seller.uuid)),
    ]
    assert events(services)[1][1]["because"] == "submit"
    assert events(services)[2][1]["by"] == str(staff.uuid)


def test_a_rejected_seller_sees_why_fixes_and_submits_again(
    client: FlaskClient, services: Services, seller: Caller, staff: Caller
) -> None:
    ok(call(client, seller, "PATCH", "/me", json={"bank_account": BANK}))
    ok(call(client, seller, "POST", "/me/kyc"))
    reason = "The holder name differs from the ID card"
    rejected = ok(
        call(client, staff, "POST", f"/{seller.uuid}/kyc/reject", json={"reason": reason})
    )
    assert (rejected["kyc"]["state"], rejected["kyc"]["rejection_reason"]) == ("rejected", reason)
    assert ok(call(client, seller, "GET", "/me"))["kyc"]["rejection_reason"] == reason

    fixed = {**BANK, "holder_name": "Budi Santoso Wijaya"}
    still = ok(call(client, seller, "PATCH", "/me", json={"bank_account": fixed}))
    assert still["kyc"]["state"] == "rejected"  # fixing does not submit by itself
    again = ok(call(client, seller, "POST", "/me/kyc"))
    assert again["kyc"] == {
        "state": "pending",
        "submitted_at": again["kyc"]["submitted_at"],
        "reviewed_at": None,
        "rejection_reason": None,
    }
    assert ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/approve"))["kyc"]["state"] == (
        "verified"
    )
    names = [name for name, _ in events(services)]
    assert names.count("seller.kyc_rejected") == 1
    assert names.count("seller.kyc_submitted") == 2
    assert dict(events(services))["seller.kyc_rejected"]["reason"] == reason


@pytest.mark.parametrize(
    ("state", "action"),
    [(s, a) for s in STATES for a in ACTIONS if (s, a) not in ALLOWED],
)
def test_every_other_step_is_refused_and_changes_nothing(
    client: FlaskClient,
    services: Services,
    seller: Caller,
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
    state: str,
    action: str,
) -> None:
    before = to_state(seller, state)
    rows, outbox = profile_rows(services), events(services)
    refused = problem(act(client, seller, staff, action), 409, "invalid-kyc-transition")
    assert (refused["kyc_state"], refused["action"]) == (state, action)
    assert ok(call(client, staff, "GET", f"/{seller.uuid}")) == before
    assert (profile_rows(services), events(services)) == (rows, outbox)


@pytest.mark.parametrize(("state", "action"), sorted(ALLOWED))
def test_each_allowed_step_goes_where_the_table_says(
    client: FlaskClient,
    seller: Caller,
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
    state: str,
    action: str,
) -> None:
    to_state(seller, state)
    assert ok(act(client, seller, staff, action))["kyc"]["state"] == ALLOWED[(state, action)]


def test_submitting_without_a_payout_account_is_refused(
    client: FlaskClient, services: Services, seller: Caller
) -> None:
    refused = problem(call(client, seller, "POST", "/me/kyc"), 422, "kyc-incomplete")
    assert "bank_account" in refused["errors"]
    assert ok(call(client, seller, "GET", "/me"))["kyc"]["state"] == "unverified"
    assert events(services) == []


def test_a_verified_sellers_new_payout_account_is_reviewed_again(
    client: FlaskClient,
    services: Services,
    seller: Caller,
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    verified = to_state(seller, "verified")
    renamed = ok(call(client, seller, "PATCH", "/me", json={"display_name": "Toko Baru"}))
    assert renamed["kyc"]["state"] == "verified"  # only the payout account is re-reviewed
    same = ok(call(client, seller, "PATCH", "/me", json={"bank_account": BANK}))
    assert same["kyc"]["state"] == "verified"  # the same account again is no change
    assert same["bank_account"]["updated_at"] == verified["bank_account"]["updated_at"]

    new_account = {**BANK, "account_number": "0099 1234 5678"}
    changed = ok(call(client, seller, "PATCH", "/me", json={"bank_account": new_account}))
    assert changed["kyc"]["state"] == "pending"
    assert changed["kyc"]["submitted_at"] > verified["kyc"]["submitted_at"]
    assert changed["bank_account"]["last4"] == "5678"
    assert changed["can_sell"] is True  # selling goes on; payouts wait for the review
    last = events(services)[-1]
    assert last[0] == "seller.kyc_submitted"
    assert last[1]["because"] == "change_bank_account"
    assert ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/approve"))["kyc"]["state"] == (
        "verified"
    )


def test_two_staff_deciding_at_once_one_wins(
    app: Flask,
    client: FlaskClient,
    services: Services,
    seller: Caller,
    log_in_as: Callable[..., Caller],
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    to_state(seller, "pending")
    reviewers = [log_in_as("staff") for _ in range(6)]
    statuses: dict[str, int] = {}
    start = threading.Barrier(len(reviewers))

    def decide(index: int, reviewer: Caller) -> None:
        action = "approve" if index % 2 else "reject"
        start.wait()
        answer = act(app.test_client(), seller, reviewer, action)
        statuses[f"{action}-{index}"] = answer.status_code

    threads = [threading.Thread(target=decide, args=pair) for pair in enumerate(reviewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses.values()) == [200] + [409] * 5
    winner = next(action for action, status in statuses.items() if status == 200)
    decided = [name for name, _ in events(services) if name != "seller.updated"]
    assert decided[-1] == ("seller.verified" if winner.startswith("approve") else
                           "seller.kyc_rejected")  # fmt: skip
    assert decided.count("seller.verified") + decided.count("seller.kyc_rejected") == 1


def test_a_pending_sellers_new_payout_account_starts_the_review_over(
    client: FlaskClient,
    services: Services,
    seller: Caller,
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    seen = to_state(seller, "pending")  # what the reviewer opened
    new_account = {**BANK, "account_number": "0099 1234 5678"}
    changed = ok(call(client, seller, "PATCH", "/me", json={"bank_account": new_account}))
    assert changed["kyc"]["state"] == "pending"
    assert changed["kyc"]["submitted_at"] > seen["kyc"]["submitted_at"]
    last = events(services)[-1]
    assert (last[0], last[1]["because"]) == ("seller.kyc_submitted", "change_bank_account")

    rows, outbox = profile_rows(services), events(services)
    stale = {"submitted_at": seen["kyc"]["submitted_at"]}
    refused = problem(
        call(client, staff, "POST", f"/{seller.uuid}/kyc/approve", json=stale),
        409,
        "stale-kyc-review",
    )
    assert refused["submitted_at"] == changed["kyc"]["submitted_at"]
    problem(
        call(client, staff, "POST", f"/{seller.uuid}/kyc/reject", json={**stale, "reason": "x"}),
        409,
        "stale-kyc-review",
    )
    assert (profile_rows(services), events(services)) == (rows, outbox)

    current = ok(call(client, staff, "GET", f"/{seller.uuid}"))
    assert current["bank_account"]["last4"] == "5678"
    reviewed = {"submitted_at": current["kyc"]["submitted_at"]}
    verified = ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/approve", json=reviewed))
    assert verified["kyc"]["state"] == "verified"


def test_a_decision_names_its_submission_or_none(
    client: FlaskClient,
    seller: Caller,
    staff: Caller,
    to_state: Callable[[Caller, str], dict[str, Any]],
) -> None:
    seen = to_state(seller, "pending")
    body = {"reason": "blurry", "submitted_at": seen["kyc"]["submitted_at"]}
    rejected = ok(call(client, staff, "POST", f"/{seller.uuid}/kyc/reject", json=body))
    assert rejected["kyc"]["state"] == "rejected"
    naive = {"submitted_at": "2026-11-29T08:15:02"}
    problem(
        call(client, staff, "POST", f"/{seller.uuid}/kyc/approve", json=naive),
        422,
        "validation-failed",
    )
