"""The GraphQL order list beside the REST order listing: the same page of the same orders,
through gunicorn, in the same run.

``python -m bench.graphql [--orders N] [--listing-rows R] [--requests N] [--page-size P]
[--web-workers K]``

Starts throw-away PostgreSQL (primary + streaming replica) and Redis (``tests/servers.py``),
migrates, creates the customers and staff of ``bench.orders``, serves Lapak with ``lapak serve``
(gunicorn, K threaded workers) on 127.0.0.1 reading from the replica, places ``--orders`` real
orders over HTTP (a line, an invoice and a payment each; every third paid through the demo
provider, so it has a provider transaction), then fills ``marketplace_sale_order`` to
``--listing-rows`` orders with ``bench.orders.fill_orders`` (one line and one posted invoice
each, older than the real ones) and waits for the replica.

Timed, one client, sequential, ``--requests`` each, as staff, alternating halves:

* **rest**: ``GET /api/v1/marketplace/orders?limit=P``, the baseline;
* **graphql**: ``orders(first: P)`` asking every field the REST listing shows (its answer must
  equal REST's page, cursor included, or nothing is measured);
* **graphql_nested**: the same page with each order's lines, invoices (with their lines and
  payments) and payments with their provider transactions: what REST answers only with one
  ``GET /orders/{id}`` per order;
* **rest_detail_per_order**: that REST way, the listing then each order of the page (first
  ``--detail-pages`` pages only, one request per order), for scale.

Per variant: p50/p99/mean latency, errors, the ratio of its p50 and p99 over REST's, and the
SQL statements one request sends (counted in process, on every engine).

Only 127.0.0.1 is contacted, counts are bounded, and every server started is stopped, even on
failure or Ctrl-C/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app import create_app
from app.migrate import upgrade
from bench.http_overhead import WORKER_CLASS, non_negative, positive
from bench.orders import (
    ADMIN_EMAIL,
    API,
    ORDERS,
    STAFF_EMAIL,
    call,
    call_json,
    create_users,
    customer_email,
    fill_orders,
    in_process_login,
    log_in,
    order_body,
    percentile_ms,
    product_ids,
    settings_for,
    start_lapak,
    user_ids,
    wait_for_replica,
)
from bench.runner import Figures, run_as_command
from tests.servers import start_services
from tests.statements import recorded_in

NAME = "graphql"
GRAPHQL = "/api/v1/graphql"
CUSTOMERS = 4
PRODUCTS = 5
ORDER_FIELDS = (
    "id number state customer currency currency_rate tax_percent date_order amount_untaxed "
    "amount_tax amount_total cancelled_at payment_state"
)
FLAT = (
    f"query ($first: Int!) {{ orders(first: $first) {{ items {{ {ORDER_FIELDS} }} next_cursor }} }}"
)
NESTED = f"""query ($first: Int!) {{
  orders(first: $first) {{
    items {{
      {ORDER_FIELDS}
      lines {{ product name quantity price_unit price_total }}
      invoices {{ id number move_type payment_state amount_total amount_residual
                 lines {{ name price_total }} payments {{ id number state amount }} }}
      payments {{ id number state amount transactions {{ id reference provider state amount }} }}
    }}
    next_cursor
  }}
}}"""


def timed(count: int, request: Callable[[], tuple[int, bytes]]) -> dict[str, Any]:
    """``count`` sequential requests: sorted seconds of the 200s, errors and a few samples."""
    seconds, errors, samples = [], 0, []
    for _ in range(count):
        began = time.perf_counter()
        status, answer = request()
        elapsed = time.perf_counter() - began
        if status == 200 and b'"errors":' not in answer:
            seconds.append(elapsed)
        else:
            errors += 1
            if len(samples) < 3:
                samples.append(f"{status}: {answer[:300]!r}")
    return {"seconds": sorted(seconds), "errors": errors, "error_samples": samples}


def merged(halves: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": sorted(s for half in halves for s in half["seconds"]),
        "errors": sum(half["errors"] for half in halves),
        "error_samples": [s for half in halves for s in half["error_samples"]][:3],
    }


def statements_per_request(app: Any, send: Callable[[Any], Any]) -> int:
    """Statements one in-process request sends, the session cache warm (a second request)."""
    client = app.test_client()
    send(client)
    with recorded_in(app) as sent:
        send(client)
    return len([s for s, _ in sent if "auth_session" not in s])


def place_orders(port: int, count: int, tokens: Sequence[str], products: Sequence[str]) -> int:
    placed = 0
    for number in range(count):
        body = order_body(products[number % len(products)])
        if number % 3 == 0:
            body["payment"] = {"provider": "demo"}
        status, answer = call(port, "POST", ORDERS, tokens[number % len(tokens)], body)
        if status != 201:
            raise RuntimeError(f"placing an order answered {status}: {answer[:300]!r}")
        placed += 1
    return placed


def make_products(port: int, admin_token: str, dsn: str) -> list[dict[str, Any]]:
    """``PRODUCTS`` products made over HTTP: their public id, name and row id."""
    made = []
    for index in range(PRODUCTS):
        body = {"name": f"Bandeng {index}", "list_price": str(37000 + 500 * index)}
        made.append(call_json(port, "POST", f"{API}/products", admin_token, body, expect=201))
    row_ids = product_ids(dsn, [product["id"] for product in made])
    return [
        {"uuid": product["id"], "name": product["name"], "id": row_id}
        for product, row_id in zip(made, row_ids, strict=True)
    ]


def graphql_body(query: str, page: int) -> dict[str, Any]:
    return {"query": query, "variables": {"first": page}}


def nested_counts(orders: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """What the nested page holds, so its figures say how much it read."""
    payments = [payment for order in orders for payment in order["payments"]]
    return {
        "orders": len(orders),
        "lines": sum(len(order["lines"]) for order in orders),
        "invoices": sum(len(order["invoices"]) for order in orders),
        "payments": len(payments),
        "transactions": sum(len(payment["transactions"]) for payment in payments),
    }


def variant_rows(
    results: Mapping[str, Mapping[str, Any]], statements: Mapping[str, int]
) -> list[dict[str, Any]]:
    rest = results["rest"]["seconds"]
    rows = []
    for name, result in results.items():
        seconds = result["seconds"]
        rows.append(
            {
                "variant": name,
                "requests": len(seconds) + result["errors"],
                "p50_ms": percentile_ms(seconds, 50),
                "p99_ms": percentile_ms(seconds, 99),
                "mean_ms": round(statistics.fmean(seconds) * 1000, 2) if seconds else None,
                "errors": result["errors"],
                "p50_over_rest": ratio(percentile_ms(seconds, 50), percentile_ms(rest, 50)),
                "p99_over_rest": ratio(percentile_ms(seconds, 99), percentile_ms(rest, 99)),
                "statements": statements.get(name),
                "error_samples": result["error_samples"],
            }
        )
    return rows


def measure(inputs: Mapping[str, Any]) -> Figures:
    page = int(inputs["page_size"])
    requests = int(inputs["requests"])
    services = start_services()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="lapak-bench-graphql-") as tmp,
            ExitStack() as stack,
        ):
            workdir = Path(tmp)
            print("  migrating, creating users ...", file=sys.stderr, flush=True)
            dsn = services.database_url.replace("+psycopg", "")
            settings = settings_for(services, workdir)
            upgrade(settings)
            app = create_app(settings)
            stack.callback(app.extensions["lapak.db"].dispose)
            stack.callback(app.extensions["lapak.jobs"].wait_embedded)
            create_users(app, CUSTOMERS)
            port = start_lapak(stack, services, workdir, int(inputs["web_workers"])).port
            tokens = [log_in(port, customer_email(i)) for i in range(CUSTOMERS)]
            staff_token = log_in(port, STAFF_EMAIL)
            products = make_products(port, log_in(port, ADMIN_EMAIL), dsn)
            print(f"  placing {inputs['orders']} orders ...", file=sys.stderr, flush=True)
            placed = place_orders(
                port, int(inputs["orders"]), tokens, [p["uuid"] for p in products]
            )
            customer_ids = user_ids(dsn, [customer_email(i) for i in range(CUSTOMERS)])
            fill = fill_orders(dsn, int(inputs["listing_rows"]), customer_ids, products)
            fill["real_orders_placed"] = placed
            fill["replica_catch_up_s"] = round(wait_for_replica(services), 1)

            rest_path = f"{ORDERS}?limit={page}"
            flat, nested = graphql_body(FLAT, page), graphql_body(NESTED, page)
            variants: dict[str, Callable[[], tuple[int, bytes]]] = {
                "rest": lambda: call(port, "GET", rest_path, staff_token),
                "graphql": lambda: call(port, "POST", GRAPHQL, staff_token, flat),
                "graphql_nested": lambda: call(port, "POST", GRAPHQL, staff_token, nested),
            }
            check_same_page(port, staff_token, rest_path, flat)
            nested_page = call_json(port, "POST", GRAPHQL, staff_token, nested)

            def rest_detail_per_order() -> tuple[int, bytes]:
                status, answer = variants["rest"]()
                for order in json.loads(answer)["items"] if status == 200 else ():
                    status, answer = call(port, "GET", f"{ORDERS}/{order['id']}", staff_token)
                    if status != 200:
                        break
                return status, answer

            print(f"  timing {requests} requests per variant ...", file=sys.stderr, flush=True)
            for request in variants.values():
                for _ in range(int(inputs["warmup"])):
                    request()
            halves: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
            for half in range(2):
                for name in list(variants) if half == 0 else list(reversed(variants)):
                    halves[name].append(timed(requests // 2, variants[name]))
            results = {name: merged(parts) for name, parts in halves.items()}
            results["rest_detail_per_order"] = timed(
                int(inputs["detail_pages"]), rest_detail_per_order
            )

            headers = in_process_login(app.test_client(), STAFF_EMAIL)
            statements = {
                "rest": statements_per_request(app, lambda c: c.get(rest_path, headers=headers)),
                "graphql": statements_per_request(
                    app, lambda c: c.post(GRAPHQL, json=flat, headers=headers)
                ),
                "graphql_nested": statements_per_request(
                    app, lambda c: c.post(GRAPHQL, json=nested, headers=headers)
                ),
            }
    finally:
        services.stop()
    return {
        "variants": variant_rows(results, statements),
        "graphql_page_equals_rest_page": True,
        "nested_page": nested_counts(nested_page["data"]["orders"]["items"]),
        "listing_fill": fill,
    }


def check_same_page(port: int, token: str, rest_path: str, flat: Mapping[str, Any]) -> None:
    """The GraphQL page is REST's page, cursor included; refuse to measure otherwise."""
    rest = call_json(port, "GET", rest_path, token)
    if call_json(port, "POST", GRAPHQL, token, flat) != {"data": {"orders": rest}}:
        raise RuntimeError("the GraphQL page differs from the REST page: nothing measured")


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value is not None and base else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.graphql",
        description="The GraphQL order list (flat and nested) beside the REST listing, through "
        "gunicorn, on the replica.",
    )
    parser.add_argument("--orders", type=non_negative, default=300,
                        help="real orders placed over HTTP, the newest (default 300)")  # fmt: skip
    parser.add_argument("--listing-rows", type=non_negative, default=100_000,
                        help="orders in the table in all (default 100000)")  # fmt: skip
    parser.add_argument("--requests", type=positive, default=600,
                        help="timed requests per variant, in two halves (default 600)")  # fmt: skip
    parser.add_argument("--warmup", type=non_negative, default=20,
                        help="untimed requests per variant first (default 20)")  # fmt: skip
    parser.add_argument("--detail-pages", type=non_negative, default=20,
                        help="pages read the REST way, each order alone (default 20)")  # fmt: skip
    parser.add_argument("--page-size", type=positive, default=50,
                        help="orders per page, both sides (default 50, at most 200)")  # fmt: skip
    parser.add_argument("--web-workers", type=positive, default=4,
                        help="gunicorn workers (default 4, for 2 cores)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.page_size > 200:
        raise SystemExit("--page-size is at most 200 (the API's largest page)")
    inputs = {
        "orders": args.orders,
        "listing_rows": args.listing_rows,
        "requests": args.requests,
        "warmup": args.warmup,
        "detail_pages": args.detail_pages,
        "page_size": args.page_size,
        "web_workers": args.web_workers,
        "worker_class": WORKER_CLASS,
        "caller": "staff (every order); one client, sequential; the halves alternate the order "
        "of the variants",
        "orders_placed": "POST /marketplace/orders over HTTP: one line, bank transfer, every "
        "third through the demo provider (a pending provider transaction)",
        "listing_fill": "bench.orders.fill_orders: one line and one posted invoice per order, "
        "dated over the past year (older than the placed ones)",
        "database": "throw-away PostgreSQL 15 primary + streaming replica (tests/servers.py), "
        "replica caught up before timing",
    }
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main())
