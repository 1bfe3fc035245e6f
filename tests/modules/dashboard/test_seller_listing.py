"""A seller's recent transactions, read through ``dashboard_seller_payment``: page for page the
payments of invoices with their lines, newest first, with the cursors staff's listing gives,
recomputed here by SQL of the tests' own from the payments and invoice lines; and that table is
always what the payments and lines say, whatever changes them (PostgreSQL and SQLite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from alembic.migration import MigrationContext
from alembic.operations import Operations
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app.db import Session, get_database, transaction
from app.http import cursor_scope, encode_cursor
from modules.dashboard.seller_payment import TRIGGERS, create_triggers, drop_triggers
from tests.modules.conftest import Caller

from .conftest import DASHBOARD, MARKETPLACE, Market, build_market, ok, order, product

TRANSACTIONS = f"{DASHBOARD}/transactions"
#: The listing's cursors are signed for its endpoint.
ENDPOINT = "dashboard.Transactions"

#: A seller's payments newest first, recomputed: those of invoices with a line of theirs.
SELLERS_PAYMENTS = """
SELECT p.uuid, p.created_at, p.id FROM marketplace_payment p
WHERE EXISTS (SELECT 1 FROM marketplace_account_move_line l
              WHERE l.move_id = p.invoice_id AND l.seller_id = :seller)
ORDER BY p.created_at DESC, p.id DESC
"""
#: What the table must hold: each payment with each seller of its invoice, and its time.
EXPECTED_ROWS = """
SELECT DISTINCT p.id, l.seller_id, p.created_at FROM marketplace_payment p
JOIN marketplace_account_move_line l ON l.move_id = p.invoice_id
WHERE l.seller_id IS NOT NULL ORDER BY 1, 2
"""
HELD_ROWS = "SELECT payment_id, seller_id, created_at FROM dashboard_seller_payment ORDER BY 1, 2"


def pages(client: FlaskClient, caller: Caller, limit: int, **query: Any) -> list[dict[str, Any]]:
    """Every page of ``caller``'s listing, following next_cursor."""
    found = []
    cursor = None
    while True:
        if cursor:
            query["cursor"] = cursor
        page = ok(client.get(TRANSACTIONS, query_string={**query, "limit": limit},
                             headers=caller.headers))  # fmt: skip
        found.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def sql(app: Flask, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    with app.app_context():
        Session.remove()
        return [tuple(row) for row in Session().execute(text(statement), params)]


def expected_pages(app: Flask, seller: Caller, limit: int) -> list[tuple[list[str], str | None]]:
    """(payment ids, next cursor) of each page of ``seller``'s listing, recomputed: the cursor
    names the page's last row by its time and id, as staff's listing does."""
    rows = sql(app, SELLERS_PAYMENTS, seller=seller.user_id)
    expected = []
    with app.test_request_context(), cursor_scope(ENDPOINT):
        for start in range(0, max(len(rows), 1), limit):
            page = rows[start : start + limit]
            more = start + limit < len(rows)
            last = page[-1] if page else None
            cursor = encode_cursor([_utc(last[1]), last[2]]) if more and last is not None else None
            # SQLite hands a uuid back as its 32 hex digits.
            expected.append(([str(uuid.UUID(str(row[0]))) for row in page], cursor))
    return expected


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite hands text back
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def shift_created_at(app: Flask, payment: str, like: str) -> None:
    """Give ``payment`` the very time ``like`` was made at, behind the services' back."""
    with app.app_context(), transaction() as session:
        session.execute(
            text(
                "UPDATE marketplace_payment SET created_at = "
                "(SELECT created_at FROM marketplace_payment WHERE name = :like) "
                "WHERE name = :payment"
            ),
            {"payment": payment, "like": like},
        )


def sell(app: Flask, client: FlaskClient, market: Market) -> dict[str, Any]:
    """Orders of seller A alone, of A and B together, of the platform alone, paid by the
    gateway and by hand; the first invoice paid in part, and the rest of it paid last (an old
    invoice paid late); two payments made at the same instant."""
    a = product(app, "37000", market.seller_a)
    b = product(app, "12345.67", market.seller_b)
    own = product(app, "50000")
    buyer = market.buyer
    first = order(client, buyer, [(a, "1")], method="bank_transfer", amount="10000.00")
    made = [first]
    for lines in ([(a, "1")], [(a, "2"), (b, "1")], [(own, "1")], [(b, "2")], [(a, "1")]):
        made.append(order(client, buyer, lines))
    made.append(order(client, buyer, [(a, "1"), (own, "1")], method="bank_transfer"))
    late = ok(
        client.post(
            f"{MARKETPLACE}/invoices/{first['invoice']['id']}/payments",
            json={"method": "cash"},
            headers=buyer.headers,
        ),
        201,
    )
    # The second and third orders' payments at the same instant: the id orders them.
    shift_created_at(app, made[2]["payment"]["number"], like=made[1]["payment"]["number"])
    return {"orders": made, "late": late}


def test_a_sellers_pages_equal_the_recomputation_with_staffs_cursors(
    app: Flask, client: FlaskClient
) -> None:
    market = build_market(app, client)
    made = sell(app, client, market)
    # The old invoice's late payment is the seller's newest, although its invoice is their
    # oldest.
    newest = pages(client, market.seller_a, limit=2)[0]["items"][0]
    assert newest["payment"] == made["late"]["id"]
    assert newest["invoice_number"] == made["orders"][0]["invoice"]["number"]

    for seller, count in ((market.seller_a, 6), (market.seller_b, 2), (market.seller_c, 0)):
        for limit in (1, 2, 3, 50):
            shown = pages(client, seller, limit)
            expected = expected_pages(app, seller, limit)
            assert [([item["payment"] for item in page["items"]], page["next_cursor"])
                    for page in shown] == expected, (seller.email, limit)  # fmt: skip
            assert sum(len(page["items"]) for page in shown) == count
    # Each row as staff's listing shows that payment; a filtered page is staff's filtered
    # listing narrowed to the seller's payments, in the same order.
    everyone = {
        item["payment"]: item
        for page in pages(client, market.staff, limit=50)
        for item in page["items"]
    }
    mine = [item for page in pages(client, market.seller_a, limit=4) for item in page["items"]]
    assert mine == [everyone[item["payment"]] for item in mine]
    ids = {item["payment"] for item in mine}
    for query in ({"state": "pending"}, {"provider": "demo"}, {"currency": "IDR"}):
        narrowed = [item for page in pages(client, market.seller_a, 1, **query)
                    for item in page["items"]]  # fmt: skip
        staff = [item for page in pages(client, market.staff, 2, **query)
                 for item in page["items"]]  # fmt: skip
        assert narrowed == [item for item in staff if item["payment"] in ids], query
        assert narrowed, query


def test_a_cursor_from_staffs_listing_continues_a_sellers(app: Flask, client: FlaskClient) -> None:
    """The same sort key, the same cursor: staff's page boundary is a seller's too."""
    market = build_market(app, client)
    sell(app, client, market)
    staff_first = ok(client.get(TRANSACTIONS, query_string={"limit": 3},
                                headers=market.staff.headers))  # fmt: skip
    after = ok(
        client.get(
            TRANSACTIONS,
            query_string={"limit": 50, "cursor": staff_first["next_cursor"]},
            headers=market.seller_a.headers,
        )
    )
    every = [item["payment"] for page in pages(client, market.seller_a, 50)
             for item in page["items"]]  # fmt: skip
    shown_first = {item["payment"] for item in staff_first["items"]}
    assert [item["payment"] for item in after["items"]] == [
        payment for payment in every if payment not in shown_first
    ]


def test_the_sellers_payments_are_what_payments_and_lines_say(either_app: Flask) -> None:
    """Kept by the database as payments and lines are written, and followed when a payment's
    time or a line's seller is changed behind the services' back, or a line deleted."""
    app = either_app
    client = app.test_client()
    market = build_market(app, client)
    made = sell(app, client, market)
    held = sql(app, HELD_ROWS)
    assert held == sql(app, EXPECTED_ROWS)
    assert {row[1] for row in held} == {market.seller_a.user_id, market.seller_b.user_id}

    mixed = made["orders"][2]["invoice"]["number"]  # lines of A and B
    with app.app_context(), transaction() as session:
        move = {"name": mixed}
        # B's line becomes C's; then a line of A goes (A keeps the payment: they had two).
        session.execute(
            text(
                "UPDATE marketplace_account_move_line SET seller_id = :seller WHERE seller_id = "
                ":was AND move_id = (SELECT id FROM marketplace_account_move WHERE name = :name)"
            ),
            {**move, "seller": market.seller_c.user_id, "was": market.seller_b.user_id},
        )
        session.execute(
            text(
                "INSERT INTO marketplace_account_move_line (move_id, product_id, seller_id, "
                "sequence, name, quantity, price_unit, price_subtotal, price_tax, price_total) "
                "SELECT move_id, product_id, seller_id, 9, name, quantity, price_unit, "
                "price_subtotal, price_tax, price_total FROM marketplace_account_move_line "
                "WHERE seller_id = :seller AND move_id = "
                "(SELECT id FROM marketplace_account_move WHERE name = :name)"
            ),
            {**move, "seller": market.seller_a.user_id},
        )
        session.execute(
            text(
                "DELETE FROM marketplace_account_move_line WHERE sequence = 9 AND move_id = "
                "(SELECT id FROM marketplace_account_move WHERE name = :name)"
            ),
            move,
        )
    shift_created_at(app, made["orders"][5]["payment"]["number"], like=made["late"]["number"])
    held = sql(app, HELD_ROWS)
    assert held == sql(app, EXPECTED_ROWS)
    assert market.seller_c.user_id in {row[1] for row in held}
    for seller in (market.seller_a, market.seller_b, market.seller_c):
        shown = pages(client, seller, limit=2)
        assert [([item["payment"] for item in page["items"]], page["next_cursor"])
                for page in shown] == expected_pages(app, seller, 2)  # fmt: skip


def trigger_names(app: Flask) -> set[str]:
    with app.app_context():
        Session.remove()
        dialect = Session().connection().dialect.name
    query = (
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        if dialect == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    )
    return {row[0] for row in sql(app, query) if row[0].startswith("dashboard_seller_payment")}


def test_the_triggers_are_there_at_head_and_survive_a_batch_rebuild_around_them(
    either_app: Flask,
) -> None:
    """At head the database has the triggers (three on PostgreSQL, one on the payments and two
    on the lines; five on SQLite). On SQLite a batch rebuild of the
    payments or the lines, wrapped in drop_triggers / create_triggers as the module says, passes
    and leaves the table kept."""
    app = either_app
    with app.app_context():
        dialect = Session().connection().dialect.name
    assert trigger_names(app) == TRIGGERS[dialect]
    if dialect == "sqlite":
        with app.app_context(), get_database().primary.begin() as connection:
            operations = Operations(
                MigrationContext.configure(connection, opts={"render_as_batch": True})
            )
            drop_triggers(connection)
            for table in ("marketplace_payment", "marketplace_account_move_line"):
                with operations.batch_alter_table(table, recreate="always"):
                    pass
            create_triggers(connection)
        assert trigger_names(app) == TRIGGERS[dialect]
    client = app.test_client()
    market = build_market(app, client)
    sell(app, client, market)
    held = sql(app, HELD_ROWS)
    assert held == sql(app, EXPECTED_ROWS)
    assert {row[1] for row in held} == {market.seller_a.user_id, market.seller_b.user_id}


def test_the_rebuild_repairs_the_table_after_writes_that_bypassed_the_triggers(
    either_app: Flask,
) -> None:
    """Rows deleted, retimed and added behind the triggers' back, and a line's seller changed
    with the triggers off: ``lapak dashboard rebuild`` makes the table what the payments and
    lines say again, and says what it changed."""
    app = either_app
    client = app.test_client()
    market = build_market(app, client)
    made = sell(app, client, market)
    assert sql(app, HELD_ROWS) == sql(app, EXPECTED_ROWS)
    mixed = made["orders"][2]["invoice"]["number"]  # lines of A and B
    with app.app_context(), transaction() as session:
        connection = session.connection()
        postgresql = connection.dialect.name == "postgresql"
        if postgresql:
            for table in ("marketplace_payment", "marketplace_account_move_line"):
                session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            drop_triggers(connection)
        session.execute(
            text(
                "UPDATE marketplace_account_move_line SET seller_id = :seller WHERE seller_id = "
                ":was AND move_id = (SELECT id FROM marketplace_account_move WHERE name = :name)"
            ),
            {"name": mixed, "seller": market.seller_c.user_id, "was": market.seller_b.user_id},
        )
        first, second = [row[0] for row in session.execute(text(
            "SELECT DISTINCT payment_id FROM dashboard_seller_payment ORDER BY 1 LIMIT 2"
        ))]  # fmt: skip
        session.execute(text("DELETE FROM dashboard_seller_payment WHERE payment_id = :id"),
                        {"id": first})  # fmt: skip
        session.execute(
            text("UPDATE dashboard_seller_payment SET created_at = :when WHERE payment_id = :id"),
            {"id": second, "when": datetime(2001, 1, 1, tzinfo=UTC)},
        )
        session.execute(
            text(
                "INSERT INTO dashboard_seller_payment (payment_id, seller_id, created_at) "
                "SELECT id, :seller, created_at FROM marketplace_payment WHERE id = :id"
            ),
            {"id": second, "seller": market.admin.user_id},
        )
        if postgresql:
            for table in ("marketplace_payment", "marketplace_account_move_line"):
                session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            create_triggers(connection)
    assert sql(app, HELD_ROWS) != sql(app, EXPECTED_ROWS)
    assert trigger_names(app) == TRIGGERS["postgresql" if postgresql else "sqlite"]

    result = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    # B's row of the mixed payment and the stray row go, C's and the deleted ones come back.
    assert "sellers' payments: " in result.output
    assert "1 times fixed" in result.output
    held = sql(app, HELD_ROWS)
    assert held == sql(app, EXPECTED_ROWS)
    assert market.seller_c.user_id in {row[1] for row in held}
    for seller in (market.seller_a, market.seller_b, market.seller_c):
        shown = pages(client, seller, limit=2)
        assert [([item["payment"] for item in page["items"]], page["next_cursor"])
                for page in shown] == expected_pages(app, seller, 2)  # fmt: skip
    again = app.test_cli_runner().invoke(args=["dashboard", "rebuild"])
    assert "0 missing rows inserted, 0 wrong rows deleted, 0 times fixed" in again.output
