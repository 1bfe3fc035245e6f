"""GraphQL reads as every read does: from a caught-up replica, the client's own writes
included, and from the primary when the replica fails, even in the middle of a query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.servers import Services

from .conftest import ORDER_DETAIL, Shop

NESTED_IDS = "{ orders(first: 10) { items { id lines { name } invoices { id } } } }"


def test_a_client_reads_its_own_new_order_while_the_replica_lags(
    pg_shop: Shop, paused_replica: Services
) -> None:
    dewi = pg_shop.user()
    placed = pg_shop.order(dewi, (pg_shop.product(), "1"))  # its answer sets the LSN cookie

    listed = pg_shop.graphql(dewi, NESTED_IDS)["orders"]["items"]

    assert [order["id"] for order in listed] == [placed["order"]["id"]]
    assert listed[0]["invoices"] == [{"id": placed["invoice"]["id"]}]
    detail = pg_shop.graphql(dewi, ORDER_DETAIL, id=placed["order"]["id"])["order"]
    assert detail["payments"][0]["id"] == placed["payment"]["id"]


def test_a_replica_failing_in_the_middle_of_a_query_is_retried_on_the_primary(
    pg_shop: Shop, own_replica: Services
) -> None:
    shop = pg_shop
    staff, dewi = shop.user("staff"), shop.user()
    product = shop.product()
    placed = [shop.order(dewi, (product, str(n))) for n in (1, 2, 3)]
    replica = shop.app.extensions["lapak.db"].replicas[0]
    terminated: list[int] = []

    def end_the_backend(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # The batch of lines, after the page was read on this replica: its backend is ended
        # (a real failure of the server, not a mock), once.
        if "FROM marketplace_sale_order_line" in statement and not terminated:
            pid = cursor.connection.info.backend_pid
            terminated.append(pid)
            own_replica.replica.execute(f"SELECT pg_terminate_backend({pid})")

    event.listen(replica.engine, "before_cursor_execute", end_the_backend)
    try:
        listed = shop.graphql(staff, NESTED_IDS)["orders"]["items"]
    finally:
        event.remove(replica.engine, "before_cursor_execute", end_the_backend)

    assert terminated, "the lines were not read on the replica"
    assert [order["id"] for order in listed] == [p["order"]["id"] for p in reversed(placed)]
    assert all(order["lines"] and order["invoices"] for order in listed)
    assert replica.down_until > 0  # skipped for a while, as after any failed replica read
