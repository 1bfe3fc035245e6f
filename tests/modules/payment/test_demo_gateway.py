"""The demo gateway end to end over real HTTP: Lapak runs under a real server on 127.0.0.1,
the payer opens the hosted checkout page and picks an outcome, and the gateway's job POSTs its
signed notifications over HTTP to the notify endpoint (RQ on the test Redis; in-process threads
on the embedded default)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.config import SettingsError
from app.db import transaction
from app.vault import get_vault
from modules.marketplace.models import Product
from modules.payment import demo
from modules.user.services import create_user
from tests.conftest import run_jobs
from tests.modules.conftest import Caller, login
from tests.servers import Services

from .conftest import (
    API,
    MARKETPLACE,
    MadeProduct,
    assert_ledger_consistent,
    events,
    ledger_operations,
    notification,
    order_body,
    tx_row,
)


def order_through_demo(base: str, caller: Caller, product_id: str) -> dict[str, Any]:
    body = order_body((product_id, "1"))
    body["payment"] = {"provider": "demo"}
    response = requests.post(f"{base}{MARKETPLACE}/orders", json=body, headers=caller.headers,
                             timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def choose(url: str, outcome: str, **card: str) -> requests.Response:
    """The payer's click on the hosted page: the gateway answers with a redirect to it."""
    response = requests.post(url, data={"outcome": outcome, **card}, allow_redirects=False,
                             timeout=30)  # fmt: skip
    assert response.status_code == 303, response.text
    return response


def shown(base: str, caller: Caller, tx: dict[str, Any]) -> dict[str, Any]:
    response = requests.get(f"{base}{API}/{tx['id']}", headers=caller.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_checkout_page_then_success_over_http(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    base = serve(app)
    placed = order_through_demo(base, customer, product.id)
    tx = placed["transaction"]
    url = tx["action"]["url"]
    assert url.startswith(f"{base}/pay/demo/")
    page = requests.get(url, timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert tx["amount"] in page.text
    assert "<script" not in page.text
    choose(url, "success")
    assert shown(base, customer, tx)["state"] == "pending"  # the gateway has not notified yet
    run_jobs(app)
    assert shown(base, customer, tx)["state"] == "success"
    row = tx_row(services, tx["reference"])
    assert (row["payment"], row["invoice"]) == ("paid", "paid")
    assert row["provider_reference"].startswith("demo_")
    # The page now shows the outcome, without a form; a second choice is refused.
    again = requests.get(url, timeout=30)
    assert (again.status_code, "success" in again.text, "<form" in again.text) == (200, True, False)
    refused = requests.post(url, data={"outcome": "failure"}, allow_redirects=False, timeout=30)
    assert refused.status_code == 409
    run_jobs(app)
    assert shown(base, customer, tx)["state"] == "success"
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert_ledger_consistent(app)


def test_failure_and_pending_then_success_over_http(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    base = serve(app)
    failing = order_through_demo(base, customer, product.id)["transaction"]
    slow = order_through_demo(base, customer, product.id)["transaction"]
    choose(failing["action"]["url"], "failure")
    choose(slow["action"]["url"], "pending_then_success")
    run_jobs(app)
    failed = tx_row(services, failing["reference"])
    assert (failed["state"], failed["payment"], failed["invoice"]) == (
        "failed",
        "canceled",
        "not_paid",
    )
    assert failed["message"] == "the payer chose: failure"
    done = tx_row(services, slow["reference"])
    assert (done["state"], done["invoice"]) == ("success", "paid")
    assert len(events(services, "payment.succeeded")) == 1
    assert len(events(services, "payment.failed")) == 1
    assert_ledger_consistent(app)


def test_the_gateway_repeating_a_notification_three_times_captures_once(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    base = serve(app)
    tx = order_through_demo(base, customer, product.id)["transaction"]
    url = f"{base}{API}/providers/demo/notify"
    with app.app_context():
        payloads = get_vault().seal(json.dumps([notification(tx, "success")]))
        accepted = [demo.deliver_notification(url, payloads) for _ in range(3)]
    assert accepted == [1, 1, 1]  # each answered 200: a repeat is acknowledged, not re-applied
    assert tx_row(services, tx["reference"])["state"] == "success"
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 1
    assert len(events(services, "payment.succeeded")) == 1


def test_a_late_success_is_accepted_and_recorded_for_a_refund(
    app: Flask,
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    services: Services,
) -> None:
    base = serve(app)
    tx = order_through_demo(base, customer, product.id)["transaction"]
    cancel = requests.post(f"{base}{API}/{tx['id']}/cancel", headers=customer.headers, timeout=30)
    assert cancel.status_code == 200, cancel.text
    url = f"{base}{API}/providers/demo/notify"
    with app.app_context():
        sealed = get_vault().seal(json.dumps([notification(tx, "success")]))
        accepted = demo.deliver_notification(url, sealed)
    assert accepted == 1  # 200: the gateway stops retrying, the capture is on record
    row = tx_row(services, tx["reference"])
    assert (row["state"], row["message"]) == ("canceled", "captured after cancellation: refund it")
    assert len(events(services, "payment.late_success")) == 1
    assert ledger_operations(app).count("PAYMENT_CAPTURE") == 0


def test_embedded_default_pays_through_the_demo_gateway(
    make_embedded_app: Callable[..., Flask],
    serve: Callable[[Flask], str],
    tmp_path: Path,
) -> None:
    """SQLite, no Redis: the gateway's job runs in-process and still notifies over HTTP."""
    app = make_embedded_app()
    with app.app_context():
        create_user("buyer@example.test", role="customer", password="correct horse battery staple")
        with transaction() as session:
            item = Product(name="LELE", list_price=37000, active=True)
            session.add(item)
            session.flush()
            product_id = str(item.uuid)
    base = serve(app)
    token = login(app.test_client(), "buyer@example.test").get_json()["access_token"]
    buyer = Caller("buyer@example.test", None, 0, token)  # type: ignore[arg-type]
    tx = order_through_demo(base, buyer, product_id)["transaction"]
    choose(tx["action"]["url"], "success")
    deadline = time.monotonic() + 30
    while shown(base, buyer, tx)["state"] != "success":
        assert time.monotonic() < deadline, shown(base, buyer, tx)
        time.sleep(0.1)
    assert_ledger_consistent(app)


def test_the_gateway_retries_a_5xx_and_an_unreachable_endpoint(
    app: Flask, serve: Callable[[Flask], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver on 127.0.0.1 that fails once with 503 then accepts: the job tries again."""
    received: list[dict[str, Any]] = []

    @Request.application
    def flaky(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        return Response(status=503 if len(received) == 1 else 200)

    monkeypatch.setattr(demo, "RETRY_DELAYS", (0.05, 0.05, 0.05))
    server = make_server("127.0.0.1", 0, flaky, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    payload = {"reference": "TX/2026/00001", "state": "success"}
    try:
        with app.app_context():
            sealed = get_vault().seal(json.dumps([payload]))
            assert (
                demo.deliver_notification(f"http://127.0.0.1:{server.server_port}/n", sealed) == 1
            )
            port = server.server_port
    finally:
        server.shutdown()
        thread.join(10)
    assert received == [payload, payload]
    with app.app_context():  # nothing listens any more: every attempt fails, then it gives up
        assert demo.deliver_notification(f"http://127.0.0.1:{port}/n", sealed) == 0


def test_embedded_default_takes_a_percent_and_fixed_fee_with_cents(
    make_embedded_app: Callable[..., Flask],
) -> None:
    """SQLite keeps NUMERIC as a float: 100.10 - 3.20 is not 96.90 there, so the database's
    ``net = amount - fee`` check is PostgreSQL's only (the service computes net in Decimal)."""
    app = make_embedded_app()
    password = "correct horse battery staple"
    with app.app_context():
        create_user("buyer@example.test", role="customer", password=password)
        create_user("boss@example.test", role="admin", password=password)
        with transaction() as session:
            item = Product(name="KERAPU", list_price=Decimal("90.18"), active=True)
            session.add(item)
            session.flush()
            product_id = str(item.uuid)
    client = app.test_client()

    def bearer(email: str) -> dict[str, str]:
        token = login(client, email, password).get_json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    changed = client.patch(f"{API}/providers/demo", json={"fee_percent": "2.9",
                           "fee_fixed": "0.30"}, headers=bearer("boss@example.test"))  # fmt: skip
    assert changed.status_code == 200, changed.get_json()
    body = order_body((product_id, "1"))
    body["payment"] = {"provider": "demo"}
    placed = client.post(f"{MARKETPLACE}/orders", json=body, headers=bearer("buyer@example.test"))
    assert placed.status_code == 201, placed.get_json()
    tx = placed.get_json()["transaction"]
    assert (tx["amount"], tx["fee"], tx["net"]) == ("100.10", "3.20", "96.90")
    assert_ledger_consistent(app)


def test_a_forged_host_does_not_change_where_notifications_go(
    app: Flask,
    make_app: Callable[..., Flask],
    config: dict[str, Any],
    serve: Callable[[Flask], str],
    customer: Caller,
    product: MadeProduct,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "RETRY_DELAYS", (0.05, 0.05))
    forged = {"Host": "attacker.example:9"}
    # Without LAPAK_PUBLIC_URL: the server's bound address, whatever the Host says.
    base = serve(app)
    tx = order_through_demo(base, customer, product.id)["transaction"]
    page = f"{base}{urlsplit(tx['action']['url']).path}"
    chose = requests.post(page, data={"outcome": "success"}, headers=forged,
                          allow_redirects=False, timeout=30)  # fmt: skip
    assert chose.status_code == 303, chose.text
    run_jobs(app)
    assert shown(base, customer, tx)["state"] == "success"

    # With LAPAK_PUBLIC_URL: there, whatever the Host says.
    received: list[str] = []

    @Request.application
    def receiver(request: Request) -> Response:
        received.append(request.path)
        return Response(status=200)

    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        public = f"http://127.0.0.1:{server.server_port}/lapak"
        configured = make_app(module_env={**config["module_env"], "public_url": public})
        other = serve(configured)
        second = order_through_demo(other, customer, product.id)["transaction"]
        page = f"{other}{urlsplit(second['action']['url']).path}"
        chose = requests.post(page, data={"outcome": "success"}, headers=forged,
                              allow_redirects=False, timeout=30)  # fmt: skip
        assert chose.status_code == 303, chose.text
        run_jobs(configured)
    finally:
        server.shutdown()
        thread.join(10)
    assert received == ["/lapak/api/v1/payments/providers/demo/notify"]


@pytest.mark.parametrize("bad", ["ftp://shop.example", "shop.example", "https://shop.example/?a=1"])
def test_a_public_url_that_is_not_one_is_refused_at_start(
    make_app: Callable[..., Flask], config: dict[str, Any], bad: str
) -> None:
    with pytest.raises(SettingsError, match="LAPAK_PUBLIC_URL"):
        make_app(module_env={**config["module_env"], "public_url": bad})
