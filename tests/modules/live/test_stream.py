"""The event stream over real HTTP, on PostgreSQL and on the embedded default: nothing lost or
repeated across a reconnect, each viewer sees what is theirs, a replaced session's stream ends,
heartbeats, and the per-process cap."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, request

from app.db import transaction
from app.events import emit
from tests.modules.conftest import login
from tests.modules.marketplace.conftest import order_body
from tests.modules.marketplace.test_ledger import confirm, refund

from .conftest import (
    STREAM,
    Message,
    make_product,
    open_stream,
    outbox,
    person,
    position_reached,
    settle,
)

EVENTS = 1000
WRITERS = 4


def write_events(app: Flask, writer: int, count: int) -> None:
    """``count`` events, each committed in a transaction of its own."""
    with app.app_context():
        for n in range(count):
            with transaction():
                emit("live.probe", {"writer": writer, "n": n})


def probes(messages: list[Message]) -> list[tuple[int, int, int]]:
    """(id, writer, n) of the probe events received."""
    return [
        (int(m.id or 0), m.json["payload"]["writer"], m.json["payload"]["n"])
        for m in messages
        if m.event == "live.probe"
    ]


def test_a_client_that_reconnects_with_last_event_id_loses_and_repeats_nothing(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(live_app)
    admin = person(live_app, "admin")
    first = open_stream(base, admin)
    assert (first.status, first.content_type) == (200, "text/event-stream; charset=utf-8")
    start = int(first.next().id)  # type: ignore[union-attr, arg-type]
    writers = [
        threading.Thread(target=write_events, args=(live_app, w, EVENTS // WRITERS))
        for w in range(WRITERS)
    ]
    for thread in writers:
        thread.start()
    try:
        counted = [0]

        def midway(message: Message) -> bool:
            counted[0] += message.event == "live.probe"
            return counted[0] == EVENTS * 2 // 5

        before = first.events(midway)
        first.close()  # the writers go on meanwhile
        second = open_stream(base, admin, last_event_id=int(before[-1].id))  # type: ignore[arg-type]
        assert second.status == 200
    finally:
        for thread in writers:
            thread.join(120)
    written = [
        (event_id, payload["writer"], payload["n"])
        for event_id, name, payload in outbox(live_app, start)
        if name == "live.probe"
    ]
    after = second.events(position_reached(written[-1][0]))
    second.close()

    received = probes(before) + probes(after)
    assert len(written) == EVENTS
    assert received == written  # each once, in id order


def test_the_last_event_id_may_come_in_the_query(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(live_app)
    admin = person(live_app, "admin")
    write_events(live_app, 0, 3)
    first_id = outbox(live_app)[0][0]
    newest = outbox(live_app)[-1][0]

    sse = open_stream(base, admin, query=f"?last_event_id={first_id}")
    received = sse.events(position_reached(newest))
    sse.close()

    assert [int(m.id) for m in received] == [i for i, _, _ in outbox(live_app, first_id)]  # type: ignore[arg-type]


def about(order: dict[str, Any], events: list[tuple[int, str, dict[str, Any]]]) -> list[int]:
    """The ids of the events whose payload names ``order`` (its detail from the API), its
    invoices and credit notes, or its payments: worked out here without the audience code."""
    invoices = {invoice["id"] for invoice in order["invoices"]}
    payments = {payment["id"] for payment in order["payments"]}
    return [
        event_id
        for event_id, _, payload in events
        if payload.get("order") == order["order"]["id"]
        or payload.get("invoice") in invoices
        or payload.get("payment") in payments
    ]


def test_each_viewer_gets_the_events_they_may_see_and_only_those(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(live_app)
    client = live_app.test_client()
    viewers = {
        name: person(live_app, role)
        for name, role in (
            ("admin", "admin"),
            ("staff", "staff"),
            ("seller_a", "seller"),
            ("seller_b", "seller"),
            ("customer_1", "customer"),
            ("customer_2", "customer"),
        )
    }
    products = {
        "a": make_product(live_app, viewers["seller_a"], "BANDENG"),
        "b": make_product(live_app, viewers["seller_b"], "LELE"),
    }
    settle(live_app)
    streams = {name: open_stream(base, caller) for name, caller in viewers.items()}
    start = {name: int(sse.next().id) for name, sse in streams.items()}  # type: ignore[union-attr, arg-type]
    assert len(set(start.values())) == 1

    orders = {}
    for customer, product in (("customer_1", "a"), ("customer_2", "b")):
        body = order_body((products[product], "1"))
        placed = client.post(
            "/api/v1/marketplace/orders", json=body, headers=viewers[customer].headers
        )
        assert placed.status_code == 201, placed.get_json()
        orders[customer] = placed.get_json()
    paid = orders["customer_1"]["payment"]["id"]
    confirm(client, viewers["staff"], paid)
    refunded = refund(client, viewers["staff"], paid, "5000")
    assert refunded.status_code == 201, refunded.get_json()
    settle(live_app)
    person(live_app, "customer")  # user.created: for admins only (as /api/v1/users)
    settle(live_app)
    events = outbox(live_app, start["admin"])
    newest = events[-1][0]
    received = {}
    for name, sse in streams.items():
        received[name] = [int(m.id) for m in sse.events(position_reached(newest))]  # type: ignore[arg-type]
        sse.close()

    details = {
        customer: client.get(f"/api/v1/marketplace/orders/{placed['order']['id']}",
                             headers=viewers[customer].headers).get_json()
        for customer, placed in orders.items()
    }  # fmt: skip
    everything = [event_id for event_id, _, _ in events]
    but_users = [event_id for event_id, name, _ in events if not name.startswith("user.")]
    first, second = about(details["customer_1"], events), about(details["customer_2"], events)
    assert {"order.confirmed", "refund.created", "payment.confirmed"} <= {
        name for event_id, name, _ in events if event_id in first
    }
    assert "user.created" in {name for _, name, _ in events}
    assert len(but_users) < len(everything)
    assert received == {
        "admin": everything,
        "staff": but_users,
        "seller_a": first,
        "seller_b": second,
        "customer_1": first,
        "customer_2": second,
    }


def test_the_payload_leaves_out_the_integer_keys_of_rows(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(live_app)
    customer = person(live_app, "customer")
    seller = person(live_app, "seller")
    product = make_product(live_app, seller)
    sse = open_stream(base, customer)
    sse.next()
    placed = live_app.test_client().post(
        "/api/v1/marketplace/orders", json=order_body((product, "1")), headers=customer.headers
    )
    assert placed.status_code == 201, placed.get_json()

    [confirmed] = sse.events(lambda m: m.event == "order.confirmed")
    sse.close()

    data = confirmed.json
    assert data["type"] == "order.confirmed"
    assert data["payload"]["order"] == placed.get_json()["order"]["id"]
    assert "customer_id" not in data["payload"]
    assert set(data) == {"id", "type", "time", "payload"}


def test_a_second_login_ends_the_first_stream_with_the_reason(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(live_app)
    customer = person(live_app, "customer")
    sse = open_stream(base, customer)
    sse.next()

    assert login(live_app.test_client(), customer.email).status_code == 200

    [ended] = sse.events(lambda m: m.event == "session-ended")
    assert ended.json["reason"] == "session-replaced"
    assert sse.next() is None  # closed
    sse.close()
    again = open_stream(base, customer)
    assert again.status == 401
    assert again.content_type == "application/problem+json"
    assert again.problem()["type"] == "urn:lapak:problem:session-replaced"
    again.close()


def test_a_logout_ends_the_stream(app: Flask, serve: Callable[[Flask], str]) -> None:
    base = serve(app)
    staff = person(app, "staff")
    sse = open_stream(base, staff)
    sse.next()

    assert app.test_client().post("/api/v1/auth/logout", headers=staff.headers).status_code == 204

    [ended] = sse.events(lambda m: m.event == "session-ended")
    assert ended.json["reason"] == "session-revoked"
    sse.close()


def test_the_feed_ends_only_the_streams_whose_session_ended(
    live_app: Flask, serve: Callable[[Flask], str]
) -> None:
    """The process checks every stream's session at once: each ends with its own reason, and
    the others go on."""
    base = serve(live_app)
    left, replaced, staying = (person(live_app, role) for role in ("staff", "customer", "staff"))
    streams = [open_stream(base, caller) for caller in (left, replaced, staying)]
    for sse in streams:
        sse.next()
    client = live_app.test_client()

    assert client.post("/api/v1/auth/logout", headers=left.headers).status_code == 204
    assert login(client, replaced.email).status_code == 200

    reasons = []
    for sse in streams[:2]:
        [ended] = sse.events(lambda m: m.event == "session-ended")
        reasons.append(ended.json["reason"])
        assert sse.next() is None  # closed
    # Sessions are checked every second here: two heartbeats later it was checked again.
    beats = [streams[2].next(), streams[2].next()]
    for sse in streams:
        sse.close()

    assert reasons == ["session-revoked", "session-replaced"]
    assert all(beat is not None and beat.comments == ["heartbeat"] for beat in beats)


def test_a_quiet_stream_sends_heartbeats_with_its_position(
    app: Flask, serve: Callable[[Flask], str]
) -> None:
    base = serve(app)
    seller = person(app, "seller")
    sse = open_stream(base, seller)
    start = sse.next()
    assert start is not None
    assert start.comments == []

    beat = sse.next()
    sse.close()

    assert beat is not None
    assert beat.comments == ["heartbeat"]
    assert beat.data == ""
    assert int(beat.id) >= int(start.id)  # type: ignore[arg-type]


def test_no_stream_without_credentials(app: Flask, serve: Callable[[Flask], str]) -> None:
    sse = open_stream(serve(app))

    assert sse.status == 401
    assert sse.problem()["status"] == 401
    sse.close()


def test_a_full_process_answers_503_with_retry_after_until_a_stream_ends(
    make_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    app = make_app(web_streams=2)
    base = serve(app)
    admin = person(app, "admin")
    open_streams = [open_stream(base, admin) for _ in range(2)]
    assert [sse.status for sse in open_streams] == [200, 200]

    refused = open_stream(base, admin)
    assert refused.status == 503
    assert refused.content_type == "application/problem+json"
    assert refused.response.getheader("Retry-After") == "2"
    assert refused.problem()["type"] == "urn:lapak:problem:streams-full"
    refused.close()
    assert app.test_client().get("/api/v1/auth/session", headers=admin.headers).status_code == 200

    open_streams[0].close()  # the server notices at its next write (a heartbeat)
    deadline = time.monotonic() + 30
    while True:
        again = open_stream(base, admin)
        if again.status == 200 or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.2)
    assert again.status == 200
    again.close()
    open_streams[1].close()


def test_an_answer_whose_body_is_never_read_gives_its_slot_back(
    make_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    app = make_app(web_streams=1)
    base = serve(app)
    admin = person(app, "admin")

    head = requests.head(f"{base}{STREAM}", headers=admin.headers, timeout=10)
    assert head.status_code == 200

    sse = open_stream(base, admin)
    assert sse.status == 200
    sse.close()


def test_a_stream_whose_answer_fails_after_the_view_gives_its_slot_and_subscription_back(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(web_streams=1)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as in production: a 500

    @app.after_request
    def fail(response: Response) -> Response:
        if request.path == STREAM:
            raise RuntimeError("an after_request hook failed")
        return response

    admin = person(app, "admin")
    client = app.test_client()

    failed = client.get(STREAM, headers=admin.headers)

    assert failed.status_code == 500
    assert failed.content_type == "application/problem+json"
    assert app.extensions["lapak.streams"].open_count == 0
    assert app.extensions["live.hub"].subscriber_count == 0


def test_one_user_holds_at_most_their_share_of_streams_others_still_connect(
    make_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    app = make_app(web_streams=10)
    base = serve(app)
    customer, staff = person(app, "customer"), person(app, "staff")
    mine = [open_stream(base, customer) for _ in range(5)]  # LAPAK_LIVE_STREAMS_PER_USER
    assert [sse.status for sse in mine] == [200] * 5

    refused = open_stream(base, customer)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert refused.response.getheader("Retry-After") == "1"  # a heartbeat: a closed one is seen
    assert refused.problem()["type"] == "urn:lapak:problem:too-many-streams"
    refused.close()
    other = open_stream(base, staff)
    assert other.status == 200
    other.close()

    mine[0].close()  # the server notices at its next write (a heartbeat)
    deadline = time.monotonic() + 30
    while True:
        again = open_stream(base, customer)
        if again.status == 200 or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.2)
    assert again.status == 200
    again.close()
    for sse in mine[1:]:
        sse.close()


def test_a_client_that_stops_reading_gives_its_thread_and_slot_back(
    make_app: Callable[..., Flask], serve: Callable[[Flask], str]
) -> None:
    app = make_app(web_streams=1)
    base = serve(app)
    admin = person(app, "admin")
    address = urlsplit(base)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, never read
    stalled.connect((address.hostname, address.port))
    head = f"GET {STREAM} HTTP/1.1\r\nHost: {address.netloc}\r\n"
    stalled.sendall(f"{head}Authorization: Bearer {admin.token}\r\n\r\n".encode())
    try:
        deadline = time.monotonic() + 10
        while app.extensions["lapak.streams"].open_count == 0:
            assert time.monotonic() < deadline, "the stream did not open"
            time.sleep(0.05)
        with app.app_context():
            for n in range(60):  # 6 MB: more than the kernel's buffers hold
                with transaction():
                    emit("live.probe", {"n": n, "blob": "x" * 100_000})

        # The server's writes block, then give up after two heartbeats (2 s here).
        deadline = time.monotonic() + 30
        while True:
            again = open_stream(base, admin)
            if again.status == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.2)
        assert again.status == 200
        again.close()
    finally:
        stalled.close()
