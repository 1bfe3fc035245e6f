"""Standalone invoices (no order): drafts written, changed, posted and cancelled; who may do what;
paying one through the marketplace's and the payment module's endpoints, and refunding it; the
ledger and the seller's pending balance after each; gap-free numbers under concurrent posting;
refusals that change nothing. All on the harness's PostgreSQL (primary + replica) and Redis,
and once on the embedded default (SQLite)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.db import Session
from modules.marketplace import backfill
from modules.webhook.audience import sellers_concerned
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import YEAR, assert_problem, get, new_key, post, sql
from .test_concurrency import in_parallel
from .test_ledger import assert_consistent, nonzero

API = "/api/v1/marketplace"
SELLERS = "/api/v1/sellers"
BANK = {"bank_code": "014", "holder_name": "Budi Santoso", "account_number": "8800-4412-3977"}
D = Decimal
#: The tables writing a standalone invoice touches, and the ledger's.
INVOICE_TABLES = (
    "marketplace_account_move",
    "marketplace_account_move_line",
    "marketplace_payment",
    "marketplace_refund",
    "ledger_transaction",
)


def guest_invoice(**extra: Any) -> dict[str, Any]:
    """A draft's body to a payer without an account: 2 x 250,000 at 11% and 75,000 at 0%."""
    body: dict[str, Any] = {
        "payer_name": "Ibu Sari",
        "payer_email": "Sari@Example.COM",
        "lines": [
            {"description": "Cold storage, May", "quantity": "2", "price_unit": "250000.00"},
            {"description": "Delivery", "quantity": "1", "price_unit": "75000", "tax_percent": "0"},
        ],
        "memo": "Thank you.",
    }
    body.update(extra)
    return body


def patch(client: FlaskClient, caller: Caller, path: str, body: Any) -> TestResponse:
    return client.patch(f"{API}{path}", json=body, headers=caller.headers)


def ok(response: TestResponse, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def draft(
    client: FlaskClient, caller: Caller, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    return ok(post(client, caller, "/invoices", body or guest_invoice()), 201)


def posted(
    client: FlaskClient, caller: Caller, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    made = draft(client, caller, body)
    return ok(post(client, caller, f"/invoices/{made['id']}/post"))


def rows(services: Services, tables: tuple[str, ...] = INVOICE_TABLES) -> dict[str, Any]:
    """Every row of ``tables``, as read straight from the primary (to prove nothing changed)."""
    return {table: sql(services, f"SELECT * FROM {table} ORDER BY 1") for table in tables}  # noqa: S608


def event_names(services: Services) -> list[str]:
    return [
        name
        for (name,) in sql(
            services,
            "SELECT name FROM core_outbox_event WHERE name LIKE 'invoice.%%' ORDER BY id",
        )
    ]


@pytest.fixture
def verified_seller(
    client: FlaskClient, staff: Caller, log_in_as: Callable[..., Caller]
) -> Callable[[], Caller]:
    """A seller whose KYC review staff approved (through the seller API)."""

    def make() -> Caller:
        seller = log_in_as("seller")
        ok(client.patch(f"{SELLERS}/me", json={"bank_account": BANK}, headers=seller.headers))
        ok(client.post(f"{SELLERS}/me/kyc", headers=seller.headers))
        ok(client.post(f"{SELLERS}/{seller.uuid}/kyc/approve", headers=staff.headers))
        ok(client.patch(f"{SELLERS}/me", json={"display_name": f"Toko {seller.user_id}"},
                        headers=seller.headers))  # fmt: skip
        return seller

    return make


def pending_of(app: Flask, seller: Caller) -> Decimal:
    return nonzero(app).get(f"seller_pending:{seller.user_id}", D(0))


# -- the life of a draft --------------------------------------------------------------------------


def test_staff_write_change_and_post_an_invoice_to_a_payer_without_an_account(
    app: Flask, client: FlaskClient, staff: Caller, services: Services
) -> None:
    made = draft(client, staff)
    assert (made["state"], made["number"], made["order"], made["customer"]) == (
        "draft", None, None, None,
    )  # fmt: skip
    assert (made["payer_name"], made["payer_email"]) == ("Ibu Sari", "Sari@example.com")
    assert [line["tax_percent"] for line in made["lines"]] == ["11", "0"]
    assert [line["product"] for line in made["lines"]] == [None, None]
    # 2 x 250,000 + 11% = 555,000; 75,000 at 0%.
    assert (made["amount_untaxed"], made["amount_tax"], made["amount_total"]) == (
        "575000.00", "55000.00", "630000.00",
    )  # fmt: skip
    due = date.fromisoformat(made["invoice_date"]) + timedelta(days=14)
    assert made["invoice_date_due"] == due.isoformat()
    assert nonzero(app) == {}  # a draft is owed by no one

    later = (date.fromisoformat(made["invoice_date"]) + timedelta(days=30)).isoformat()
    changed = ok(patch(client, staff, f"/invoices/{made['id']}", {
        "lines": [{"description": "Cold storage, June", "quantity": "1.5",
                   "price_unit": "200000.00", "tax_percent": "12"}],
        "due_date": later,
        "memo": None,
    }))  # fmt: skip
    assert [line["name"] for line in changed["lines"]] == ["Cold storage, June"]
    assert (changed["amount_untaxed"], changed["amount_tax"], changed["amount_total"]) == (
        "300000.00", "36000.00", "336000.00",
    )  # fmt: skip
    assert (changed["invoice_date_due"], changed["memo"]) == (later, None)
    assert sql(services, "SELECT count(*) FROM marketplace_account_move_line")[0][0] == 1

    done = ok(post(client, staff, f"/invoices/{made['id']}/post", key=new_key()))
    assert (done["state"], done["payment_state"], done["number"]) == (
        "posted", "not_paid", f"INV/{YEAR}/00001",
    )  # fmt: skip
    assert done["amount_residual"] == "336000.00"
    shown = ok(get(client, staff, f"/invoices/{made['id']}"))
    assert shown == done
    assert nonzero(app) == {
        "guest_receivable": D("336000.00"),
        "sales_clearing": D("300000.00"),
        "tax_payable": D("36000.00"),
    }
    assert event_names(services) == ["invoice.created", "invoice.posted"]
    assert_consistent(app)


def test_a_posted_invoice_is_never_edited_posted_again_or_cancelled(
    app: Flask, client: FlaskClient, staff: Caller, services: Services
) -> None:
    done = posted(client, staff)
    before = rows(services)
    path = f"/invoices/{done['id']}"
    body = assert_problem(patch(client, staff, path, {"memo": "changed"}), 409, "invoice-not-draft")
    assert "never edited" in body["detail"]
    assert_problem(post(client, staff, f"{path}/post"), 409, "invoice-not-draft")
    assert_problem(post(client, staff, f"{path}/cancel"), 409, "invoice-not-draft")
    assert rows(services) == before


def test_a_draft_is_cancelled_once_and_then_neither_changed_nor_posted(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    made = draft(client, staff)
    path = f"/invoices/{made['id']}"
    assert ok(post(client, staff, f"{path}/cancel"))["state"] == "cancel"
    assert ok(post(client, staff, f"{path}/cancel"))["state"] == "cancel"  # no-op
    assert_problem(post(client, staff, f"{path}/post"), 409, "invoice-not-draft")
    assert_problem(patch(client, staff, path, {"memo": "x"}), 409, "invoice-not-draft")
    assert event_names(services) == ["invoice.created", "invoice.cancelled"]
    # Never numbered: the next posted invoice is the first.
    assert posted(client, staff)["number"] == f"INV/{YEAR}/00001"


def test_the_idempotency_key_replays_a_write_and_a_post(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    key = new_key()
    first = ok(post(client, staff, "/invoices", guest_invoice(), key), 201)
    again = ok(post(client, staff, "/invoices", guest_invoice(), key), 201)
    assert again == first
    other = post(client, staff, "/invoices", guest_invoice(memo="other"), key)
    assert_problem(other, 422, "idempotency-key-reused")
    assert sql(services, "SELECT count(*) FROM marketplace_account_move")[0][0] == 1
    post_key = new_key()
    done = ok(post(client, staff, f"/invoices/{first['id']}/post", key=post_key))
    assert ok(post(client, staff, f"/invoices/{first['id']}/post", key=post_key)) == done


def test_the_order_invoices_keep_their_own_rules(
    client: FlaskClient, staff: Caller, customer: Caller, make_product: Callable[..., Any]
) -> None:
    product = make_product("10000")
    placed = ok(post(client, customer, "/orders", {
        "lines": [{"product": product.id, "quantity": "1"}],
        "payment": {"method": "bank_transfer"},
    }), 201)  # fmt: skip
    invoice = placed["invoice"]
    assert invoice["order"] == placed["order"]["id"]
    assert (invoice["seller"], invoice["payer_name"], invoice["lines"][0]["tax_percent"]) == (
        None, None, "11",
    )  # fmt: skip
    path = f"/invoices/{invoice['id']}"
    assert_problem(patch(client, staff, path, {"memo": "x"}), 409, "invoice-of-an-order")
    assert_problem(post(client, staff, f"{path}/cancel"), 409, "invoice-of-an-order")
    listed = ok(get(client, staff, "/invoices", standalone="false"))["items"]
    assert [item["id"] for item in listed] == [invoice["id"]]
    assert ok(get(client, staff, "/invoices", standalone="true"))["items"] == []


# -- who may do what ------------------------------------------------------------------------------


def test_a_verified_seller_invoices_their_own_sales_and_no_one_elses(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    customer: Caller,
    verified_seller: Callable[[], Caller],
    services: Services,
) -> None:
    seller, other = verified_seller(), verified_seller()
    made = draft(client, seller, guest_invoice(customer=str(customer.uuid), payer_name=None,
                                               payer_email=None))  # fmt: skip
    assert (made["seller"], made["customer"]) == (str(seller.uuid), str(customer.uuid))
    path = f"/invoices/{made['id']}"
    before = rows(services)
    # Another seller sees nothing of it: not found, whatever they try.
    for response in (
        get(client, other, path),
        patch(client, other, path, {"memo": "mine now"}),
        post(client, other, f"{path}/post"),
        post(client, other, f"{path}/cancel"),
        get(client, other, f"{path}/print"),
    ):
        assert_problem(response, 404, "not-found")
    # Staff may post and cancel any, but change only the platform's drafts.
    assert_problem(patch(client, staff, path, {"memo": "x"}), 403, "forbidden")
    # The customer neither sees the draft nor writes invoices.
    assert_problem(get(client, customer, path), 404, "not-found")
    assert_problem(post(client, customer, "/invoices", guest_invoice()), 403)
    assert rows(services) == before
    listed = ok(get(client, other, "/invoices"))["items"]
    assert listed == []
    assert [i["id"] for i in ok(get(client, seller, "/invoices"))["items"]] == [made["id"]]

    done = ok(post(client, seller, f"{path}/post"))
    assert done["number"] == f"INV/{YEAR}/00001"
    # Now posted, the customer reads it (and pays it, as their own).
    assert ok(get(client, customer, path))["number"] == done["number"]
    assert [i["id"] for i in ok(get(client, customer, "/invoices"))["items"]] == [made["id"]]
    assert nonzero(app)[f"receivable:{customer.user_id}"] == D(done["amount_total"])
    with app.app_context():
        for event in ("invoice.created", "invoice.posted"):
            concerned = sellers_concerned(Session(), event, {"invoice": made["id"]})
            assert concerned == {seller.user_id}
    assert_consistent(app)


def test_sellers_not_verified_do_not_invoice(
    client: FlaskClient, log_in_as: Callable[..., Caller], services: Services
) -> None:
    seller = log_in_as("seller")
    body = assert_problem(post(client, seller, "/invoices", guest_invoice()), 403,
                          "invoicing-not-allowed")  # fmt: skip
    assert "verified" in body["detail"]
    assert rows(services) == {table: [] for table in INVOICE_TABLES}


def test_a_seller_no_longer_verified_cannot_post_their_draft(
    client: FlaskClient, staff: Caller, verified_seller: Callable[[], Caller], services: Services
) -> None:
    seller = verified_seller()
    made = draft(client, seller)
    # A new payout account sends the seller back to review.
    ok(client.patch(f"{SELLERS}/me", json={"bank_account": {**BANK, "account_number": "1234-5678"}},
                    headers=seller.headers))  # fmt: skip
    before = rows(services)
    assert_problem(post(client, seller, f"/invoices/{made['id']}/post"), 403,
                   "invoicing-not-allowed")  # fmt: skip
    assert_problem(post(client, staff, f"/invoices/{made['id']}/post"), 409)
    assert rows(services) == before


def test_a_seller_no_longer_verified_cannot_change_their_draft_but_may_give_it_up(
    client: FlaskClient, verified_seller: Callable[[], Caller], services: Services
) -> None:
    """Unverified sellers do not issue: their drafts are not changed either (review inv,
    finding 7); cancelling one is still theirs to do."""
    seller = verified_seller()
    made = draft(client, seller)
    ok(client.patch(f"{SELLERS}/me", json={"bank_account": {**BANK, "account_number": "1234-5678"}},
                    headers=seller.headers))  # fmt: skip
    before = rows(services)
    path = f"/invoices/{made['id']}"
    for change in ({"memo": "changed"}, {"lines": [{"description": "x", "quantity": "1",
                                                     "price_unit": "1.00"}]}):  # fmt: skip
        assert_problem(patch(client, seller, path, change), 403, "invoicing-not-allowed")
    assert rows(services) == before
    assert ok(post(client, seller, f"{path}/cancel"))["state"] == "cancel"


def test_a_draft_to_a_customer_deactivated_since_is_not_posted(
    app: Flask, client: FlaskClient, staff: Caller, admin: Caller, customer: Caller,
    services: Services,
) -> None:  # fmt: skip
    """Posting bills the customer's receivable: not one who can no longer log in to pay it
    (review inv, finding 7)."""
    to_customer = guest_invoice(customer=str(customer.uuid), payer_name=None, payer_email=None)
    made = draft(client, staff, to_customer)
    ok(client.post(f"/api/v1/users/{customer.uuid}/deactivate", headers=admin.headers))
    before = rows(services)
    refused = assert_problem(post(client, staff, f"/invoices/{made['id']}/post"), 422)
    assert refused["errors"] == {"customer": ["an active customer's id"]}
    assert "no longer" in refused["detail"]
    assert rows(services) == before
    assert nonzero(app) == {}
    # Addressed to a payer without an account instead, it posts.
    payer = {"customer": None, "payer_name": "Ibu Sari", "payer_email": "sari@example.com"}
    ok(patch(client, staff, f"/invoices/{made['id']}", payer))
    assert ok(post(client, staff, f"/invoices/{made['id']}/post"))["state"] == "posted"


# -- paying, and the money ------------------------------------------------------------------------


def test_a_sellers_guest_invoice_paid_by_bank_transfer_grows_the_sellers_pending_balance(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    verified_seller: Callable[[], Caller],
    services: Services,
) -> None:
    seller = verified_seller()
    done = posted(client, seller)  # 575,000 untaxed: the seller's, less 5% (28,750)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer", "reference": "TRF-9"}), 201)  # fmt: skip
    assert payment["customer"] is None
    assert pending_of(app, seller) == 0
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    shown = ok(get(client, seller, f"/invoices/{done['id']}"))
    assert (shown["payment_state"], shown["amount_residual"]) == ("paid", "0.00")
    assert pending_of(app, seller) == D("546250.00")
    assert nonzero(app) == {
        "clearing_bank_transfer": D("630000.00"),
        "tax_payable": D("55000.00"),
        "commission_income": D("28750.00"),
        f"seller_pending:{seller.user_id}": D("546250.00"),
    }
    assert ok(get(client, seller, f"/payments/{payment['id']}"))["id"] == payment["id"]
    assert_consistent(app)

    # The refund flow of the ledger issue: all of it back, the invoice reversed.
    refund = ok(post(client, staff, f"/payments/{payment['id']}/refunds",
                     {"reason": "Cancelled job"}), 201)  # fmt: skip
    note = ok(get(client, staff, f"/invoices/{refund['credit_note']}"))
    assert (note["move_type"], note["order"], note["seller"], note["payer_name"]) == (
        "out_refund", None, str(seller.uuid), "Ibu Sari",
    )  # fmt: skip
    assert note["number"] == f"RINV/{YEAR}/00001"
    assert ok(get(client, staff, f"/invoices/{done['id']}"))["payment_state"] == "reversed"
    assert pending_of(app, seller) == 0
    assert nonzero(app) == {}
    assert_consistent(app)
    with app.app_context():  # the history's backfill finds it all posted already
        assert backfill.run() == 0
    # A reversed invoice takes no more money.
    assert_problem(post(client, staff, f"/invoices/{done['id']}/payments",
                        {"method": "bank_transfer"}), 409)  # fmt: skip


def test_a_partly_refunded_guest_payment_cannot_go_to_a_wallet(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    done = posted(client, staff)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer"}), 201)  # fmt: skip
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    before = rows(services)
    refused = post(client, staff, f"/payments/{payment['id']}/refunds",
                   {"reason": "x", "amount": "100.00", "destination": "wallet"})  # fmt: skip
    assert_problem(refused, 422, "invalid-refund-destination")
    assert rows(services) == before


def test_the_customer_pays_their_own_standalone_invoice(
    app: Flask, client: FlaskClient, staff: Caller, customer: Caller
) -> None:
    done = posted(client, staff, guest_invoice(customer=str(customer.uuid), payer_name=None,
                                               payer_email=None))  # fmt: skip
    paid = ok(post(client, customer, f"/invoices/{done['id']}/payments",
                   {"method": "bank_transfer", "amount": "30000.00"}), 201)  # fmt: skip
    assert paid["customer"] == str(customer.uuid)
    ok(post(client, staff, f"/payments/{paid['id']}/confirm"))
    shown = ok(get(client, customer, f"/invoices/{done['id']}"))
    assert (shown["payment_state"], shown["amount_residual"]) == ("partial", "600000.00")
    # The platform's own invoice: its income, no seller.
    balances = nonzero(app)
    assert balances[f"receivable:{customer.user_id}"] == D("600000.00")
    assert balances["sales_income"] > 0
    assert_consistent(app)


def test_a_draft_takes_no_payment(client: FlaskClient, staff: Caller, services: Services) -> None:
    made = draft(client, staff)
    before = rows(services)
    refused = post(client, staff, f"/invoices/{made['id']}/payments", {"method": "bank_transfer"})
    assert_problem(refused, 409)
    assert rows(services) == before


# -- numbers --------------------------------------------------------------------------------------


def test_20_concurrent_posts_take_20_gap_free_numbers(
    app: Flask, client: FlaskClient, staff: Caller, services: Services
) -> None:
    drafts = [draft(client, staff)["id"] for _ in range(20)]
    # Each thread logs in on its own: sessions are per login.
    responses = in_parallel(
        app, 20, lambda own, i: own.post(f"{API}/invoices/{drafts[i]}/post", headers=staff.headers)
    )
    assert Counter(r.status_code for r in responses) == {200: 20}, [
        r.get_json() for r in responses if r.status_code != 200
    ]
    numbers = sorted(r.get_json()["number"] for r in responses)
    assert numbers == [f"INV/{YEAR}/{n:05d}" for n in range(1, 21)]
    assert sql(services, "SELECT count(*) FROM ledger_transaction WHERE operation = "
                         "'INVOICE_POST'")[0][0] == 20  # fmt: skip
    assert_consistent(app)


def test_concurrent_posts_and_cancels_of_one_draft_serialise(
    app: Flask, client: FlaskClient, staff: Caller, services: Services
) -> None:
    """Every writer of a standalone invoice takes its row lock first: 10 posts (5 with one
    Idempotency-Key) and 5 cancels of the same draft at once leave it posted or cancelled,
    never both, with at most one number and one INVOICE_POST (review inv, finding 9)."""
    made = draft(client, staff)["id"]
    key = new_key()

    def call(own: FlaskClient, index: int) -> TestResponse:
        if index < 10:
            return post(own, staff, f"/invoices/{made}/post", key=key if index < 5 else None)
        return post(own, staff, f"/invoices/{made}/cancel")

    responses = in_parallel(app, 15, call)
    keyed, keyless, cancels = responses[:5], responses[5:10], responses[10:]
    assert {r.status_code for r in responses} <= {200, 409}, [r.get_json() for r in responses]
    for refused in (r for r in responses if r.status_code == 409):
        assert_problem(refused, 409, "invoice-not-draft")
    ((state,),) = sql(services, "SELECT state FROM marketplace_account_move")
    numbers = sql(services, "SELECT name FROM marketplace_account_move WHERE name IS NOT NULL")
    ((postings,),) = sql(services, "SELECT count(*) FROM ledger_transaction "
                                   "WHERE operation = 'INVOICE_POST'")  # fmt: skip
    if state == "posted":
        assert numbers == [(f"INV/{YEAR}/00001",)]
        assert postings == 1
        assert all(r.status_code == 409 for r in cancels)
        winners = [r for r in keyless if r.status_code == 200]
        # The key's requests replay a keyed winner's answer, or each found it posted already.
        assert {r.status_code for r in keyed} in ({200}, {409})
        if keyed[0].status_code == 200:
            assert winners == []
            assert all(r.get_json() == keyed[0].get_json() for r in keyed)
            assert keyed[0].get_json()["number"] == f"INV/{YEAR}/00001"
        else:
            assert len(winners) == 1
    else:
        assert state == "cancel"
        assert (numbers, postings) == ([], 0)
        assert all(r.status_code == 409 for r in keyed + keyless)
        assert all(r.status_code == 200 for r in cancels)  # the first, then no-ops
    assert_consistent(app)


# -- bad input ------------------------------------------------------------------------------------

REFUSED = [
    ("no lines", {"lines": []}, "lines"),
    ("both a customer and a payer", {"customer": str(uuid.uuid4())}, "customer"),
    ("no payer at all", {"payer_name": None, "payer_email": None}, "customer"),
    ("a payer without an email", {"payer_email": None}, "payer_email"),
    ("an email that is none", {"payer_email": "sari at example"}, "payer_email"),
    ("a blank name", {"payer_name": "   "}, "payer_name"),
    ("a quantity of 0", {"lines": [{"description": "x", "quantity": "0", "price_unit": "1"}]},
     "lines.0.quantity"),
    ("a price with 3 decimals",
     {"lines": [{"description": "x", "quantity": "1", "price_unit": "1.005"}]},
     "lines.0.price_unit"),
    ("a negative price", {"lines": [{"description": "x", "quantity": "1", "price_unit": "-1"}]},
     "lines.0.price_unit"),
    ("a tax of 100%",
     {"lines": [{"description": "x", "quantity": "1", "price_unit": "1", "tax_percent": "100"}]},
     "lines.0.tax_percent"),
    ("a blank description",
     {"lines": [{"description": "  ", "quantity": "1", "price_unit": "1"}]},
     "lines.0.description"),
    ("a float price", {"lines": [{"description": "x", "quantity": "1", "price_unit": 1.5}]},
     "lines.0.price_unit"),
    ("a due date gone by", {"due_date": "2020-01-01"}, "due_date"),
    ("another currency", {"currency": "EUR"}, "currency"),
    ("a field the server computes", {"amount_total": "1.00"}, "amount_total"),
    ("a number too large",
     {"lines": [{"description": "x", "quantity": "100000", "price_unit": "9999999999999.00"}]},
     "lines.0.quantity"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "field"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_input_is_a_clear_422_and_writes_nothing(
    client: FlaskClient, staff: Caller, services: Services, what: str, change: dict, field: str
) -> None:
    body = assert_problem(post(client, staff, "/invoices", guest_invoice(**change)), 422)
    assert field in body["errors"], body
    assert rows(services) == {table: [] for table in INVOICE_TABLES}


def test_an_unknown_or_inactive_customer_is_refused(
    client: FlaskClient, staff: Caller, make_user: Callable[..., Any], services: Services
) -> None:
    _, inactive, _ = make_user(role="customer", active=False)
    _, a_seller, _ = make_user(role="seller")
    for customer in (uuid.uuid4(), inactive, a_seller):
        body = {**guest_invoice(payer_name=None, payer_email=None), "customer": str(customer)}
        problem = assert_problem(post(client, staff, "/invoices", body), 422)
        assert problem["errors"] == {"customer": ["an active customer's id"]}
    assert rows(services) == {table: [] for table in INVOICE_TABLES}


def test_a_bad_change_to_a_draft_changes_nothing(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    made = draft(client, staff)
    before = rows(services)
    path = f"/invoices/{made['id']}"
    for change in (
        {"lines": []},
        {"payer_email": "nobody"},
        {"payer_name": "Only a name"},
        {"due_date": "2020-01-01"},
        {"lines": [{"description": "ok", "quantity": "1", "price_unit": "1"},
                   {"description": "", "quantity": "-1", "price_unit": "1"}]},
    ):  # fmt: skip
        assert_problem(patch(client, staff, path, change), 422)
    assert rows(services) == before


def test_a_zero_invoice_is_not_posted(client: FlaskClient, staff: Caller) -> None:
    made = draft(client, staff, guest_invoice(lines=[
        {"description": "Free sample", "quantity": "1", "price_unit": "0"}
    ]))  # fmt: skip
    body = assert_problem(post(client, staff, f"/invoices/{made['id']}/post"), 422)
    assert "lines" in body["errors"]


# -- reading --------------------------------------------------------------------------------------


def test_the_listing_filters_and_pages(
    client: FlaskClient, staff: Caller, verified_seller: Callable[[], Caller]
) -> None:
    seller = verified_seller()
    mine = [draft(client, seller)["id"] for _ in range(3)]
    ours = posted(client, staff)
    listed = ok(get(client, staff, "/invoices", limit=2))
    assert [item["id"] for item in listed["items"]] == [ours["id"], mine[2]]
    rest = ok(get(client, staff, "/invoices", limit=2, cursor=listed["next_cursor"]))
    assert [item["id"] for item in rest["items"]] == [mine[1], mine[0]]
    assert rest["next_cursor"] is None
    by_seller = ok(get(client, staff, "/invoices", seller=str(seller.uuid)))["items"]
    assert sorted(item["id"] for item in by_seller) == sorted(mine)
    by_state = ok(get(client, staff, "/invoices", state="posted"))["items"]
    assert [item["id"] for item in by_state] == [ours["id"]]
    by_number = ok(get(client, staff, "/invoices", number=ours["number"][-5:]))["items"]
    assert [item["id"] for item in by_number] == [ours["id"]]
    assert "lines" not in by_state[0]


# -- the payment module pays it ---------------------------------------------------------------


def test_the_payment_module_refuses_saved_methods_for_a_payer_without_an_account(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    done = posted(client, staff)
    before = rows(services)
    for extra in ({"token": str(uuid.uuid4())}, {"save_method": True}):
        refused = client.post("/api/v1/payments", json={"invoice": done["id"], "provider": "demo",
                              **extra}, headers=staff.headers)  # fmt: skip
        assert_problem(refused, 422)
    assert rows(services) == before


def test_the_webhook_audience_of_a_sellers_invoice_and_its_payments_is_that_seller(
    app: Flask, client: FlaskClient, staff: Caller, verified_seller: Callable[[], Caller]
) -> None:
    seller = verified_seller()
    done = posted(client, seller)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer"}), 201)  # fmt: skip
    with app.app_context():
        for event, payload in (
            ("invoice.posted", {"invoice": done["id"]}),
            ("payment.registered", {"invoice": done["id"]}),
            ("refund.created", {"payment": payment["id"]}),
        ):
            assert sellers_concerned(Session(), event, payload) == {seller.user_id}, event


# -- reversing a posted invoice -------------------------------------------------------------------


def test_a_posted_invoice_nothing_was_paid_on_is_reversed_by_a_credit_note(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    verified_seller: Callable[[], Caller],
    services: Services,
) -> None:
    seller = verified_seller()
    done = posted(client, seller)
    path = f"/invoices/{done['id']}"
    in_process = ok(post(client, staff, f"{path}/payments", {"method": "bank_transfer"}), 201)
    reversed_ = ok(post(client, seller, f"{path}/reverse"))
    assert (reversed_["state"], reversed_["payment_state"], reversed_["amount_residual"]) == (
        "posted", "reversed", "0.00",
    )  # fmt: skip
    assert ok(get(client, staff, f"/payments/{in_process['id']}"))["state"] == "canceled"
    notes = ok(get(client, staff, "/invoices", move_type="out_refund"))["items"]
    assert [(n["number"], n["reversed_entry"], n["seller"]) for n in notes] == [
        (f"RINV/{YEAR}/00001", done["id"], str(seller.uuid))
    ]
    assert nonzero(app) == {}
    assert event_names(services)[-1] == "invoice.reversed"
    assert_consistent(app)
    # Once is enough: again, nothing changes; and it takes no payment any more.
    before = rows(services)
    assert ok(post(client, seller, f"{path}/reverse")) == ok(get(client, seller, path))
    assert_problem(post(client, staff, f"{path}/payments", {"method": "bank_transfer"}), 409)
    assert rows(services) == before


def test_an_invoice_with_a_confirmed_payment_or_a_draft_is_not_reversed(
    client: FlaskClient, staff: Caller, services: Services
) -> None:
    done = posted(client, staff)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer", "amount": "1000.00"}), 201)  # fmt: skip
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    made = draft(client, staff)
    before = rows(services)
    refused = assert_problem(post(client, staff, f"/invoices/{done['id']}/reverse"), 409)
    assert refused["payment"] == payment["number"]
    assert_problem(post(client, staff, f"/invoices/{made['id']}/reverse"), 409,
                   "invoice-not-posted")  # fmt: skip
    assert rows(services) == before


# -- credit notes are never changed -------------------------------------------------------------


def paid_and_partly_refunded(
    client: FlaskClient, issuer: Caller, staff: Caller, body: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """A posted invoice of ``issuer`` paid in full by bank transfer (630,000.00), confirmed, and
    refunded 100,000.00: the invoice, and its refund's credit note (its uuid)."""
    done = posted(client, issuer, body)
    payment = ok(post(client, staff, f"/invoices/{done['id']}/payments",
                      {"method": "bank_transfer"}), 201)  # fmt: skip
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    refund = ok(post(client, staff, f"/payments/{payment['id']}/refunds",
                     {"reason": "x", "amount": "100000.00"}), 201)  # fmt: skip
    return done, refund["credit_note"]


def test_a_refunds_credit_note_is_never_reversed_posted_cancelled_or_changed(
    app: Flask,
    client: FlaskClient,
    staff: Caller,
    verified_seller: Callable[[], Caller],
    services: Services,
) -> None:
    """Reversing a refund's credit note would give back a receivable never owed: for a payer
    without an account the platform's guest_receivable would go negative, the PPN payable and
    the sales clearing down by money never invoiced (review inv, finding 1)."""
    seller = verified_seller()
    for issuer in (staff, seller):
        _, note = paid_and_partly_refunded(client, issuer, staff)
        assert ok(get(client, issuer, f"/invoices/{note}"))["move_type"] == "out_refund"
        before, balances = rows(services), nonzero(app)
        path = f"/invoices/{note}"
        for caller in {staff, issuer}:
            for response in (
                post(client, caller, f"{path}/reverse"),
                post(client, caller, f"{path}/post"),
                post(client, caller, f"{path}/cancel"),
                patch(client, caller, path, {"memo": "x"}),
            ):
                assert_problem(response, 409, "invoice-is-credit-note")
        assert rows(services) == before
        assert nonzero(app) == balances
        assert "guest_receivable" not in balances
    assert_consistent(app)


def test_a_reversals_credit_note_is_not_reversed_again(
    app: Flask, client: FlaskClient, staff: Caller, services: Services
) -> None:
    done = posted(client, staff)
    ok(post(client, staff, f"/invoices/{done['id']}/reverse"))
    (note,) = ok(get(client, staff, "/invoices", move_type="out_refund"))["items"]
    before = rows(services)
    assert_problem(post(client, staff, f"/invoices/{note['id']}/reverse"), 409,
                   "invoice-is-credit-note")  # fmt: skip
    assert rows(services) == before
    assert nonzero(app) == {}


def test_reversing_a_customers_credit_note_never_takes_what_another_invoice_is_owed(
    app: Flask, client: FlaskClient, staff: Caller, customer: Caller, services: Services
) -> None:
    """The customer's receivable holds what their other invoice is owed: a reversal of a credit
    note would take it, and that invoice could then never be paid in full."""
    to_customer = guest_invoice(customer=str(customer.uuid), payer_name=None, payer_email=None)
    _, note = paid_and_partly_refunded(client, staff, staff, to_customer)
    unpaid = posted(client, staff, to_customer)
    before = rows(services)
    assert_problem(post(client, staff, f"/invoices/{note}/reverse"), 409,
                   "invoice-is-credit-note")  # fmt: skip
    assert rows(services) == before
    assert nonzero(app)[f"receivable:{customer.user_id}"] == D("630000.00")  # the unpaid one

    payment = ok(post(client, customer, f"/invoices/{unpaid['id']}/payments",
                      {"method": "bank_transfer"}), 201)  # fmt: skip
    ok(post(client, staff, f"/payments/{payment['id']}/confirm"))
    assert ok(get(client, customer, f"/invoices/{unpaid['id']}"))["payment_state"] == "paid"
    assert f"receivable:{customer.user_id}" not in nonzero(app)
    assert_consistent(app)
