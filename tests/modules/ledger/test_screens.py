"""The ledger's screens through a browser's session (the test client, real PostgreSQL and Redis,
and the embedded default where marked): the accounts with their filters, an account's statement
in keyset pages, the trial balance at a moment; admins only, read from a replica, bad filters
said, figures equal to the REST API's."""

from __future__ import annotations

from datetime import UTC, timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import clock
from app.clock import travel
from tests.conftest import wait_for_replica
from tests.modules.conftest import Caller
from tests.servers import Services

from .conftest import API
from .screens_support import adjust, api_caller, api_get, notices, web_user

WEB = "/web/ledger"


def seller_and_staff(app: Flask, api: FlaskClient) -> tuple[Caller, Caller]:
    """A seller and a staff member (API sessions); the seller holds no account yet."""
    return api_caller(app, api, "seller"), api_caller(app, api, "staff")


def account_rows(page: TestResponse) -> list[tuple[str, str]]:
    """The accounts table: (account id, balance as written)."""
    rows = []
    for chunk in page.text.split('<a href="/web/ledger/accounts/')[1:]:
        account_id = chunk.split('"', 1)[0]
        balance = chunk.split('<td class="number">', 1)[1].split("&nbsp;", 1)[0].strip()
        rows.append((account_id, balance))
    return rows


def next_link(page: TestResponse) -> str | None:
    if 'rel="next"' not in page.text:
        return None
    return (
        page.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    )


def test_admins_list_the_accounts_with_filters_as_the_api_does(either_app: Flask) -> None:
    api = either_app.test_client()
    seller, staff = seller_and_staff(either_app, api)
    adjust(api, staff, seller.uuid, "9500.00")
    adjust(api, staff, seller.uuid, "12.50", currency="USD")
    admin = api_caller(either_app, api, "admin")
    browser = web_user(either_app, "admin")

    queries = [
        {},
        {"purpose": "seller_available"},
        {"holder": str(seller.uuid)},
        {"currency": "USD"},
        {"purpose": "manual_clearing", "currency": "IDR"},
    ]
    for query in queries:
        page = browser.get(f"{WEB}/", query_string=query)
        assert page.status_code == 200, query
        listed = api_get(api, admin, f"{API}/accounts", **query)["items"]
        assert account_rows(page) == [(a["id"], a["balance"]) for a in listed], query
    only_usd = browser.get(f"{WEB}/", query_string={"currency": "USD"})
    # The seller's available (a liability) and the platform's clearing (an asset) account.
    assert [balance for _, balance in account_rows(only_usd)] == ["12.50", "12.50"]
    nothing = browser.get(f"{WEB}/", query_string={"currency": "EUR"})
    assert "No account matches these filters." in nothing.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"holder": "budi"}, "Holder: Not a valid UUID."),
        ({"currency": "idr"}, "Currency: String does not match expected pattern."),
        ({"purpose": "Seller Available"}, "Purpose: String does not match expected pattern."),
        ({"cursor": "forged"}, "the cursor was altered, expired or belongs to another listing"),
        ({"limit": "0"}, "Limit: Must be greater than or equal to 1"),
    ],
)
def test_a_bad_filter_says_what_is_wrong_and_lists_nothing(
    app: Flask, query: dict[str, str], message: str
) -> None:
    api = app.test_client()
    seller, staff = seller_and_staff(app, api)
    adjust(api, staff, seller.uuid, "9500.00")

    page = web_user(app, "admin").get(f"{WEB}/", query_string=query)

    assert page.status_code == 422
    ((category, text),) = notices(page)
    assert category == "error"
    assert message in text, text
    assert account_rows(page) == []


def test_a_statement_pages_back_through_the_entries_with_the_balance_after_each(
    app: Flask,
) -> None:
    api = app.test_client()
    seller, staff = seller_and_staff(app, api)
    for amount in ("1000.00", "2000.00", "3000.00"):
        adjust(api, staff, seller.uuid, amount)
    admin = api_caller(app, api, "admin")
    (account,) = api_get(api, admin, f"{API}/accounts", purpose="seller_available")["items"]
    browser = web_user(app, "admin")

    first = browser.get(f"{WEB}/accounts/{account['id']}", query_string={"limit": "2"})

    assert first.status_code == 200
    assert account["name"] in first.text
    entries = api_get(api, admin, f"{API}/accounts/{account['id']}/entries")["items"]
    assert [e["balance_after"] for e in entries] == ["6000.00", "3000.00", "1000.00"]
    shown = [(e["number"], e["credit"], e["balance_after"]) for e in entries]
    assert statement(first) == shown[:2]
    later = next_link(first)
    assert later is not None
    assert urlsplit(later).path == f"{WEB}/accounts/{account['id']}"
    second = browser.get(later)
    assert statement(second) == [
        (e["number"], e["credit"], e["balance_after"]) for e in entries[2:]
    ]
    assert next_link(second) is None


def statement(page: TestResponse) -> list[tuple[str, str, str]]:
    """The statement's rows: (transaction number, credit, balance after)."""
    rows = []
    body = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    for row in body.split("<tr>")[1:]:
        number = row.split('<th scope="row">', 1)[1].split("<", 1)[0]
        cells = [c.split("</td>", 1)[0] for c in row.split('<td class="number">')[1:]]
        rows.append((number, cells[1].strip(), cells[2].split("&nbsp;", 1)[0].strip()))
    return rows


def test_the_trial_balance_at_a_moment_shows_debits_equal_to_credits(app: Flask) -> None:
    api = app.test_client()
    seller, staff = seller_and_staff(app, api)
    adjust(api, staff, seller.uuid, "9500.00")
    between = (clock.now() + timedelta(seconds=1)).astimezone(UTC)
    moment = between.strftime("%Y-%m-%dT%H:%M:%S")  # as a browser's datetime-local sends it
    admin = api_caller(app, api, "admin")
    browser = web_user(app, "admin")
    with travel(timedelta(minutes=5)):
        adjust(api, staff, seller.uuid, "500.00")
        adjust(api, staff, seller.uuid, "7.25", currency="USD")

        now = browser.get(f"{WEB}/trial-balance")
        then = browser.get(f"{WEB}/trial-balance", query_string={"at": moment})

        assert now.status_code == then.status_code == 200
        for page, query in ((now, {}), (then, {"at": moment})):
            shown = api_get(api, admin, f"{API}/trial-balance", **query)
            assert totals(page) == [
                (t["currency"], t["debit"], t["credit"]) for t in shown["totals"]
            ]
    assert totals(now) == [("IDR", "10000.00", "10000.00"), ("USD", "7.25", "7.25")]
    assert totals(then) == [("IDR", "9500.00", "9500.00")]
    assert now.text.count("state-balanced") == 2
    assert "state-unbalanced" not in now.text
    # A browser's datetime-local without seconds is taken too; before everything, nothing.
    early = browser.get(f"{WEB}/trial-balance", query_string={"at": "2020-01-01T00:00"})
    assert early.status_code == 200
    assert "No transaction was posted by then." in early.text
    assert 'At <time datetime="2020-01-01T00:00:00+00:00">2020-01-01 00:00 UTC</time>' in (
        early.text
    )


def totals(page: TestResponse) -> list[tuple[str, str, str]]:
    """The trial balance's totals: (currency, debits, credits)."""
    table = page.text.split('id="totals-caption"', 1)[1].split("</table>", 1)[0]
    rows = []
    for row in table.split("<tbody>", 1)[1].split("<tr>")[1:]:
        currency = row.split('<th scope="row">', 1)[1].split("<", 1)[0]
        cells = [c.split("&nbsp;", 1)[0].strip() for c in row.split('<td class="number">')[1:]]
        rows.append((currency, cells[0], cells[1]))
    return rows


@pytest.mark.parametrize(
    ("at", "message"),
    [("yesterday", "At: an RFC 3339 date-time"), ("9999-12-31T23:59:59", "At: a moment from")],
)
def test_a_bad_moment_is_said(app: Flask, at: str, message: str) -> None:
    page = web_user(app, "admin").get(f"{WEB}/trial-balance", query_string={"at": at})
    assert page.status_code == 422
    assert message in notices(page)[0][1]


def test_only_admins_open_the_ledger(app: Flask) -> None:
    api = app.test_client()
    seller, staff = seller_and_staff(app, api)
    transaction = adjust(api, staff, seller.uuid, "9500.00")
    account = transaction["entries"][1]["account"]
    paths = ("/", f"/accounts/{account}", "/trial-balance")
    for role in ("staff", "seller", "customer"):
        browser = web_user(app, role)
        for path in paths:
            refused = browser.get(f"{WEB}{path}")
            assert refused.status_code == 403, (role, path)
            assert "this needs the role admin" in refused.text
    stranger = app.test_client()
    for path in paths:
        assert stranger.get(f"{WEB}{path}").headers["Location"].startswith("/web/login?next=")
    admin = web_user(app, "admin")
    assert admin.get(f"{WEB}/accounts/00000000-0000-4000-8000-000000000000").status_code == 404
    # The menu shows the ledger to admins only.
    assert f'href="{WEB}/"' in admin.get(f"{WEB}/").text
    assert f'href="{WEB}/"' not in web_user(app, "staff").get("/web/seller/").text


def test_the_screens_read_a_caught_up_replica(app: Flask, own_replica: Services) -> None:
    api = app.test_client()
    seller, staff = seller_and_staff(app, api)
    adjust(api, staff, seller.uuid, "9500.00")
    browser = web_user(app, "admin")
    wait_for_replica(own_replica)
    own_replica.replica.execute("SELECT pg_wal_replay_pause()")
    try:
        adjust(api, staff, seller.uuid, "500.00")  # on the primary only, for now
        # This browser has seen nothing newer than the replica: it reads the replica.
        assert totals(browser.get(f"{WEB}/trial-balance")) == [("IDR", "9500.00", "9500.00")]
    finally:
        own_replica.replica.execute("SELECT pg_wal_replay_resume()")
    wait_for_replica(own_replica)
    assert totals(browser.get(f"{WEB}/trial-balance")) == [("IDR", "10000.00", "10000.00")]
