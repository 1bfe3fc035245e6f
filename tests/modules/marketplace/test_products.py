"""The catalogue: admin and seller CRUD, what customers see, and the sync from a real feed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import run_jobs
from tests.modules.conftest import Caller
from tests.modules.fetch.feedserver import FeedServer, fetch_env, running, serve
from tests.servers import Services

from .conftest import API, assert_problem, created, get, nothing_written, order_body, post, sql


@pytest.fixture(autouse=True)
def feed(config: dict[str, Any]) -> Iterator[FeedServer]:
    """A feed server on 127.0.0.1 as source ``feed`` (``/list``), never served from cache."""
    with running(FeedServer()) as server:
        server.routes["/list"] = serve([])
        config["module_env"] = {
            **config["module_env"],
            **fetch_env(server, {"fetch_fresh_seconds": "0"}),
        }
        yield server


def patch(client: FlaskClient, caller: Caller, product_id: str, body: dict[str, Any]) -> Any:
    return client.patch(f"{API}/products/{product_id}", json=body, headers=caller.headers)


def test_admin_creates_shows_lists_and_changes_products(
    client: FlaskClient, admin: Caller, log_in_as: Callable[..., Caller]
) -> None:
    seller = log_in_as("seller")
    made = created(
        post(client, admin, "/products", {
            "name": "  ikan  tongkol ", "province": "bali", "city": "Buleleng",
            "size": "40", "list_price": "37000.50", "seller": str(seller.uuid),
        })
    )  # fmt: skip
    assert (made["name"], made["province"], made["city"]) == ("IKAN TONGKOL", "BALI", "BULELENG")
    assert (made["list_price"], made["currency"], made["size"]) == ("37000.50", "IDR", "40")
    assert (made["active"], made["seller"], made["feed_uuid"], made["source"]) == (
        True,
        str(seller.uuid),
        None,
        None,
    )
    assert created(get(client, admin, f"/products/{made['id']}"), 200) == made

    changed = created(patch(client, admin, made["id"], {"list_price": "38000", "city": None}), 200)
    assert (changed["list_price"], changed["city"], changed["name"]) == (
        "38000.00",
        None,
        "IKAN TONGKOL",
    )
    listed = created(get(client, admin, "/products", name="ikan tongkol"), 200)
    assert [p["id"] for p in listed["items"]] == [made["id"]]
    assert created(get(client, admin, "/products", seller=str(seller.uuid)), 200)["items"]

    for body, field in [
        ({"name": "X", "list_price": "0"}, "list_price"),
        ({"name": "X", "list_price": "-1"}, "list_price"),
        ({"name": "X", "list_price": "1.001"}, "list_price"),
        ({"name": "X", "list_price": 1.5}, "list_price"),
        ({"name": "   ", "list_price": "1"}, "name"),
        ({"list_price": "1"}, "name"),
        ({"name": "X", "list_price": "1", "feed_uuid": "x"}, "feed_uuid"),
        ({"name": "X", "list_price": "1", "seller": str(admin.uuid)}, "seller"),
    ]:
        assert field in str(assert_problem(post(client, admin, "/products", body), 422))
    assert_problem(patch(client, admin, str(uuid.uuid4()), {"name": "X"}), 404)
    assert_problem(get(client, admin, f"/products/{uuid.uuid4()}"), 404)


def test_sellers_manage_only_their_own_products_and_customers_none(
    client: FlaskClient, admin: Caller, customer: Caller, log_in_as: Callable[..., Caller]
) -> None:
    seller, rival = log_in_as("seller"), log_in_as("seller")
    own = created(post(client, seller, "/products", {"name": "lele", "list_price": "20000"}))
    assert own["seller"] == str(seller.uuid)
    assert created(patch(client, seller, own["id"], {"list_price": "21000"}), 200)[
        "list_price"
    ] == ("21000.00")
    assert_problem(patch(client, rival, own["id"], {"list_price": "1"}), 403)
    assert_problem(
        post(client, rival, "/products", {"name": "x", "list_price": "1", "seller": own["seller"]}),
        403,
    )
    assert_problem(post(client, customer, "/products", {"name": "x", "list_price": "1"}), 403)
    assert_problem(patch(client, customer, own["id"], {"active": False}), 403)
    assert get(client, admin, f"/products/{own['id']}").get_json()["list_price"] == "21000.00"


def test_customers_see_only_active_products(
    client: FlaskClient, admin: Caller, customer: Caller
) -> None:
    active = created(post(client, admin, "/products", {"name": "bawal", "list_price": "1000"}))
    hidden = created(post(client, admin, "/products", {"name": "lele", "list_price": "1000"}))
    created(patch(client, admin, hidden["id"], {"active": False}), 200)
    seen = created(get(client, customer, "/products"), 200)["items"]
    assert [p["id"] for p in seen] == [active["id"]]
    # Asking for inactive ones does not help a customer.
    assert [
        p["id"] for p in get(client, customer, "/products", active="false").get_json()["items"]
    ] == [active["id"]]
    assert [
        p["id"] for p in get(client, admin, "/products", active="false").get_json()["items"]
    ] == [hidden["id"]]
    assert len(get(client, admin, "/products").get_json()["items"]) == 2


def test_product_pages_follow_the_cursor(client: FlaskClient, admin: Caller) -> None:
    ids = [
        created(post(client, admin, "/products", {"name": f"p{i}", "list_price": "1"}))["id"]
        for i in range(5)
    ]
    seen, cursor = [], None
    while True:
        page = get(client, admin, "/products", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [p["id"] for p in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def row(uuid_: str, name: str, price: str, city: str = "BULELENG") -> dict[str, Any]:
    return {
        "uuid": uuid_,
        "komoditas": name,
        "area_provinsi": "BALI",
        "area_kota": city,
        "size": "40",
        "price": price,
        "tgl_parsed": "2023-04-03T10:11:31Z",
        "timestamp": "1680516691515",
    }


A = "ac9c09a4-930e-4152-8453-59d673642b5e"
B = "72af7ab1-44bf-4d18-8445-6d462dc4e075"
C = "ee84e3d1-4e8b-4088-84c3-83df684bccc9"


def sync(app: Flask, client: FlaskClient, admin: Caller) -> dict[str, Any]:
    requested = post(client, admin, "/products/sync", {"source": "feed"})
    assert requested.status_code == 202, requested.get_json()
    assert requested.get_json()["state"] == "queued"
    location = requested.headers["Location"]
    assert location.endswith(f"/products/syncs/{requested.get_json()['id']}")
    run_jobs(app)
    done = client.get(location, headers=admin.headers)
    assert done.status_code == 200
    return done.get_json()


def test_sync_creates_updates_and_deactivates_products(
    app: Flask,
    client: FlaskClient,
    admin: Caller,
    customer: Caller,
    feed: FeedServer,
    services: Services,
) -> None:
    feed.routes["/list"] = serve(
        [row(A, "TONGKOL", "37000"), row(B, "udang vaname", "54.500"), row(C, "LELE", "20000")]
    )
    first = sync(app, client, admin)
    assert first["state"] == "succeeded", first
    assert (first["created"], first["updated"], first["deactivated"], first["unchanged"]) == (
        3,
        0,
        0,
        0,
    )
    assert first["finished_at"] is not None
    products = {p["feed_uuid"]: p for p in get(client, admin, "/products").get_json()["items"]}
    assert set(products) == {A, B, C}
    assert (products[B]["name"], products[B]["list_price"], products[B]["source"]) == (
        "UDANG VANAME",
        "54500.00",
        "feed",
    )

    # An order for C before it vanishes: it must keep pointing at the product.
    placed = post(client, customer, "/orders", order_body((C, "1")))
    assert placed.status_code == 201, placed.get_json()

    # B's price changes, C vanishes, A stays as it was.
    feed.routes["/list"] = serve([row(A, "TONGKOL", "37000"), row(B, "UDANG VANAME", "56000")])
    second = sync(app, client, admin)
    assert second["state"] == "succeeded", second
    assert (second["created"], second["updated"], second["deactivated"], second["unchanged"]) == (
        0,
        1,
        1,
        1,
    )
    after = {p["feed_uuid"]: p for p in get(client, admin, "/products").get_json()["items"]}
    assert after[B]["list_price"] == "56000.00"
    assert after[C]["active"] is False  # deactivated, never deleted
    assert after[A]["active"] is True
    assert after[A]["updated_at"] == products[A]["updated_at"]
    assert sql(services, "SELECT count(*) FROM marketplace_product") == [(3,)]
    assert [p["feed_uuid"] for p in get(client, customer, "/products").get_json()["items"]] == [
        A,
        B,
    ]

    # The old order still shows its product; a new one for C is refused, by either id.
    detail = get(client, customer, f"/orders/{placed.get_json()['order']['id']}").get_json()
    assert detail["order"]["lines"][0]["product"] == products[C]["id"]
    orders_before = sql(services, "SELECT count(*) FROM marketplace_sale_order")
    for named in (C, products[C]["id"]):
        problem = assert_problem(post(client, customer, "/orders", order_body((named, "1"))), 422)
        assert "lines.0.product" in problem["errors"]
    assert sql(services, "SELECT count(*) FROM marketplace_sale_order") == orders_before

    # The new price is the one charged.
    placed_b = post(client, customer, "/orders", order_body((B, "1")))
    assert placed_b.get_json()["order"]["lines"][0]["price_unit"] == "56000.00"

    # C coming back is reactivated; nothing changed is unchanged.
    feed.routes["/list"] = serve(
        [row(A, "TONGKOL", "37000"), row(B, "UDANG VANAME", "56000"), row(C, "LELE", "20000")]
    )
    third = sync(app, client, admin)
    assert (third["created"], third["updated"], third["deactivated"], third["unchanged"]) == (
        0,
        1,
        0,
        2,
    )
    assert get(client, admin, f"/products/{products[C]['id']}").get_json()["active"] is True


def test_sync_is_for_admins_and_known_sources(
    client: FlaskClient, admin: Caller, staff: Caller, services: Services
) -> None:
    assert_problem(post(client, staff, "/products/sync", {"source": "feed"}), 403)
    assert_problem(post(client, admin, "/products/sync", {"source": "nope"}), 422)
    assert sql(services, "SELECT count(*) FROM marketplace_product_sync") == [(0,)]
    nothing_written(services)


def test_a_sync_of_a_failing_feed_is_recorded_as_failed(
    app: Flask, client: FlaskClient, admin: Caller, feed: FeedServer
) -> None:
    feed.routes["/list"] = serve({"error": "down"}, status=500)
    result = sync(app, client, admin)
    assert result["state"] == "failed"
    assert result["error"]
    assert get(client, admin, "/products").get_json()["items"] == []
