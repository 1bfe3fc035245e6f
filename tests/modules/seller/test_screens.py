"""The seller screens through a browser's session (the test client, real PostgreSQL and Redis,
and the embedded default where marked): the KYC review queue and a seller's page for staff,
the review's approve and reject, a seller's own page and its Withdraw form; who may open what,
CSRF, bad input, and figures equal to the REST API's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.clock import travel
from tests.modules.conftest import Caller
from tests.modules.ledger.screens_support import (
    adjust,
    api_caller,
    api_get,
    browser_of,
    figure,
    notices,
    text_of,
    web_user,
)
from tests.modules.marketplace.conftest import MadeProduct
from tests.modules.web.conftest import hidden_token
from tests.servers import Services

from .conftest import ACCOUNT_NUMBER, BANK, call, ok, sql
from .test_balances import release, sell

WEB = "/web/seller"
SETTLEMENTS_API = "/api/v1/settlements"


@pytest.fixture(autouse=True)
def minimum(config: dict[str, Any]) -> None:
    """Settlements of 5,000.00 and more (the default minimum is 10,000.00)."""
    config["module_env"] = {**config.get("module_env", {}), "settlement_minimum": "IDR:5000"}


def seller_in(app: Flask, api: FlaskClient, state: str = "verified", funds: str | None = None):
    """A seller with a payout account brought to a KYC state through the API, with ``funds``
    available; their API session (a web login ends it)."""
    seller = api_caller(app, api, "seller")
    ok(call(api, seller, "PATCH", "/me", json={"bank_account": BANK}))
    if state != "unverified":
        ok(call(api, seller, "POST", "/me/kyc"))
    staff = api_caller(app, api, "staff")
    if state == "verified":
        ok(call(api, staff, "POST", f"/{seller.uuid}/kyc/approve"))
    if funds is not None:
        adjust(api, staff, seller.uuid, funds)
    return seller


def kyc_state(app: Flask, api: FlaskClient, seller: Caller) -> dict[str, Any]:
    staff = api_caller(app, api, "staff")
    return ok(call(api, staff, "GET", f"/{seller.uuid}"))["kyc"]


def settlements_of(app: Flask, api: FlaskClient, seller: Caller) -> list[dict[str, Any]]:
    staff = api_caller(app, api, "staff")
    return api_get(api, staff, SETTLEMENTS_API, seller=str(seller.uuid))["items"]


def withdraw(browser: FlaskClient, amount: str = "", **fields: str) -> TestResponse:
    """Submit the Withdraw form of the seller's page as it was drawn (``fields`` replace its
    hidden ones); the page it leads to."""
    page = browser.get(f"{WEB}/me")
    assert page.status_code == 200
    form = {
        "csrf_token": hidden_token(page.text),
        "idempotency_key": _hidden(page, "idempotency_key"),
        "currency": "IDR",
        "amount": amount,
    }
    form.update(fields)
    return browser.post(f"{WEB}/me/withdraw", data=form, follow_redirects=True)


def _hidden(page: TestResponse, name: str) -> str:
    marker = f'name="{name}" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def after_redirect(response: TestResponse) -> TestResponse:
    assert [step.status_code for step in response.history] == [303], response.status_code
    assert response.status_code == 200
    return response


# -- staff: the review queue and a seller's page ------------------------------------------------


def test_the_review_queue_shows_the_pending_sellers_to_staff_and_admins(either_app: Flask) -> None:
    api = either_app.test_client()
    waiting = seller_in(either_app, api, "pending")
    unverified = seller_in(either_app, api, "unverified")

    for role in ("staff", "admin"):
        browser = web_user(either_app, role)
        queue = browser.get(f"{WEB}/")
        assert queue.status_code == 200
        assert waiting.email in queue.text
        assert unverified.email not in queue.text
        assert "The KYC review queue" in queue.text
        every = browser.get(f"{WEB}/", query_string={"kyc_state": ""})
        assert waiting.email in every.text
        assert unverified.email in every.text
        by_email = browser.get(f"{WEB}/", query_string={"kyc_state": "", "email_prefix": "nobody"})
        assert "No seller matches these filters." in by_email.text


def test_a_bad_filter_says_what_is_wrong_and_lists_nothing(app: Flask) -> None:
    seller_in(app, app.test_client(), "pending")
    browser = web_user(app, "staff")

    refused = browser.get(f"{WEB}/", query_string={"kyc_state": "sleepy"})
    assert refused.status_code == 422
    ((category, message),) = notices(refused)
    assert category == "error"
    assert message.startswith("KYC state: Must be one of")
    assert "api.seller" not in refused.text

    forged = browser.get(f"{WEB}/", query_string={"cursor": "not-a-cursor"})
    assert forged.status_code == 422
    assert "cursor" in notices(forged)[0][1]


def test_the_seller_screens_are_refused_to_other_roles_and_strangers(app: Flask) -> None:
    seller = seller_in(app, app.test_client(), "pending")
    for role in ("customer", "seller"):
        browser = web_user(app, role)
        for path in ("/", f"/{seller.uuid}"):
            refused = browser.get(f"{WEB}{path}")
            assert refused.status_code == 403, (role, path)
            assert "this needs the role staff or admin" in refused.text
    for role in ("customer", "staff", "admin"):
        assert web_user(app, role).get(f"{WEB}/me").status_code == 403
    stranger = app.test_client()
    for path in ("/", "/me", f"/{seller.uuid}"):
        sent = stranger.get(f"{WEB}{path}")
        assert sent.status_code == 303
        assert sent.headers["Location"].startswith("/web/login?next=")
    assert web_user(app, "staff").get(f"{WEB}/{UNKNOWN_ID}").status_code == 404


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_approving_verifies_the_submission_staff_saw(either_app: Flask, services: Services) -> None:
    api = either_app.test_client()
    seller = seller_in(either_app, api, "pending")
    browser = web_user(either_app, "staff")
    page = browser.get(f"{WEB}/{seller.uuid}")
    assert page.status_code == 200
    assert "•••• 3977" in page.text
    # The account number is never shown (not even its digits before the last four: the page's
    # random CSRF token may hold any four digits, so the whole unmasked part is looked for).
    unmasked = ACCOUNT_NUMBER[:-4]
    assert unmasked not in page.text
    assert unmasked.replace("-", "") not in page.text
    submitted_at = kyc_state(either_app, api, seller)["submitted_at"]
    assert _hidden(page, "submitted_at") == submitted_at

    shown = after_redirect(
        browser.post(
            f"{WEB}/{seller.uuid}/kyc/approve",
            data={"csrf_token": hidden_token(page.text), "submitted_at": submitted_at},
            follow_redirects=True,
        )
    )

    assert ("success", "Api Seller is verified.") in notices(shown)
    assert kyc_state(either_app, api, seller)["state"] == "verified"
    assert "kyc/approve" not in shown.text  # nothing left to review


def test_a_submission_newer_than_the_page_is_neither_approved_nor_rejected(app: Flask) -> None:
    api = app.test_client()
    seller = seller_in(app, api, "pending")
    browser = web_user(app, "staff")
    page = browser.get(f"{WEB}/{seller.uuid}")
    seen = {"csrf_token": hidden_token(page.text), "submitted_at": _hidden(page, "submitted_at")}
    # The seller gives another payout account: a new submission the reviewer has not seen.
    new_bank = {**BANK, "account_number": "1234-5678-90"}
    ok(call(api, seller, "PATCH", "/me", json={"bank_account": new_bank}))

    for action, done, extra in (
        ("approve", "approved", {}),
        ("reject", "rejected", {"reason": "blurry"}),
    ):
        shown = after_redirect(
            browser.post(
                f"{WEB}/{seller.uuid}/kyc/{action}", data={**seen, **extra}, follow_redirects=True
            )
        )
        ((category, message),) = notices(shown)
        assert category == "error"
        assert f"The review was not {done}: the seller submitted again" in message
    review = kyc_state(app, api, seller)
    assert review["state"] == "pending"
    assert review["submitted_at"] != seen["submitted_at"]


def test_rejecting_needs_a_reason_which_the_seller_then_reads(app: Flask) -> None:
    api = app.test_client()
    seller = seller_in(app, api, "pending")
    browser = web_user(app, "staff")
    page = browser.get(f"{WEB}/{seller.uuid}")
    form = {"csrf_token": hidden_token(page.text), "submitted_at": _hidden(page, "submitted_at")}

    blank = after_redirect(
        browser.post(
            f"{WEB}/{seller.uuid}/kyc/reject", data={**form, "reason": "  "}, follow_redirects=True
        )
    )
    assert ("error", "The review was not rejected: Reason: Missing data for required field.") in (
        notices(blank)
    )
    assert kyc_state(app, api, seller)["state"] == "pending"

    rejected = after_redirect(
        browser.post(
            f"{WEB}/{seller.uuid}/kyc/reject",
            data={**form, "reason": "The holder name differs from the ID card"},
            follow_redirects=True,
        )
    )
    assert notices(rejected)[0][0] == "success"
    review = kyc_state(app, api, seller)
    assert (review["state"], review["rejection_reason"]) == (
        "rejected",
        "The holder name differs from the ID card",
    )
    own = browser_of(app, seller.email).get(f"{WEB}/me")
    assert "The reviewer said: “The holder name differs from the ID card”" in text_of(own)


def test_changes_without_the_csrf_token_are_refused_and_change_nothing(either_app: Flask) -> None:
    api = either_app.test_client()
    waiting = seller_in(either_app, api, "pending")
    verified = seller_in(either_app, api, "verified", funds="9500.00")
    staff = web_user(either_app, "staff")
    page = staff.get(f"{WEB}/{waiting.uuid}")
    submitted_at = _hidden(page, "submitted_at")

    for token in ({}, {"csrf_token": "forged"}):
        data = {"submitted_at": submitted_at, **token}
        refused = staff.post(f"{WEB}/{waiting.uuid}/kyc/approve", data=data)
        assert refused.status_code == 403
        assert "did not come from a page of this session" in refused.text
    assert kyc_state(either_app, api, waiting)["state"] == "pending"

    seller = browser_of(either_app, verified.email)
    refused = seller.post(f"{WEB}/me/withdraw", data={"idempotency_key": "k", "currency": "IDR"})
    assert refused.status_code == 403
    assert settlements_of(either_app, api, verified) == []


# -- the seller's own page and Withdraw ---------------------------------------------------------


def test_a_seller_withdraws_all_that_is_available_and_sees_it(either_app: Flask) -> None:
    api = either_app.test_client()
    verified = seller_in(either_app, api, "verified", funds="9500.00")
    browser = browser_of(either_app, verified.email)
    page = browser.get(f"{WEB}/me")
    assert page.status_code == 200
    assert (figure(page, "available"), figure(page, "pending")) == ("9500.00", "0.00")
    assert "No settlement in IDR yet." in page.text

    shown = after_redirect(withdraw(browser))

    (made,) = settlements_of(either_app, api, verified)
    assert (made["amount"], made["currency"], made["state"]) == ("9500.00", "IDR", "pending")
    assert notices(shown) == [
        ("success", f"{made['name']}: 9500.00 IDR is on its way to your bank account •••• 3977.")
    ]
    assert figure(shown, "available") == "0.00"
    assert made["name"] in shown.text
    staff = api_caller(either_app, api, "staff")
    balance = api_get(api, staff, f"/api/v1/sellers/{verified.uuid}/balance")
    assert (figure(shown, "available"), figure(shown, "pending"), figure(shown, "owed")) == (
        balance["available"],
        balance["pending"],
        balance["owed"],
    )


def test_a_form_submitted_twice_pays_out_once(app: Flask) -> None:
    api = app.test_client()
    verified = seller_in(app, api, "verified", funds="12000.00")
    browser = browser_of(app, verified.email)
    page = browser.get(f"{WEB}/me")
    form = {
        "csrf_token": hidden_token(page.text),
        "idempotency_key": _hidden(page, "idempotency_key"),
        "currency": "IDR",
        "amount": "7000.00",
    }

    first = after_redirect(browser.post(f"{WEB}/me/withdraw", data=form, follow_redirects=True))
    again = after_redirect(browser.post(f"{WEB}/me/withdraw", data=form, follow_redirects=True))

    (made,) = settlements_of(app, api, verified)
    assert made["amount"] == "7000.00"
    assert notices(first) == notices(again)
    assert made["name"] in notices(again)[0][1]
    assert figure(again, "available") == "5000.00"
    # The same form again with the amount spelled otherwise, or with another amount: the
    # withdrawal it made stands, and the seller is told the form was used.
    for amount in ("7000", "6000.00"):
        reused = after_redirect(
            browser.post(
                f"{WEB}/me/withdraw", data={**form, "amount": amount}, follow_redirects=True
            )
        )
        if amount == "7000":
            assert notices(reused) == notices(first)
        else:
            assert "already used for a withdrawal" in notices(reused)[0][1]
    assert len(settlements_of(app, api, verified)) == 1
    # A new page's form is a new withdrawal.
    after_redirect(withdraw(browser, "5000.00"))
    assert [s["amount"] for s in settlements_of(app, api, verified)] == ["5000.00", "7000.00"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "100.00"}, "a settlement is at least 5000.00 IDR; you asked for 100.00"),
        ({"amount": "9500.01"}, "you have 9500.00 IDR available, less than the 9500.01 asked"),
        ({"amount": "lots"}, "Amount: a decimal number as a string"),
        ({"amount": "0.001"}, "Amount: a decimal number as a string"),
        ({"currency": "XYZ"}, "Currency: Must be one of: IDR, USD."),
        ({"currency": "USD"}, "this marketplace makes no settlements in USD"),
        ({"idempotency_key": ""}, "The form is incomplete: reload the page"),
    ],
)
def test_a_refused_withdrawal_says_why_and_pays_nothing(
    app: Flask, fields: dict[str, str], message: str
) -> None:
    api = app.test_client()
    verified = seller_in(app, api, "verified", funds="9500.00")
    browser = browser_of(app, verified.email)

    shown = after_redirect(withdraw(browser, **fields))

    ((category, text),) = notices(shown)
    assert category == "error"
    assert text.startswith("Nothing was withdrawn: "), text
    assert message in text, text
    assert figure(browser.get(f"{WEB}/me"), "available") == "9500.00"
    assert settlements_of(app, api, verified) == []


def test_a_seller_not_yet_verified_is_told_and_nothing_is_paid(either_app: Flask) -> None:
    api = either_app.test_client()
    waiting = seller_in(either_app, api, "pending", funds="9500.00")
    browser = browser_of(either_app, waiting.email)
    page = browser.get(f"{WEB}/me")
    assert "Withdrawals need a verified KYC review; yours is pending." in text_of(page)

    shown = after_redirect(withdraw(browser))

    assert notices(shown) == [
        ("error", "Nothing was withdrawn: only a verified seller withdraws; your KYC review is "
                  "pending"),
        ("warning", "Withdrawals need a verified KYC review; yours is pending."),
    ]  # fmt: skip
    assert figure(shown, "available") == "9500.00"
    assert settlements_of(either_app, api, waiting) == []


def test_a_bad_currency_on_the_page_is_a_message(app: Flask) -> None:
    verified = seller_in(app, app.test_client(), "verified")
    page = browser_of(app, verified.email).get(f"{WEB}/me", query_string={"currency": "idr"})
    assert page.status_code == 422
    assert notices(page) == [("error", "Currency: Must be one of: IDR, USD.")]


# -- figures equal the API's ---------------------------------------------------------------------


def test_staff_see_a_sellers_balances_and_settlements_as_the_api_gives_them(
    app: Flask,
    services: Services,
    make_product: Callable[..., MadeProduct],
) -> None:
    api = app.test_client()
    seller = seller_in(app, api, "verified")
    customer = api_caller(app, api, "customer")
    staff = api_caller(app, api, "staff")
    sold = make_product("10000", name="BANDENG", seller_id=seller.user_id)
    sell(api, customer, staff, sold, services)  # 9,500.00 for the seller
    with travel(timedelta(days=8)):
        assert release(app) == 1
    sell(api, customer, staff, sold, services, "2")  # 19,000.00 more, on hold
    made = ok(api.post(SETTLEMENTS_API, json={"amount": "6000.00"}, headers=seller.headers), 201)

    browser = web_user(app, "admin")
    page = browser.get(f"{WEB}/{seller.uuid}")

    assert page.status_code == 200
    balance = api_get(api, staff, f"/api/v1/sellers/{seller.uuid}/balance")
    assert (balance["available"], balance["pending"]) == ("3500.00", "19000.00")
    for name in ("available", "pending", "owed"):
        assert figure(page, name) == balance[name], name
    assert f"{balance['next_release_amount']}&nbsp;" in page.text
    listed = api_get(api, staff, SETTLEMENTS_API, seller=str(seller.uuid))["items"]
    assert [s["name"] for s in listed] == [made["name"]]
    assert f'<th scope="row">{made["name"]}</th>' in page.text
    assert "6000.00&nbsp;" in page.text
    assert sql(services, "SELECT count(*) FROM seller_settlement") == [(1,)]


def test_settlements_come_in_keyset_pages(app: Flask) -> None:
    api = app.test_client()
    verified = seller_in(app, api, "verified", funds="15000.00")
    for amount in ("5000.00", "5000.00", "5000.00"):
        ok(api.post(SETTLEMENTS_API, json={"amount": amount}, headers=verified.headers), 201)
    names = [s["name"] for s in settlements_of(app, api, verified)]
    browser = web_user(app, "staff")

    # Query names that are url_for's own or a view argument's stay query arguments.
    odd = {"seller_id": str(verified.uuid), "endpoint": "x", "_external": "1"}
    first = browser.get(f"{WEB}/{verified.uuid}", query_string={"limit": "2", **odd})
    assert first.status_code == 200
    assert [n for n in names if n in first.text] == names[:2]
    next_url = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert next_url.startswith(f"{WEB}/{verified.uuid}?")  # not made absolute
    second = browser.get(next_url.replace("&amp;", "&"))
    assert second.status_code == 200
    assert [n for n in names if n in second.text] == names[2:]
    assert 'rel="next"' not in second.text


def test_a_seller_sees_their_withdrawal_while_the_replica_lags(
    app: Flask, paused_replica: Services
) -> None:
    api = app.test_client()
    verified = seller_in(app, api, "verified", funds="9500.00")
    browser = browser_of(app, verified.email)

    shown = after_redirect(withdraw(browser))

    # The withdrawal's answer set the lapak_lsn cookie: the paused replica lacks it, so the
    # page after the redirect reads the primary.
    assert browser.get_cookie("lapak_lsn") is not None
    assert figure(shown, "available") == "0.00"
    assert notices(shown)[0][0] == "success"
