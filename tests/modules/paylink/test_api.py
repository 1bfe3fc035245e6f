"""``/api/v1/paylinks``: who makes links for which invoices (staff any, a seller those they
issued, while verified), what a link may pay, the URL shown once (a replay included), listing
and reading without the token, revoking, and links closing by themselves when their invoice is
paid or reversed."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask import Flask
from flask.testing import FlaskClient

from app import clock
from tests.conftest import run_jobs, wait_for_replica
from tests.modules.conftest import Caller
from tests.modules.marketplace.conftest import MadeProduct
from tests.servers import Services

from .conftest import (
    API,
    BANK,
    Invoice,
    create,
    events,
    guest_payment,
    made,
    ok,
    pay,
    problem,
    sql,
    standalone_invoice,
    verify,
)


def test_staff_and_the_issuing_seller_make_links_others_do_not(
    client: FlaskClient,
    staff: Caller,
    issuer: Caller,
    customer: Caller,
    log_in_as: Callable[..., Caller],
    own_invoice: Invoice,
) -> None:
    by_staff = made(client, staff, own_invoice.id)
    by_issuer = made(client, issuer, own_invoice.id, amount="5000.00")
    assert by_staff["status"] == by_issuer["status"] == "active"
    assert by_staff["created_by"] == str(staff.uuid)
    assert by_issuer["amount"] == "5000.00"

    # Another seller is told the invoice does not exist; a customer may not make links at all.
    problem(create(client, log_in_as("seller"), own_invoice.id), 404)
    problem(create(client, customer, own_invoice.id), 403, "forbidden")


def test_an_orders_invoice_is_the_platforms_its_sellers_make_no_links_for_it(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    issuer: Caller,
    customer: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    """A seller with a line in an order does not bill the whole invoice (other sellers' lines,
    the PPN) through a link of theirs, nor revoke the link staff made for it and cancel its
    payer's payment (review inv, finding 5)."""
    problem(create(client, issuer, invoice.id), 404)
    link = made(client, staff, invoice.id)
    assert pay(app.test_client(), link["path"]).status_code == 303
    problem(client.post(f"{API}/{link['id']}/revoke", headers=issuer.headers), 404,
            "payment-link-not-found")  # fmt: skip
    wait_for_replica(services)
    problem(client.get(f"{API}/{link['id']}", headers=issuer.headers), 404)
    assert ok(client.get(API, headers=issuer.headers))["items"] == []
    assert sql(services, "SELECT state FROM paylink_link") == [("active",)]
    assert sql(services, "SELECT state FROM payment_transaction WHERE guest") == [("pending",)]
    assert sql(services, "SELECT count(*) FROM paylink_link")[0][0] == 1

    # Nor does the seller's printout of it carry the link; the customer's and staff's do.
    printout = f"/api/v1/marketplace/invoices/{invoice.id}/print"
    ok(client.post(f"{API}/{link['id']}/revoke", headers=staff.headers))
    again = made(client, staff, invoice.id, amount="100.00")
    assert again["url"] not in client.get(printout, headers=issuer.headers).text
    for caller in (customer, staff):
        assert f'href="{again["url"]}"' in client.get(printout, headers=caller.headers).text


def test_a_seller_no_longer_verified_makes_no_links_but_revokes_theirs(
    client: FlaskClient, issuer: Caller, own_invoice: Invoice, services: Services
) -> None:
    link = made(client, issuer, own_invoice.id)
    # A new payout account sends the seller back to review.
    account = {**BANK, "account_number": "1234-5678"}
    ok(client.patch("/api/v1/sellers/me", json={"bank_account": account}, headers=issuer.headers))
    problem(create(client, issuer, own_invoice.id), 403, "invoicing-not-allowed")
    assert sql(services, "SELECT count(*) FROM paylink_link") == [(1,)]
    # Stopping their own link only lowers what can be paid: no review needed for that.
    ok(client.post(f"{API}/{link['id']}/revoke", headers=issuer.headers))
    assert sql(services, "SELECT state FROM paylink_link") == [("revoked",)]
    wait_for_replica(services)
    assert ok(client.get(f"{API}/{link['id']}", headers=issuer.headers))["status"] == "revoked"


def test_a_link_pays_the_residual_by_default_and_never_more(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    assert Decimal(link["amount"]) == invoice.total
    assert link["single_use"] is True
    expires = datetime.fromisoformat(link["expires_at"])
    assert (
        timedelta(days=7) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(days=7)
    )

    more = str(invoice.total + Decimal("0.01"))
    body = problem(create(client, staff, invoice.id, amount=more), 422, "validation-failed")
    assert "amount" in body["errors"]
    problem(create(client, staff, invoice.id, amount="0"), 422, "validation-failed")
    problem(create(client, staff, invoice.id, amount="1.001"), 422, "validation-failed")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    problem(create(client, staff, invoice.id, expires_at=past), 422, "validation-failed")
    far = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    problem(create(client, staff, invoice.id, expires_at=far), 422, "validation-failed")
    # Refusals wrote nothing.
    assert sql(services, "SELECT count(*) FROM paylink_link")[0][0] == 1


def test_the_url_is_shown_once_and_only_the_tokens_hash_is_stored(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id)
    token = link["path"].removeprefix("/pay/")
    assert len(token) >= 43  # 256 random bits, URL-safe base64

    ((stored,),) = sql(services, "SELECT token_hash FROM paylink_link")
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    everything = str(sql(services, "SELECT * FROM paylink_link"))
    everything += str(sql(services, "SELECT payload FROM core_outbox_event"))
    everything += str(sql(services, "SELECT response FROM marketplace_idempotency_key"))
    assert token not in everything

    wait_for_replica(services)
    shown = ok(client.get(f"{API}/{link['id']}", headers=staff.headers))
    listed = ok(client.get(API, headers=staff.headers))["items"]
    assert "url" not in shown
    assert all("url" not in item for item in listed)
    assert token not in str(shown) + str(listed)


def test_a_repeated_idempotency_key_answers_the_same_link_and_url(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """A client that lost the first answer retries: the same link and the same URL (derived
    again from the link: the store keeps no token)."""
    first = create(client, staff, invoice.id, key="link-1", amount="100.00")
    again = create(client, staff, invoice.id, key="link-1", amount="100.00")
    other = create(client, staff, invoice.id, key="link-1", amount="200.00")

    assert first.status_code == again.status_code == 201
    assert first.get_json()["url"].startswith("http")
    assert again.get_json() == first.get_json()
    problem(other, 422, "idempotency-key-reused")
    assert sql(services, "SELECT count(*) FROM paylink_link")[0][0] == 1
    assert [name for name, _ in events(services)] == ["payment_link.created"]
    token = first.get_json()["url"].rsplit("/", 1)[1]
    assert token not in str(sql(services, "SELECT response FROM marketplace_idempotency_key"))


def test_links_of_an_invoice_with_nothing_due_or_of_a_credit_note_are_refused(
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    from tests.modules.marketplace.conftest import order_body, place

    # Paid by bank transfer, not confirmed yet: nothing is due while that payment is in process.
    placed = place(client, customer, order_body((product.id, "1")))
    problem(create(client, staff, placed["invoice"]["id"]), 409, "invoice-not-payable")

    # Cancelled: the invoice is reversed, and its credit note is no invoice to pay.
    ok(client.post(f"/api/v1/marketplace/orders/{placed['order']['id']}/cancel",
                   headers=customer.headers))  # fmt: skip
    problem(create(client, staff, placed["invoice"]["id"]), 409, "invoice-not-payable")
    ((credit_note,),) = sql(
        services, "SELECT uuid FROM marketplace_account_move WHERE move_type = 'out_refund'"
    )
    problem(create(client, staff, str(credit_note)), 404)


def test_sellers_list_and_read_the_links_of_their_own_invoices_only(
    client: FlaskClient,
    staff: Caller,
    issuer: Caller,
    log_in_as: Callable[..., Caller],
    own_invoice: Invoice,
    services: Services,
) -> None:
    other_seller = log_in_as("seller")
    verify(client, other_seller, staff)
    theirs = standalone_invoice(client, other_seller)
    mine = made(client, issuer, own_invoice.id)
    made(client, other_seller, theirs.id)
    wait_for_replica(services)

    listed = ok(client.get(API, headers=issuer.headers))["items"]
    assert [item["id"] for item in listed] == [mine["id"]]
    assert len(ok(client.get(API, headers=staff.headers))["items"]) == 2
    by_invoice = ok(client.get(API, query_string={"invoice": theirs.id}, headers=staff.headers))
    assert [item["invoice"] for item in by_invoice["items"]] == [theirs.id]
    problem(client.get(f"{API}/{mine['id']}", headers=other_seller.headers), 404,
            "payment-link-not-found")  # fmt: skip
    problem(client.post(f"{API}/{mine['id']}/revoke", headers=other_seller.headers), 404)


def test_a_revoked_link_stays_revoked_and_answers_404_on_its_page(
    client: FlaskClient, issuer: Caller, own_invoice: Invoice, services: Services
) -> None:
    link = made(client, issuer, own_invoice.id)
    assert client.get(link["path"]).status_code == 200

    revoked = ok(client.post(f"{API}/{link['id']}/revoke", headers=issuer.headers))
    assert revoked["status"] == "revoked"
    assert revoked["ended_at"] is not None
    again = ok(client.post(f"{API}/{link['id']}/revoke", headers=issuer.headers))
    assert again["ended_at"] == revoked["ended_at"]
    assert client.get(link["path"]).status_code == 404
    wait_for_replica(services)
    listed = ok(client.get(API, query_string={"status": "revoked"}, headers=issuer.headers))
    assert [item["id"] for item in listed["items"]] == [link["id"]]


def test_an_expired_link_says_so_and_answers_404(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    # On the app's clock: the link expires in 5 minutes, the test moves 10 minutes on (and
    # back), however long it takes in real time (a session's idle timeout is longer).
    link = made(client, staff, invoice.id, expires_at=_in(minutes=5))
    with clock.travel(timedelta(minutes=10)):
        assert client.get(link["path"]).status_code == 404
        wait_for_replica(services)
        shown = ok(client.get(f"{API}/{link['id']}", headers=staff.headers))
        assert shown["status"] == "expired"
        expired = ok(client.get(API, query_string={"status": "expired"}, headers=staff.headers))
        assert [item["id"] for item in expired["items"]] == [link["id"]]
    assert client.get(link["path"]).status_code == 200


def test_links_close_by_themselves_when_their_invoice_is_paid_another_way(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    link = made(client, staff, invoice.id)
    # The customer pays the whole invoice by bank transfer after all; staff see the money.
    registered = client.post(
        f"/api/v1/marketplace/invoices/{invoice.id}/payments",
        json={"method": "bank_transfer"}, headers=customer.headers,
    )  # fmt: skip
    payment = ok(registered, 201)
    # While that payment is in process, the link takes none (nothing is due) and says so.
    assert "in progress" in client.get(link["path"]).text
    ok(client.post(f"/api/v1/marketplace/payments/{payment['id']}/confirm",
                   headers=staff.headers))  # fmt: skip

    # Checked at use, before any subscriber ran: the page is gone (a browser that saw it live
    # is told the invoice is paid), the API says closed.
    assert app.test_client().get(link["path"]).status_code == 404
    assert "This invoice is paid" in client.get(link["path"]).text
    wait_for_replica(services)
    assert ok(client.get(f"{API}/{link['id']}", headers=staff.headers))["status"] == "closed"

    run_jobs(app)
    ((state, reason),) = sql(services, "SELECT state, closed_reason FROM paylink_link")
    assert (state, reason) == ("closed", "invoice paid")


def test_links_close_when_their_order_is_cancelled(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    link = made(client, staff, invoice.id)
    ((order,),) = sql(
        services,
        "SELECT o.uuid FROM marketplace_sale_order o JOIN marketplace_account_move m "
        "ON m.order_id = o.id WHERE m.uuid = %s",
        invoice.id,
    )
    ok(client.post(f"/api/v1/marketplace/orders/{order}/cancel", headers=customer.headers))
    assert client.get(link["path"]).status_code == 404
    run_jobs(app)
    ((state, reason),) = sql(services, "SELECT state, closed_reason FROM paylink_link")
    assert (state, reason) == ("closed", "invoice reversed")
    problem(client.post(f"{API}/{link['id']}/revoke", headers=staff.headers), 409,
            "payment-link-not-active")  # fmt: skip


def test_the_created_event_names_the_invoice_and_never_the_token(
    client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    link = made(client, staff, invoice.id, single_use=False, amount="1000.00")
    ((name, payload),) = events(services)
    assert name == "payment_link.created"
    assert payload["payment_link"] == link["id"]
    assert payload["invoice"] == invoice.id
    assert payload["invoice_number"] == invoice.number
    assert (payload["amount"], payload["single_use"]) == ("1000.00", False)
    assert link["path"].removeprefix("/pay/") not in str(payload)


def _in(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_a_printed_invoice_shows_its_newest_active_link_and_writes_nothing(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    invoice: Invoice,
    services: Services,
) -> None:
    """A print page (a GET inside read_only(), as often as it is printed) shows the URL of the
    invoice's newest link that takes payments, derived again; it makes none."""
    from urllib.parse import urlsplit

    from app.db import read_only
    from modules.paylink.services import active_link_url

    ((invoice_id,),) = sql(
        services, "SELECT id FROM marketplace_account_move WHERE uuid = %s", invoice.id
    )

    def printed() -> str | None:
        wait_for_replica(services)
        with app.test_request_context(), read_only():
            return active_link_url(invoice_id)

    assert printed() is None  # no link: none is made
    assert sql(services, "SELECT count(*) FROM paylink_link")[0][0] == 0

    older = made(client, staff, invoice.id, amount="100.00")
    newer = made(client, staff, invoice.id, amount="200.00")
    revoked = made(client, staff, invoice.id, amount="300.00")
    ok(client.post(f"{API}/{revoked['id']}/revoke", headers=staff.headers))
    expiring = made(client, staff, invoice.id, amount="400.00", expires_at=_in(minutes=5))
    rows = sql(services, "SELECT count(*) FROM paylink_link")[0][0]
    outbox = sql(services, "SELECT count(*) FROM core_outbox_event")[0][0]

    urls = {printed() for _ in range(3)}
    assert urls == {expiring["url"]}
    # The marketplace's print page asks this module for its "Pay online" link.
    printout = client.get(f"/api/v1/marketplace/invoices/{invoice.id}/print", headers=staff.headers)
    assert printout.status_code == 200
    assert f'href="{expiring["url"]}"' in printout.text
    with clock.travel(timedelta(minutes=10)):
        assert printed() == newer["url"]  # the newest one still taking payments
    assert sql(services, "SELECT count(*) FROM paylink_link")[0][0] == rows
    assert sql(services, "SELECT count(*) FROM core_outbox_event")[0][0] == outbox
    page = client.get(urlsplit(expiring["url"]).path)
    assert page.status_code == 200
    assert "400.00 IDR" in page.text

    ok(client.post(f"{API}/{expiring['id']}/revoke", headers=staff.headers))
    ok(client.post(f"{API}/{newer['id']}/revoke", headers=staff.headers))
    assert printed() == older["url"]
    # An invoice with nothing due shows none.
    sql(services, "UPDATE marketplace_account_move SET payment_state = 'paid', "
        "amount_residual = 0 WHERE id = %s RETURNING id", invoice_id)  # fmt: skip
    assert printed() is None


def test_a_links_token_is_derived_from_its_uuid_and_the_secret_key(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """token = base64url(HMAC-SHA256(secret key, "lapak.paylink:" + uuid)); the database keeps
    its SHA-256 only. Another key (a rotated one) gives another token: old links stop working."""
    import base64
    import hmac

    link = made(client, staff, invoice.id)
    token = link["path"].removeprefix("/pay/")
    mac = hmac.new(app.secret_key.encode(), f"lapak.paylink:{link['id']}".encode(),
                   hashlib.sha256).digest()  # fmt: skip
    assert token == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert len(token) == 43
    ((stored,),) = sql(services, "SELECT token_hash FROM paylink_link")
    assert stored == hashlib.sha256(token.encode()).hexdigest()

    from modules.paylink.services import link_token

    other = app.test_request_context()
    with other:
        assert link_token(uuid.UUID(link["id"])) == token
        app.secret_key = "another key, after a rotation, of enough length"
        try:
            assert link_token(uuid.UUID(link["id"])) != token
        finally:
            app.secret_key = app.config["SECRET_KEY"]


def test_links_close_when_refunds_reverse_their_invoice(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """Refunds that cover every payment reverse the invoice (``invoice.reversed`` names the
    invoice itself, not a credit note): its links close, and revoking one is a 409."""
    from tests.modules.paylink.conftest import pay
    from tests.modules.paylink.test_pay_page import gateway_says

    link = made(client, staff, invoice.id, amount="6000.00", single_use=False)
    pay(app.test_client(), link["path"])
    gateway_says(app, client, services, "success")
    payment = guest_payment(services)
    ok(client.post(f"/api/v1/marketplace/payments/{payment}/refunds",
                   json={"reason": "returned"}, headers=staff.headers), 201)  # fmt: skip
    ((payment_state,),) = sql(services, "SELECT payment_state FROM marketplace_account_move "
                              "WHERE uuid = %s", invoice.id)  # fmt: skip
    assert payment_state == "reversed"
    # Before the subscriber runs, revoking is already refused (the invoice says closed).
    problem(client.post(f"{API}/{link['id']}/revoke", headers=staff.headers), 409,
            "payment-link-not-active")  # fmt: skip

    run_jobs(app)
    ((state, reason),) = sql(services, "SELECT state, closed_reason FROM paylink_link")
    assert (state, reason) == ("closed", "invoice reversed")
    body = problem(client.post(f"{API}/{link['id']}/revoke", headers=staff.headers), 409,
                   "payment-link-not-active")  # fmt: skip
    assert body["state"] == "closed"
    wait_for_replica(services)
    active = ok(client.get(API, query_string={"status": "active"}, headers=staff.headers))
    assert active["items"] == []


def test_a_guests_payment_is_never_refunded_into_the_customers_wallet(
    app: Flask, client: FlaskClient, staff: Caller, invoice: Invoice, services: Services
) -> None:
    """Whoever paid through the link is not the customer: a refund goes back through the
    provider that took it, never into the customer's wallet."""
    from tests.modules.paylink.conftest import pay
    from tests.modules.paylink.test_pay_page import gateway_says

    link = made(client, staff, invoice.id)
    pay(app.test_client(), link["path"])
    gateway_says(app, client, services, "success")
    payment = guest_payment(services)
    refunds = f"/api/v1/marketplace/payments/{payment}/refunds"
    wallets = str(sql(services, "SELECT * FROM wallet_wallet"))

    to_wallet = client.post(refunds, json={"reason": "returned", "destination": "wallet"},
                            headers=staff.headers)  # fmt: skip
    body = problem(to_wallet, 422, "invalid-refund-destination")
    assert body["errors"]["destination"]
    assert sql(services, "SELECT count(*) FROM marketplace_refund")[0][0] == 0
    assert str(sql(services, "SELECT * FROM wallet_wallet")) == wallets

    back = ok(client.post(refunds, json={"reason": "returned", "destination": "demo"},
                          headers=staff.headers), 201)  # fmt: skip
    assert (back["destination"], back["state"]) == ("demo", "pending")
