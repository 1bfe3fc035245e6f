"""The public pay page, read and submitted as a browser does (the test client keeps the payer's
cookie): what it shows and hides, the one 404 for every dead link, the throttle, the form's
CSRF defence, two payers of one single-use link at once, the status for polling, and the token
kept out of the logs."""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import clock
from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.modules.payment.conftest import notification, notify, provider_secret
from tests.servers import Services

from .conftest import (
    API,
    Invoice,
    events,
    form_token,
    made,
    ok,
    pay,
    problem,
    sql,
    without_request_id,
)

JSON = {"Accept": "application/json"}


def latest_transaction(services: Services) -> dict[str, Any]:
    ((reference, amount, currency, state, guest),) = sql(
        services,
        "SELECT reference, amount, currency, state, guest FROM payment_transaction "
        "ORDER BY id DESC LIMIT 1",
    )
    return {"reference": reference, "amount": str(amount), "currency": currency,
            "state": state, "guest": guest}  # fmt: skip


def gateway_says(app: Flask, client: FlaskClient, services: Services, state: str) -> None:
    """The demo gateway's signed notification for the latest transaction."""
    response = notify(client, provider_secret(app), notification(latest_transaction(services),
                                                                 state))  # fmt: skip
    assert response.status_code == 200, response.get_json()


def test_the_page_shows_the_invoice_and_nothing_about_the_customer(
    client: FlaskClient, staff: Caller, seller: Caller, customer: Caller, invoice: Invoice
) -> None:
    ok(client.patch("/api/v1/sellers/me", json={"display_name": "Toko Bandeng Segar"},
                    headers=seller.headers))  # fmt: skip
    link = made(client, staff, invoice.id)
    page = client.get(link["path"])

    assert page.status_code == 200
    text = page.text
    assert invoice.number in text
    assert "11,100.00 IDR" in text
    assert "Toko Bandeng Segar" in text
    assert "Awaiting payment" in text
    assert "Demo gateway" in text
    assert "Manual bank transfer" in text
    assert 'value="wallet"' not in text  # the customer's own money is never a guest's to spend
    assert " checked" not in text  # no method chosen for the payer (a careless click blocks)
    for secret in (customer.email, str(customer.uuid), customer.email.split("@")[0]):
        assert secret not in text
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    cookie = page.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/pay/"):
        assert attribute in cookie


def test_unknown_expired_revoked_and_used_links_answer_the_same_404(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    invoice: Invoice,
    make_product: Callable[..., Any],
    customer: Caller,
    seller: Caller,
    services: Services,
) -> None:
    from .conftest import unpaid_invoice

    revoked = made(client, staff, invoice.id, amount="100.00")
    ok(client.post(f"{API}/{revoked['id']}/revoke", headers=staff.headers))
    soon = (clock.now() + timedelta(seconds=1)).isoformat()
    expired = made(client, staff, invoice.id, amount="100.00", expires_at=soon)
    used = made(client, staff, invoice.id, amount="100.00")
    pay(client, used["path"])
    gateway_says(app, client, services, "success")
    stranger = app.test_client()  # another browser: it paid nothing through the used link

    answers = {
        "unknown": stranger.get("/pay/" + secrets.token_urlsafe(32)),
        "revoked": stranger.get(revoked["path"]),
        "used": stranger.get(used["path"]),
        "malformed": stranger.get("/pay/not-a-token"),
        "deeper": stranger.get(revoked["path"] + "/anything"),
    }
    with clock.travel(timedelta(seconds=5)):
        answers["expired"] = stranger.get(expired["path"])
    # A link closed because its invoice was paid, reversed or cancelled is the same again.
    other = unpaid_invoice(client, customer, make_product("5000", seller_id=seller.user_id).id)
    closed = made(client, staff, other.id)
    ((order,),) = sql(services, "SELECT o.uuid FROM marketplace_sale_order o JOIN "
                      "marketplace_account_move m ON m.order_id = o.id WHERE m.uuid = %s",
                      other.id)  # fmt: skip
    ok(client.post(f"/api/v1/marketplace/orders/{order}/cancel", headers=customer.headers))
    answers["closed"] = stranger.get(closed["path"])

    bodies = {name: without_request_id(answer) for name, answer in answers.items()}
    assert {answer.status_code for answer in answers.values()} == {404}
    assert len(set(bodies.values())) == 1, bodies
    for answer in answers.values():
        assert "Set-Cookie" not in answer.headers
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert answer.headers["Cache-Control"] == "no-store"
    assert b"Payment link not found" in bodies["unknown"]
    # The page's request id is the answer's.
    request_id = answers["used"].headers["X-Request-ID"]
    assert f"Reference: {request_id}".encode() in answers["used"].data


def test_a_thousand_guesses_from_one_ip_are_throttled(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice
) -> None:
    link = made(client, staff, invoice.id)
    statuses: list[int] = []
    retry_after: set[str] = set()
    for _ in range(1000):
        answer = client.get("/pay/" + secrets.token_urlsafe(32), environ_base={
            "REMOTE_ADDR": "127.0.0.1"})  # fmt: skip
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            body = problem(answer, 429, "pay-link-throttled")
            assert body["instance"] == "/pay/<token>"  # never the guess
            retry_after.add(answer.headers["Retry-After"])

    assert statuses.count(404) == 20  # LAPAK_PAYLINK_MAX_IP_FAILURES
    assert statuses.count(429) == 980
    assert statuses[:20] == [404] * 20
    assert all(int(value) > 0 for value in retry_after)
    # While locked out, that address gets nothing, a real link included; another address does.
    assert client.get(link["path"], environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 429
    other = client.get(link["path"], environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 200


def test_a_valid_link_gives_back_its_count(
    client: FlaskClient, staff: Caller, invoice: Invoice
) -> None:
    link = made(client, staff, invoice.id)
    for _ in range(60):  # three times the limit of failures: a real link is never one
        assert client.get(link["path"]).status_code == 200
    for _ in range(19):
        assert client.get("/pay/" + secrets.token_urlsafe(32)).status_code == 404
    assert client.get(link["path"]).status_code == 200


def test_paying_starts_a_guest_transaction_and_the_gateway_sends_the_payer_back(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    link = made(client, staff, invoice.id)
    started = pay(client, link["path"])
    assert started.status_code == 303
    checkout = started.headers["Location"]
    assert "/pay/demo/" in checkout  # the demo gateway's page, not shadowed by /pay/<token>
    tx = latest_transaction(services)
    assert (tx["state"], tx["guest"], tx["amount"]) == ("pending", True, "11100.00")
    ((created_by,),) = sql(
        services, "SELECT created_by_id FROM payment_transaction ORDER BY id DESC LIMIT 1"
    )
    assert created_by is None  # nobody logged in started it

    hosted = client.get(checkout)
    assert hosted.status_code == 200
    assert "Save this card" not in hosted.text  # a guest's card is not the customer's
    chosen = client.post(checkout, data={"outcome": "success", "save_card": "1",
                                         "card_number": "4242424242424242", "exp_month": "12",
                                         "exp_year": "2030"})  # fmt: skip
    assert chosen.status_code == 303
    back = chosen.headers["Location"]
    assert back.startswith("/pay/return/")
    assert "Payment processing" in client.get(back).text
    assert "Payment processing" in client.get(link["path"]).text

    gateway_says(app, client, services, "success")
    assert "Paid" in client.get(back).text
    page = client.get(link["path"])
    assert page.status_code == 200
    assert "Thank you" in page.text
    assert "<form" not in page.text  # no new payment
    assert sql(services, "SELECT count(*) FROM payment_token")[0][0] == 0
    ((payment_state, residual),) = sql(
        services, "SELECT payment_state, amount_residual FROM marketplace_account_move "
        "WHERE uuid = %s", invoice.id)  # fmt: skip
    assert (payment_state, residual) == ("paid", 0)

    run_jobs(app)
    ((state, uses, paid),) = sql(services, "SELECT state, uses, amount_paid FROM paylink_link")
    assert (state, uses, str(paid)) == ("used", 1, "11100.00")
    names = [name for name, _ in events(services)]
    assert names == ["payment_link.created", "payment_link.paid"]
    _, paid_event = events(services)[1]
    assert paid_event["reference"] == latest_transaction(services)["reference"]
    assert paid_event["invoice"] == invoice.id


def test_a_failed_payment_leaves_the_link_payable(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    pay(client, link["path"])
    gateway_says(app, client, services, "failed")
    page = client.get(link["path"])
    assert "Payment not completed" in page.text
    assert "<form" in page.text
    # Another browser sees a link awaiting payment, and may pay it.
    other = app.test_client()
    assert "Awaiting payment" in other.get(link["path"]).text
    assert pay(other, link["path"]).status_code == 303
    assert sql(services, "SELECT count(*) FROM payment_transaction WHERE state = 'pending'")[0][0]


def test_two_payers_of_one_single_use_link_at_once_make_one_payment(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    payers = [app.test_client() for _ in range(2)]
    tokens = [form_token(payer.get(link["path"]).text) for payer in payers]
    before = sql(services, "SELECT count(*) FROM payment_transaction")[0][0]
    start = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def submit(index: int) -> None:
        start.wait()
        answers[index] = payers[index].post(
            link["path"], data={"provider": "demo", "form_token": tokens[index]}
        )

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    locations = sorted(answer.headers["Location"] for answer in answers)
    assert [answer.status_code for answer in answers] == [303, 303]
    assert sql(services, "SELECT count(*) FROM payment_transaction")[0][0] == before + 1
    assert sql(services, "SELECT count(*) FROM paylink_attempt")[0][0] == 1
    assert sum("/pay/demo/" in location for location in locations) == 1
    loser = next(i for i, a in enumerate(answers) if "/pay/demo/" not in a.headers["Location"])
    assert answers[loser].headers["Location"] == link["path"]
    assert "A payment for this invoice is in progress" in payers[loser].get(link["path"]).text

    gateway_says(app, client, services, "success")
    # The winner sees its payment; the other browser saw the link live, so it is told the link
    # was paid (nobody's payment details); a browser that never saw it live gets the one 404.
    winner = 1 - loser
    assert "Thank you" in payers[winner].get(link["path"]).text
    lost = payers[loser].get(link["path"])
    assert lost.status_code == 200
    assert "Paid" in lost.text
    assert "This invoice is paid" in lost.text
    assert "<form" not in lost.text
    assert "Thank you" not in lost.text
    assert latest_transaction(services)["reference"] not in lost.text
    assert ok(payers[loser].get(link["path"] + "/status", headers=JSON))["status"] == "paid"
    stranger = app.test_client().get(link["path"])
    unknown = app.test_client().get("/pay/" + secrets.token_urlsafe(32))
    assert stranger.status_code == unknown.status_code == 404
    assert without_request_id(stranger) == without_request_id(unknown)
    assert "Set-Cookie" not in stranger.headers


def test_the_form_needs_its_token_and_the_browsers_cookie(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    token = form_token(client.get(link["path"]).text)

    missing = client.post(link["path"], data={"provider": "demo"})
    other_browser = app.test_client().post(
        link["path"], data={"provider": "demo", "form_token": token}
    )
    forged = client.post(link["path"], data={"provider": "demo", "form_token": "0" * 64})

    for answer in (missing, other_browser, forged):
        assert answer.status_code == 403
        assert "This form has expired" in answer.text
    assert sql(services, "SELECT count(*) FROM paylink_attempt")[0][0] == 0
    # A method the page does not offer is refused, and nothing is paid.
    wallet = client.post(link["path"], data={"provider": "wallet", "form_token": token})
    assert wallet.status_code == 422
    assert sql(services, "SELECT count(*) FROM paylink_attempt")[0][0] == 0


def test_the_status_for_polling_is_json_when_asked(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    status = link["path"] + "/status"

    shown = ok(client.get(status, headers=JSON))
    assert shown == {
        "status": "open",
        "invoice_number": invoice.number,
        "amount_due": "11100.00",
        "currency": "IDR",
        "merchant": shown["merchant"],
        "due_date": shown["due_date"],
        "methods": ["bank_transfer", "demo"],
        "payment": None,
    }
    assert "text/html" in client.get(status).content_type

    pay(client, link["path"])
    assert ok(client.get(status, headers=JSON))["status"] == "processing"
    assert ok(app.test_client().get(status, headers=JSON))["status"] == "in_progress"
    gateway_says(app, client, services, "success")
    mine = ok(client.get(status, headers=JSON))
    assert mine["status"] == "paid"
    assert mine["payment"]["state"] == "success"
    assert mine["methods"] == []

    # Anyone else now: the link is used; the same problem as for a link that never was.
    used = app.test_client().get(status, headers=JSON)
    unknown = app.test_client().get(f"/pay/{secrets.token_urlsafe(32)}/status", headers=JSON)
    for answer in (used, unknown):
        problem(answer, 404, "payment-link-not-found")
    strip = lambda answer: {k: v for k, v in answer.get_json().items() if k != "request_id"}  # noqa: E731
    assert strip(used) == strip(unknown)


def test_a_bank_transfer_through_a_link_shows_where_to_send_the_money(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    started = pay(client, link["path"], provider="bank_transfer")
    assert started.headers["Location"].startswith("/pay/return/")
    page = client.get(started.headers["Location"])
    tx = latest_transaction(services)
    assert tx["reference"] in page.text
    assert "Bank Central Asia" in page.text
    assert "000-000-0000" in page.text

    ((tx_id,),) = sql(services, "SELECT uuid FROM payment_transaction ORDER BY id DESC LIMIT 1")
    ok(client.post(f"/api/v1/payments/{tx_id}/confirm", headers=staff.headers))
    assert "Thank you" in client.get(link["path"]).text


def test_a_multi_use_link_takes_payments_until_the_invoice_is_paid(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id, amount="6000.00", single_use=False)
    first, second = app.test_client(), app.test_client()
    pay(first, link["path"])
    gateway_says(app, client, services, "success")
    assert "Awaiting payment" in second.get(link["path"]).text
    assert "5,100.00 IDR" in second.get(link["path"]).text  # what is left, less than 6000
    pay(second, link["path"])
    gateway_says(app, client, services, "success")
    assert app.test_client().get(link["path"]).status_code == 404  # the invoice is paid

    run_jobs(app)
    ((state, uses, paid, reason),) = sql(
        services, "SELECT state, uses, amount_paid, closed_reason FROM paylink_link"
    )
    assert (state, uses, str(paid), reason) == ("closed", 2, "11100.00", "invoice paid")
    assert [n for n, _ in events(services)].count("payment_link.paid") == 2


def test_the_token_never_reaches_the_logs(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    invoice: Invoice,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever is asked under /pay/<token> (a trailing slash, a deeper path, a method no route
    takes): no log line, no error's body and no stored request or audit row holds the token."""
    from app.log import JsonLineFormatter
    from tests.modules.audit.conftest import flushed

    link = made(client, staff, invoice.id)
    token = link["path"].removeprefix("/pay/")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonLineFormatter())  # as `lapak serve` writes its lines
    caplog.set_level(logging.INFO)
    logging.getLogger().addHandler(handler)
    path = link["path"]
    try:
        answers = [
            client.get(path),
            client.get(path + "/status", headers=JSON),
            pay(client, path),
            client.get(path + "/more"),
            client.get(path + "/"),
            client.put(path),
            client.delete(path),
            client.post(path + "/"),
            client.delete(path + "/status"),
            client.patch(path + "/status", headers=JSON),
            client.get(path + "/a/b/c?x=" + token),
        ]
    finally:
        logging.getLogger().removeHandler(handler)

    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "lapak.access"]
    assert len(access) == 12, access  # pay() opens the page, then posts its form
    assert {line["path"] for line in access} == {
        "/pay/<token>",
        "/pay/<token>/",
        "/pay/<token>/status",
        "/pay/<token>/<path:rest>",
    }
    assert token not in written.getvalue()
    assert token not in caplog.text
    for answer in answers:  # (the live page's form posts to the link: it holds it)
        if answer.status_code >= 400:
            assert token not in answer.text, (answer.request.method, answer.status_code)
    # A method no route takes: 405, its problem's instance the template, never the path.
    put = answers[5]
    assert put.status_code == 405
    assert put.get_json()["instance"] == "/pay/<token>"
    # The API's request log and the audit events (written off the request path) neither.
    flushed(app)
    stored = str(sql(services, "SELECT * FROM audit_request_log"))
    stored += str(sql(services, "SELECT * FROM audit_event"))
    assert token not in stored


def test_a_trailing_slash_opens_the_page_and_anything_deeper_is_the_one_404(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice
) -> None:
    """A chat app or a mail client may add a slash: the link still works. Any other path under
    a token, with any method, is the page every dead link gets (HTML, not a JSON error)."""
    link = made(client, staff, invoice.id)
    revoked = made(client, staff, invoice.id, amount="100.00")
    ok(client.post(f"{API}/{revoked['id']}/revoke", headers=staff.headers))
    browser = app.test_client()

    slashed = browser.get(link["path"] + "/")
    assert slashed.status_code == 200
    assert invoice.number in slashed.text
    # Its form posts to the link itself, and works.
    assert f'action="{link["path"]}"' in slashed.text
    paid = browser.post(link["path"], data={"provider": "demo",
                                            "form_token": form_token(slashed.text)})  # fmt: skip
    assert paid.status_code == 303

    stranger = app.test_client()
    dead = stranger.get("/pay/" + secrets.token_urlsafe(32))
    assert dead.status_code == 404
    for answer in (
        stranger.get(revoked["path"] + "/"),
        stranger.get(link["path"] + "/anything"),
        stranger.delete(link["path"] + "/status"),
        stranger.put(link["path"] + "/a/b"),
        stranger.post(link["path"] + "/x"),
    ):
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert without_request_id(answer) == without_request_id(dead)
        assert "Set-Cookie" not in answer.headers


def test_a_link_is_found_by_its_tokens_hash_never_by_the_token(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice
) -> None:
    """What the database compares is the SHA-256 of what was asked for (one index lookup on
    the digest): how much of a guess matches a real token's start makes no difference to it."""
    from sqlalchemy import event

    from modules.paylink.services import token_digest

    link = made(client, staff, invoice.id)
    token = link["path"].removeprefix("/pay/")
    near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")
    sent: list[str] = []
    engine = app.extensions["lapak.db"].primary

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append(f"{statement} {parameters}")

    event.listen(engine, "before_cursor_execute", remember)
    try:
        assert client.get(link["path"]).status_code == 200
        assert client.get("/pay/" + near_miss).status_code == 404
    finally:
        event.remove(engine, "before_cursor_execute", remember)

    everything = "\n".join(sent)
    assert token_digest(token) in everything
    assert token_digest(near_miss) in everything
    assert token not in everything
    assert near_miss not in everything


def test_requests_under_a_real_token_from_many_addresses_never_lock_it(
    client: FlaskClient, staff: Caller, invoice: Invoice
) -> None:
    """Nothing is counted per token: anyone holding a link (asking for paths under it that do
    not exist, from as many addresses as they like) cannot lock it for its payers."""
    link = made(client, staff, invoice.id)
    for n in range(25):
        answer = client.get(link["path"] + "/x", environ_base={"REMOTE_ADDR": f"10.0.0.{n}"})
        assert answer.status_code == 404
    fresh = client.get(link["path"], environ_base={"REMOTE_ADDR": "10.0.1.1"})
    assert fresh.status_code == 200


def test_a_double_submit_on_a_multi_use_link_starts_one_payment(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """One browser, the same form twice (a double click, the back button): the second starts
    nothing and shows the first."""
    link = made(client, staff, invoice.id, amount="6000.00", single_use=False)
    token = form_token(client.get(link["path"]).text)
    form = {"provider": "bank_transfer", "form_token": token}

    first = client.post(link["path"], data=form)
    second = client.post(link["path"], data=form)

    assert first.status_code == second.status_code == 303
    assert first.headers["Location"].startswith("/pay/return/")
    assert second.headers["Location"] == link["path"]
    assert sql(services, "SELECT count(*) FROM payment_transaction WHERE guest")[0][0] == 1
    assert sql(services, "SELECT count(*) FROM paylink_attempt")[0][0] == 1
    shown = client.get(link["path"])
    assert "Payment processing" in shown.text
    assert "<form" not in shown.text
    # Another browser still pays the rest.
    ((residual,),) = sql(services, "SELECT amount_residual FROM marketplace_account_move "
                         "WHERE uuid = %s", invoice.id)  # fmt: skip
    assert str(residual) == "5100.00"


def test_the_status_page_without_a_cookie_gives_a_form_that_works(
    app: Flask, staff: Caller, client: FlaskClient, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    browser = app.test_client()
    page = browser.get(link["path"] + "/status")  # as HTML, the first thing this browser asks
    assert page.status_code == 200
    assert 'value="None"' not in page.text
    assert "lapak_payer=" in " ".join(page.headers.getlist("Set-Cookie"))
    paid = browser.post(link["path"], data={"provider": "demo",
                                            "form_token": form_token(page.text)})  # fmt: skip
    assert paid.status_code == 303
    assert "/pay/demo/" in paid.headers["Location"]
    assert sql(services, "SELECT count(*) FROM paylink_attempt")[0][0] == 1


def test_revoking_a_link_cancels_the_bank_transfer_nobody_made(
    app: Flask, client: FlaskClient, issuer: Caller, own_invoice: Invoice, services: Services
) -> None:
    """A payer (or anyone the link was forwarded to) chose the bank transfer and never paid:
    the invoice had nothing due for days. The seller who issued it revokes the link: that
    payment is cancelled (its amount due again) and a new link can be made."""
    from tests.modules.payment.conftest import assert_ledger_consistent

    invoice, seller = own_invoice, issuer
    link = made(client, seller, invoice.id)
    assert pay(client, link["path"], provider="bank_transfer").status_code == 303
    tx = latest_transaction(services)
    assert (tx["state"], tx["guest"]) == ("pending", True)
    problem(client.post(API, json={"invoice": invoice.id}, headers=seller.headers), 409,
            "invoice-not-payable")  # fmt: skip

    ok(client.post(f"{API}/{link['id']}/revoke", headers=seller.headers))

    assert latest_transaction(services)["state"] == "canceled"
    ((payment_state,),) = sql(services, "SELECT p.state FROM marketplace_payment p JOIN "
                              "payment_transaction t ON t.account_payment_id = p.id "
                              "WHERE t.reference = %s", tx["reference"])  # fmt: skip
    assert payment_state == "canceled"
    ((residual,),) = sql(services, "SELECT amount_residual FROM marketplace_account_move "
                         "WHERE uuid = %s", invoice.id)  # fmt: skip
    assert residual == invoice.total
    assert made(client, seller, invoice.id)["status"] == "active"
    assert_ledger_consistent(app)


def test_a_payment_through_a_link_expires_with_the_link(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """A bank transfer waits 3 days, a link may end sooner: the payment ends with the link,
    cancelled by the payment module's expiry job, and the invoice is payable again."""
    from modules.payment.jobs import expire_transactions

    expires = (clock.now() + timedelta(hours=1)).replace(microsecond=0)
    link = made(client, staff, invoice.id, expires_at=expires.isoformat())
    pay(client, link["path"], provider="bank_transfer")
    ((tx_expires,),) = sql(services, "SELECT expires_at FROM payment_transaction WHERE guest")
    assert tx_expires == expires

    with app.app_context(), clock.travel(timedelta(hours=2)):
        assert expire_transactions() == 1
    assert latest_transaction(services)["state"] == "canceled"
    ((residual,),) = sql(services, "SELECT amount_residual FROM marketplace_account_move "
                         "WHERE uuid = %s", invoice.id)  # fmt: skip
    assert residual == invoice.total
