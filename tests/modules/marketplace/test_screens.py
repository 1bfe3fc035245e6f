"""The order screens (``/web/marketplace/``) through the test client, against real PostgreSQL
(primary and replica) and Redis, and the embedded default where marked: what each role sees
equals what the REST API gives the same user, the actions call the API's services, every
refusal shows the service's message and changes nothing, and a refund form sent twice refunds
once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import wait_for_replica
from tests.modules.conftest import Caller
from tests.modules.ledger.screens_support import browser_of, web_user
from tests.modules.ledger.screens_support import notices as shown_notices
from tests.servers import Services

from .conftest import (
    YEAR,
    MadeProduct,
    confirm,
    get,
    order_body,
    paid_order,
    place,
    post,
    shop_in,
    sql,
)
from .screens_support import SCREENS, field_errors, field_value, hidden, tables

#: What a refusal must leave as it was.
WRITTEN = (
    "marketplace_sale_order",
    "marketplace_account_move",
    "marketplace_payment",
    "marketplace_refund",
    "ledger_transaction",
    "core_outbox_event",
)


def snapshot(services: Services) -> dict[str, Any]:
    """Rows per table, and every order's, payment's and invoice's state, from the primary."""
    shown: dict[str, Any] = {
        table: sql(services, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608
        for table in WRITTEN
    }
    shown["states"] = sql(
        services,
        "SELECT 'order', name, state FROM marketplace_sale_order UNION ALL "
        "SELECT 'payment', name, state FROM marketplace_payment UNION ALL "
        "SELECT 'move', name, payment_state FROM marketplace_account_move ORDER BY 1, 2",
    )
    return shown


def order_page(web: FlaskClient, order_id: str) -> TestResponse:
    page = web.get(f"{SCREENS}/orders/{order_id}")
    assert page.status_code == 200, page.text
    return page


def numbers(page: TestResponse) -> list[str]:
    listed = tables(page.text).get("orders")
    return [row[0] for row in listed.body] if listed else []


def refund_form(page: TestResponse, payment_number: str, **fields: str) -> dict[str, str]:
    """The first refund form's fields as the page fills them, changed by ``fields``."""
    form = {
        "csrf_token": hidden(page.text, "csrf_token"),
        "nonce": hidden(page.text, "nonce"),
        "amount": field_value(page.text, "refund-1-amount"),
        "reason": "Damaged on arrival",
        "destination": "",
        "confirm": payment_number,
    }
    form.update(fields)
    return form


def notices(page: TestResponse) -> list[str]:
    """The layout's notices (flash messages), as text."""
    return [text for _, text in shown_notices(page)]


def follow(web: FlaskClient, response: TestResponse) -> TestResponse:
    assert response.status_code == 303, response.text
    page = web.get(response.headers["Location"])
    assert page.status_code == 200
    return page


# -- the list -----------------------------------------------------------------------------------


def test_staff_list_every_order_newest_first_with_the_rest_lists_figures(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct
) -> None:
    placed = [
        paid_order(client, customer, staff, product, "1"),
        *(place(client, customer, order_body((product.id, q))) for q in ("2", "0.5")),
    ]
    rest = get(client, staff, "/orders").get_json()["items"]
    web = web_user(app, "staff")

    page = web.get(f"{SCREENS}/")

    assert page.status_code == 200
    assert "Orders · Lapak" in page.text
    assert f'<a href="{SCREENS}/" aria-current="page">Orders</a>' in page.text  # the menu
    rows = tables(page.text)["orders"].body
    assert [row[0] for row in rows] == [item["number"] for item in rest]
    assert [row[0] for row in rows] == [p["order"]["number"] for p in reversed(placed)]
    assert [row[2] for row in rows] == [item["customer"][:8] + "…" for item in rest]
    assert [row[4] for row in rows] == ["In payment", "In payment", "Paid"]
    assert [row[5:] for row in rows] == [
        [f"{item[name]} IDR" for name in ("amount_untaxed", "amount_tax", "amount_total")]
        for item in rest
    ]
    assert [row[5:] for row in rows][-1] == ["37000.00 IDR", "4070.00 IDR", "41070.00 IDR"]


def test_sellers_and_customers_list_exactly_what_the_rest_list_gives_them(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    seller, alice, bob = log_in_as("seller"), log_in_as("customer"), log_in_as("customer")
    theirs = make_product("10000", name="LELE", seller_id=seller.user_id)
    other = make_product("20000", name="NILA")
    a1 = place(client, alice, order_body((theirs.id, "1")))["order"]["number"]
    a2 = place(client, alice, order_body((other.id, "1")))["order"]["number"]
    b1 = place(client, bob, order_body((other.id, "1"), (theirs.id, "2")))["order"]["number"]

    for caller, expected in ((seller, [b1, a1]), (alice, [a2, a1])):
        rest = [item["number"] for item in get(client, caller, "/orders").get_json()["items"]]
        # The same user in a browser (which ends the API session).
        page = browser_of(app, caller.email).get(f"{SCREENS}/")
        assert rest == expected
        assert numbers(page) == rest
        if caller is alice:
            assert "Customer id" not in page.text  # a customer's filter would be themselves
            assert tables(page.text)["orders"].rows[0][2] == "State"


def test_a_user_opens_only_the_orders_the_rest_api_shows_them(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
) -> None:
    seller, alice, bob = log_in_as("seller"), log_in_as("customer"), log_in_as("customer")
    theirs = make_product("10000", name="LELE", seller_id=seller.user_id)
    other = make_product("20000", name="NILA")
    of_alice = place(client, alice, order_body((other.id, "1")))["order"]["id"]
    of_bob = place(client, bob, order_body((theirs.id, "1")))["order"]["id"]
    browsers = {caller.email: browser_of(app, caller.email) for caller in (seller, alice)}

    opened = {
        (who, order): browsers[who].get(f"{SCREENS}/orders/{order}").status_code
        for who in browsers
        for order in (of_alice, of_bob)
    }
    assert opened == {
        (seller.email, of_alice): 404,
        (seller.email, of_bob): 200,
        (alice.email, of_alice): 200,
        (alice.email, of_bob): 404,
    }
    anonymous = app.test_client().get(f"{SCREENS}/orders/{of_alice}")
    assert anonymous.status_code == 303
    assert anonymous.headers["Location"].startswith("/web/login?next=")


FILTERS = (
    {"state": "cancel"},
    {"state": "sale", "payment_state": "paid"},
    {"payment_state": "in_payment"},
    {"number": "00002"},
    {"total_min": "50000"},
    {"total_max": "50000", "payment_state": "in_payment"},
    {"from": "today", "to": "today"},
    {"from": "2000-01-01", "to": "2000-12-31"},
    {"customer": "alice"},
)


def test_the_filters_give_what_the_rest_lists_filters_give(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    staff: Caller,
    product: MadeProduct,
) -> None:
    alice, bob = log_in_as("customer"), log_in_as("customer")
    placed = [
        paid_order(client, alice, staff, product, "1"),
        place(client, bob, order_body((product.id, "2"))),
        place(client, alice, order_body((product.id, "3"))),
    ]
    post(client, alice, f"/orders/{placed[2]['order']['id']}/cancel")
    today = datetime.now(UTC).date().isoformat()
    web = web_user(app, "staff")

    for filters in FILTERS:
        query = {
            name: {"today": today, "alice": str(alice.uuid)}.get(value, value)
            for name, value in filters.items()
        }
        rest = [i["number"] for i in get(client, staff, "/orders", **query).get_json()["items"]]
        page = web.get(f"{SCREENS}/", query_string=query)
        assert page.status_code == 200, (filters, page.text)
        assert numbers(page) == rest, filters
        for name, value in query.items():  # the form shows the filters applied
            if name in ("state", "payment_state"):
                assert re.search(rf'<option value="{value}" selected>', page.text), name
            else:
                assert f'name="{name}"' in page.text, name
                assert f'value="{value}"' in page.text, name
    assert {len(numbers(web.get(f"{SCREENS}/", query_string=f))) for f in FILTERS[:2]} == {1}


def test_filters_that_are_not_valid_are_named_with_the_rest_lists_messages(
    app: Flask, client: FlaskClient, staff: Caller, product: MadeProduct, customer: Caller
) -> None:
    place(client, customer, order_body((product.id, "1")))
    query = {"total_min": "abc", "from": "yesterday", "state": "bogus", "customer": "someone"}
    rest = get(client, staff, "/orders", **query).get_json()
    web = web_user(app, "staff")

    page = web.get(f"{SCREENS}/", query_string=query)

    assert page.status_code == 422
    assert "orders" not in tables(page.text)
    assert notices(page) == ["Some filters are not valid: see the fields marked below."]
    shown = field_errors(page.text)
    assert len(shown) == 4
    # The REST list's messages (as one sentence per field).
    assert sorted(text.rstrip(".") for text in shown) == sorted(
        " ".join(messages).rstrip(".") for messages in rest["errors"].values()
    )
    assert (
        'id="f-total-min" name="total_min" inputmode="decimal" value="abc" aria-invalid="true"'
        in (page.text)
    )


def test_keyset_pages_go_forward_and_back_with_the_services_cursors(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct
) -> None:
    for _ in range(5):
        place(client, customer, order_body((product.id, "1")))
    everything = [i["number"] for i in get(client, staff, "/orders").get_json()["items"]]
    web = web_user(app, "staff")

    def link(page: TestResponse, rel: str) -> str | None:
        found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page.text)
        return unescape(found.group(1)) if found else None

    pages = [web.get(f"{SCREENS}/", query_string={"limit": "2", "state": "sale"})]
    while (following := link(pages[-1], "next")) is not None:
        pages.append(web.get(following))
    assert [numbers(page) for page in pages] == [everything[:2], everything[2:4], everything[4:]]
    assert link(pages[0], "prev") is None
    assert all("limit=2" in link(page, "prev") and "state=sale" in link(page, "prev")
               for page in pages[1:])  # fmt: skip

    back = web.get(link(pages[2], "prev"))
    assert numbers(back) == everything[2:4]
    assert numbers(web.get(link(back, "prev"))) == everything[:2]
    first = re.search(r'<a href="([^"]+)">First page</a>', pages[2].text)
    assert first
    assert numbers(web.get(unescape(first.group(1)))) == everything[:2]

    altered = web.get(f"{SCREENS}/", query_string={"limit": "2", "cursor": "forged"})
    assert altered.status_code == 303
    assert notices(follow(web, altered)) == [
        "That page link is out of date: here is the first page."
    ]


def test_a_page_size_the_select_does_not_offer_is_offered_and_selected(app: Flask) -> None:
    web = web_user(app, "staff")

    def sizes(query: dict[str, str]) -> tuple[list[str], list[str]]:
        page = web.get(f"{SCREENS}/", query_string=query)
        assert page.status_code == 200
        select = re.search(r'<select id="f-limit".*?</select>', page.text, re.S)
        assert select
        options = re.findall(r'<option value="(\d+)"( selected)?>', select.group(0))
        return [size for size, _ in options], [size for size, chosen in options if chosen]

    assert sizes({"limit": "07"}) == (["7", "20", "50", "100"], ["7"])
    assert sizes({"limit": "150"}) == (["20", "50", "100", "150"], ["150"])
    assert sizes({"limit": "20"}) == (["20", "50", "100"], ["20"])
    assert sizes({}) == (["20", "50", "100"], ["50"])


def test_the_screens_read_a_caught_up_replica_and_a_browser_sees_its_own_refund(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    own_replica: Services,
) -> None:
    first = paid_order(client, customer, staff, product)
    order_id, payment = first["order"]["id"], first["payment"]
    web = web_user(app, "staff")
    wait_for_replica(own_replica)
    own_replica.replica.execute("SELECT pg_wal_replay_pause()")
    try:
        second = place(client, customer, order_body((product.id, "2")))  # the primary's only
        # This browser has seen nothing newer than the replica: it reads the replica.
        assert numbers(web.get(f"{SCREENS}/")) == [first["order"]["number"]]
        assert web.get(f"{SCREENS}/orders/{second['order']['id']}").status_code == 404
        page = order_page(web, order_id)
        refunded = web.post(
            f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund",
            data=refund_form(page, payment["number"], amount="100.00"),
        )
        # Having written, it reads where its write is: the refund, and the other order.
        after = follow(web, refunded)
        assert [row[2] for row in tables(after.text)["refunds-table"].body] == ["100.00 IDR"]
        assert len(numbers(web.get(f"{SCREENS}/"))) == 2
    finally:
        own_replica.replica.execute("SELECT pg_wal_replay_resume()")
    wait_for_replica(own_replica)


# -- an order -----------------------------------------------------------------------------------


def test_an_order_shows_the_rest_apis_lines_documents_payments_refunds_and_its_postings(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    bandeng, lele = make_product("37000", name="BANDENG"), make_product("12500", name="LELE")
    body = order_body((bandeng.id, "1.5"), (lele.id, "2"))
    body["payment"]["amount"] = "30000.00"
    placed = place(client, customer, body)
    order_id, invoice_id = placed["order"]["id"], placed["invoice"]["id"]
    first = placed["payment"]["id"]
    second = post(client, customer, f"/invoices/{invoice_id}/payments", {"method": "cash"})
    assert second.status_code == 201
    confirm(client, staff, first)
    refunded = post(client, staff, f"/payments/{first}/refunds",
                    {"amount": "1000.00", "reason": "One fish short"})  # fmt: skip
    assert refunded.status_code == 201
    rest = get(client, staff, f"/orders/{order_id}").get_json()
    rest_refunds = get(client, staff, f"/payments/{first}/refunds").get_json()["items"]
    web = web_user(app, "staff")

    page = order_page(web, order_id)

    # The menu marks Orders: an order is under the list.
    assert f'<a href="{SCREENS}/" aria-current="true">Orders</a>' in page.text
    shown = tables(page.text)
    order = rest["order"]
    assert f"Order {order['number']}" in page.text
    assert shown["order-lines"].body == [
        [
            line["name"],
            line["quantity"],
            *(
                f"{line[n]} IDR"
                for n in ("price_unit", "price_subtotal", "price_tax", "price_total")
            ),
        ]
        for line in order["lines"]
    ] + [
        [
            "Order total",
            *(f"{order[n]} IDR" for n in ("amount_untaxed", "amount_tax", "amount_total")),
        ]
    ]
    invoice_number = rest["invoices"][0]["number"]
    assert [row[:2] + row[4:] for row in shown["documents"].body] == [
        [
            move["number"] + (f" for {invoice_number}" if move["reversed_entry"] else ""),
            "Invoice" if move["move_type"] == "out_invoice" else "Credit note",
            *(f"{move[n]} IDR" for n in ("amount_untaxed", "amount_tax", "amount_total")),
            f"{move['amount_residual']} IDR",
        ]
        for move in rest["invoices"]
    ]
    assert [row[0] for row in shown["documents"].body] == [
        f"INV/{YEAR}/00001",
        f"RINV/{YEAR}/00001 for INV/{YEAR}/00001",
    ]
    assert [(row[0], row[3], row[4]) for row in shown["payments-table"].body] == [
        (payment["number"], {"paid": "Confirmed", "in_process": "In process"}[payment["state"]],
         f"{payment['amount']} IDR")
        for payment in rest["payments"]
    ]  # fmt: skip
    assert [(row[0], row[2], row[3]) for row in shown["refunds-table"].body] == [
        (r["credit_note_number"], f"{r['amount']} IDR", r["reason"]) for r in rest_refunds
    ]
    # The ledger's postings of the order's documents: the invoice, the capture, the refund.
    posted = sql(
        services,
        "SELECT t.number, t.operation, e.debit, e.credit FROM ledger_transaction t "
        "JOIN ledger_entry e ON e.transaction_id = t.id ORDER BY t.id, e.id",
    )
    postings = {key: table for key, table in shown.items() if key.startswith("posting-")}
    assert [key.removeprefix("posting-") for key in postings] == sorted({row[0] for row in posted})
    assert [table.caption.split(" · ")[1] for table in postings.values()] == [
        "INVOICE_POST",
        "PAYMENT_CAPTURE",
        "REFUND",
    ]
    assert [
        (key.removeprefix("posting-"), row[2], row[3])
        for key, table in postings.items()
        for row in table.body
    ] == [
        (number, f"{debit} IDR" if debit else "", f"{credit} IDR" if credit else "")
        for number, _, debit, credit in posted
    ]
    # What remains refundable on the confirmed payment fills the refund form.
    assert field_value(page.text, "refund-1-amount") == "29000.00"
    assert 'id="refund-2-amount"' not in page.text  # the other payment is not confirmed


def test_a_customer_sees_their_order_with_their_own_ledger_legs_and_no_staff_action(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    staff: Caller,
    product: MadeProduct,
) -> None:
    buyer = log_in_as("customer")
    placed = paid_order(client, buyer, staff, product)
    web = browser_of(app, buyer.email)

    page = order_page(web, placed["order"]["id"])

    postings = [t for key, t in tables(page.text).items() if key.startswith("posting-")]
    assert [[row[0] for row in t.body] for t in postings] == [["receivable"], ["receivable"]]
    assert [row[1] for t in postings for row in t.body] == ["the customer", "the customer"]
    assert "Refund payment" not in page.text
    assert ">Confirm</button>" not in page.text
    assert "Cancel the order" in page.text  # customers may cancel their own orders


# -- refunds ------------------------------------------------------------------------------------


def test_staff_refund_part_of_a_payment_and_see_the_refund_and_its_credit_note(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    caplog: pytest.LogCaptureFixture,
) -> None:
    placed = paid_order(client, customer, staff, product)
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    page = order_page(web, order_id)
    assert field_value(page.text, "refund-1-amount") == "41070.00"  # all, by default
    caplog.set_level(logging.INFO, logger="modules.marketplace.screens")

    sent = web.post(
        f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund",
        data=refund_form(page, payment["number"], amount="10000.00"),
    )

    assert sent.headers["Location"].endswith(f"/orders/{order_id}#refunds")
    after = follow(web, sent)
    credit_note = f"RINV/{YEAR}/00001"
    assert notices(after) == [
        f"Refunded 10000.00 IDR of payment {payment['number']}: credit note {credit_note}."
    ]
    rest = get(client, staff, f"/payments/{payment['id']}/refunds").get_json()["items"]
    assert [(r["amount"], r["reason"], r["credit_note_number"]) for r in rest] == [
        ("10000.00", "Damaged on arrival", credit_note)
    ]
    shown = tables(after.text)
    assert [row[:4] + row[5:6] for row in shown["refunds-table"].body] == [
        [credit_note, payment["number"], "10000.00 IDR", "Damaged on arrival", "Pending"]
    ]
    assert shown["documents"].body[1][0] == f"{credit_note} for {placed['invoice']['number']}"
    assert field_value(after.text, "refund-1-amount") == "31070.00"
    assert [r.message for r in caplog.records if r.name == "modules.marketplace.screens"] == [
        "marketplace.refund success"
    ]

    done = web.post(
        f"{SCREENS}/orders/{order_id}/refunds/{rest[0]['id']}/done",
        data={"csrf_token": hidden(after.text, "csrf_token")},
    )
    assert "is marked sent back" in notices(follow(web, done))[0]
    assert get(client, staff, f"/refunds/{rest[0]['id']}").get_json()["state"] == "succeeded"


def test_a_refund_form_sent_twice_refunds_once(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    placed = paid_order(client, customer, staff, product)
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    form = refund_form(order_page(web, order_id), payment["number"], amount="5000.00")
    path = f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund"

    first = web.post(path, data=form)
    again = web.post(path, data={**form, "amount": "5000"})  # the same amount, as typed again

    assert (first.status_code, again.status_code) == (303, 303)
    assert sql(services, "SELECT amount FROM marketplace_refund") == [(Decimal("5000.00"),)]
    assert notices(follow(web, again)) == [  # once: it is one refund
        f"Refunded 5000.00 IDR of payment {payment['number']}: credit note RINV/{YEAR}/00001."
    ]
    before = snapshot(services)
    other = web.post(path, data={**form, "amount": "6000.00"})
    assert other.status_code == 422
    assert notices(other) == [
        "This form was sent already with other values: reload the page to refund again."
    ]
    assert snapshot(services) == before


NOT_A_DECIMAL = (
    "a decimal number as a string with at most 16 digits before the point and 2 after it, like "
    '"12.50".'
)
REFUSED_REFUNDS = (
    (
        {"amount": "41070.01"},
        422,
        "41070.01 IDR is more than the 41070.00 still refundable on payment {payment}.",
        ["at most 41070.00"],
    ),
    (
        {"confirm": "PAY/0000/00000"},
        422,
        "Type the payment's number, {payment}, to confirm the refund.",
        ["type {payment}"],
    ),
    ({"reason": ""}, 422, "Reason: Missing data for required field.",
     ["Missing data for required field."]),
    ({"amount": "ten"}, 422, f"Amount: {NOT_A_DECIMAL}", [NOT_A_DECIMAL]),
    ({"amount": "0"}, 422, "A payment is more than zero.", ["must be > 0"]),
    ({"destination": "voucher"}, 422,
     "A refund of {payment} goes back through bank_transfer or wallet.",
     ["one of bank_transfer, wallet"]),
    ({"nonce": ""}, 422, "The form is incomplete: reload the page and try again.", []),
)  # fmt: skip


@pytest.mark.parametrize(("change", "status", "message", "errors"), REFUSED_REFUNDS)
def test_a_refused_refund_shows_the_services_message_keeps_what_was_typed_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
    change: dict[str, str],
    status: int,
    message: str,
    errors: list[str],
) -> None:
    placed = paid_order(client, customer, staff, product)
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    form = refund_form(order_page(web, order_id), payment["number"], **change)
    before = snapshot(services)

    refused = web.post(f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund", data=form)

    assert refused.status_code == status
    expected = message.format(payment=payment["number"])
    assert notices(refused) == [expected]
    assert field_errors(refused.text) == [
        expected,
        *(error.format(payment=payment["number"]) for error in errors),
    ]
    assert field_value(refused.text, "refund-1-amount") == form["amount"]
    assert f'value="{form["reason"]}"' in refused.text
    assert snapshot(services) == before


def test_a_payment_not_confirmed_is_not_refunded(
    app: Flask, client: FlaskClient, customer: Caller, product: MadeProduct, services: Services
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    page = order_page(web, order_id)
    assert "Refund payment" not in page.text  # only a confirmed payment offers the form
    before = snapshot(services)

    refused = web.post(
        f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund",
        data={
            "csrf_token": hidden(page.text, "csrf_token"),
            "nonce": "any",
            "reason": "Changed mind",
            "confirm": payment["number"],
        },
    )

    assert refused.status_code == 409
    assert notices(refused) == [
        f"Payment {payment['number']} is in_process: only a confirmed payment is refunded."
    ]
    assert snapshot(services) == before


@pytest.mark.parametrize("role", ["customer", "seller"])
def test_only_staff_refund_confirm_and_mark_done(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
    role: str,
) -> None:
    placed = paid_order(client, customer, staff, product)
    order_id, payment = placed["order"]["id"], placed["payment"]
    staff_web = web_user(app, "staff")
    token_page = order_page(staff_web, order_id)
    web = web_user(app, role)
    own_token = hidden(web.get(f"{SCREENS}/").text, "csrf_token")
    before = snapshot(services)

    for path, data in (
        (f"payments/{payment['id']}/refund", refund_form(token_page, payment["number"])),
        (f"payments/{payment['id']}/confirm", {}),
    ):
        refused = web.post(
            f"{SCREENS}/orders/{order_id}/{path}", data={**data, "csrf_token": own_token}
        )
        assert refused.status_code == 403, path
        assert "this needs the role staff or admin" in refused.text
    assert snapshot(services) == before


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct,
    services: Services,
) -> None:  # fmt: skip
    placed = paid_order(client, customer, staff, product)
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    form = refund_form(order_page(web, order_id), payment["number"])
    before = snapshot(services)

    for data in ({**form, "csrf_token": ""}, {**form, "csrf_token": "0" * 64}):
        refused = web.post(
            f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund", data=data
        )
        assert refused.status_code == 403
        assert "This change was refused" in refused.text
    cancel = web.post(f"{SCREENS}/orders/{order_id}/cancel", data={"confirm": form["confirm"]})
    assert cancel.status_code == 403
    assert snapshot(services) == before


def test_an_action_on_a_payment_or_refund_of_another_order_is_not_found_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    shown_order = paid_order(client, customer, staff, product)["order"]["id"]
    unpaid = place(client, customer, order_body((product.id, "1")))["payment"]
    paid = paid_order(client, customer, staff, product)["payment"]
    refund = post(client, staff, f"/payments/{paid['id']}/refunds", {"reason": "r", "amount": "1"})
    assert refund.status_code == 201, refund.get_json()
    web = web_user(app, "staff")
    page = order_page(web, shown_order)
    form = refund_form(page, paid["number"], amount="100.00")
    before = snapshot(services)

    for order_id, action, data in (
        (shown_order, f"payments/{unpaid['id']}/confirm", {}),
        (shown_order, f"payments/{paid['id']}/refund", form),
        (shown_order, f"refunds/{refund.get_json()['id']}/done", {}),
        ("00000000-0000-4000-8000-000000000000", f"payments/{paid['id']}/refund", form),
    ):
        refused = web.post(
            f"{SCREENS}/orders/{order_id}/{action}",
            data={**data, "csrf_token": hidden(page.text, "csrf_token")},
        )
        assert refused.status_code == 404, action
    assert snapshot(services) == before
    states = sql(services, "SELECT state FROM marketplace_refund")
    assert states == [("pending",)]


# -- confirming and cancelling ------------------------------------------------------------------


def test_staff_confirm_a_payment_and_the_capture_is_posted(
    app: Flask, client: FlaskClient, customer: Caller, staff: Caller, product: MadeProduct
) -> None:
    placed = place(client, customer, order_body((product.id, "1")))
    order_id, payment = placed["order"]["id"], placed["payment"]
    web = web_user(app, "staff")
    page = order_page(web, order_id)
    assert f'aria-label="Confirm payment {payment["number"]}"' in page.text

    confirmed = web.post(
        f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/confirm",
        data={"csrf_token": hidden(page.text, "csrf_token")},
    )

    after = follow(web, confirmed)
    assert notices(after) == [f"Payment {payment['number']} is confirmed."]
    assert get(client, staff, f"/payments/{payment['id']}").get_json()["state"] == "paid"
    shown = tables(after.text)
    assert shown["payments-table"].body[0][3] == "Confirmed"
    assert [t.caption.split(" · ")[1] for k, t in shown.items() if k.startswith("posting-")] == [
        "INVOICE_POST",
        "PAYMENT_CAPTURE",
    ]
    assert "Refund payment" in after.text


def test_cancelling_needs_the_number_typed_and_refunds_first_then_works(
    app: Flask,
    client: FlaskClient,
    customer: Caller,
    staff: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    placed = paid_order(client, customer, staff, product)
    order_id, number = placed["order"]["id"], placed["order"]["number"]
    payment = placed["payment"]
    web = web_user(app, "staff")
    page = order_page(web, order_id)
    token = hidden(page.text, "csrf_token")
    before = snapshot(services)

    mistyped = web.post(f"{SCREENS}/orders/{order_id}/cancel",
                        data={"csrf_token": token, "confirm": "SO/1"})  # fmt: skip
    unrefunded = web.post(f"{SCREENS}/orders/{order_id}/cancel",
                          data={"csrf_token": token, "confirm": number})  # fmt: skip

    assert (mistyped.status_code, unrefunded.status_code) == (422, 409)
    assert notices(mistyped) == [f"Type the order's number, {number}, to confirm the cancellation."]
    assert notices(unrefunded) == [
        f"Order {number} has a confirmed payment ({payment['number']}); it cannot be cancelled "
        "until the money is refunded."
    ]
    assert field_value(unrefunded.text, "cancel-confirm") == number
    assert snapshot(services) == before

    refunded = web.post(
        f"{SCREENS}/orders/{order_id}/payments/{payment['id']}/refund",
        data=refund_form(page, payment["number"]),
    )
    follow(web, refunded)
    cancelled = web.post(f"{SCREENS}/orders/{order_id}/cancel",
                         data={"csrf_token": token, "confirm": number})  # fmt: skip
    after = follow(web, cancelled)
    assert notices(after) == [f"Order {number} is cancelled."]
    assert get(client, staff, f"/orders/{order_id}").get_json()["order"]["state"] == "cancel"
    assert "Cancel the order" not in after.text


def test_a_customer_cancels_their_own_order_and_a_seller_is_told_they_may_not(
    app: Flask,
    client: FlaskClient,
    log_in_as: Callable[..., Caller],
    make_product: Callable[..., MadeProduct],
    services: Services,
) -> None:
    seller, buyer = log_in_as("seller"), log_in_as("customer")
    theirs = make_product("10000", name="LELE", seller_id=seller.user_id)
    placed = place(client, buyer, order_body((theirs.id, "1")))
    order_id, number = placed["order"]["id"], placed["order"]["number"]
    browsers = {caller: browser_of(app, caller.email) for caller in (seller, buyer)}
    seller_page = order_page(browsers[seller], order_id)
    assert "Cancel the order" not in seller_page.text
    before = snapshot(services)

    refused = browsers[seller].post(
        f"{SCREENS}/orders/{order_id}/cancel",
        data={"csrf_token": hidden(seller_page.text, "csrf_token"), "confirm": number},
    )
    assert refused.status_code == 403
    assert notices(refused) == ["Only staff and the order's customer can cancel it."]
    assert snapshot(services) == before

    buyer_page = order_page(browsers[buyer], order_id)
    cancelled = browsers[buyer].post(
        f"{SCREENS}/orders/{order_id}/cancel",
        data={"csrf_token": hidden(buyer_page.text, "csrf_token"), "confirm": number},
    )
    after = follow(browsers[buyer], cancelled)
    assert notices(after) == [f"Order {number} is cancelled."]
    documents = tables(after.text)["documents"].body
    assert [row[0] for row in documents] == [
        placed["invoice"]["number"],
        f"RINV/{YEAR}/00001 for {placed['invoice']['number']}",
    ]
    assert [row[3] for row in documents] == ["Reversed", "Paid"]


# -- the embedded default -----------------------------------------------------------------------


def test_on_embedded_sqlite_the_list_and_a_refund_work_too(
    make_embedded_app: Callable[..., Flask],
) -> None:
    app = make_embedded_app()
    shop = shop_in(app)
    placed = paid_order(shop.client, shop.buyer, shop.staff, shop.product)
    payment = placed["payment"]
    web = web_user(app, "staff")

    assert numbers(web.get(f"{SCREENS}/")) == [placed["order"]["number"]]
    page = order_page(web, placed["order"]["id"])
    path = f"{SCREENS}/orders/{placed['order']['id']}/payments/{payment['id']}/refund"
    form = refund_form(page, payment["number"], amount="1070.00")
    first, again = web.post(path, data=form), web.post(path, data=form)

    assert (first.status_code, again.status_code) == (303, 303)
    after = follow(web, again)
    assert [row[2] for row in tables(after.text)["refunds-table"].body] == ["1070.00 IDR"]
    assert field_value(after.text, "refund-1-amount") == "40000.00"
