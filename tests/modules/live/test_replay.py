"""A replay is bounded: too far behind gets ``replay-truncated`` without reading the outbox; a
replay reads pages from a caught-up replica, checks the session between them, and takes its
turn among the process's replays."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import event

from app.db import transaction
from app.events import emit
from modules.live.hub import Hub
from modules.live.outbox import PAGE_SIZE
from tests.conftest import wait_for_replica
from tests.servers import Services

from .conftest import STREAM, open_stream, outbox, person, position_reached

HUB_THREAD = "lapak-live-hub"


@contextmanager
def outbox_reads(app: Flask) -> Iterator[dict[str, list[str]]]:
    """The pages of the outbox read outside the feed's thread, by engine (``primary`` or the
    replica's name), while the block runs."""
    database = app.extensions["lapak.db"]
    engines = {"primary": database.primary, **{r.name: r.engine for r in database.replicas}}
    reads: dict[str, list[str]] = {name: [] for name in engines}
    listeners = []
    for name, engine in engines.items():

        def note(_c: Any, _cursor: Any, statement: str, *_a: Any, name: str = name) -> None:
            page = "core_outbox_event" in statement and "LIMIT" in statement.upper()
            if page and threading.current_thread().name != HUB_THREAD:
                reads[name].append(statement)

        event.listen(engine, "before_cursor_execute", note)
        listeners.append((engine, note))
    try:
        yield reads
    finally:
        for engine, note in listeners:
            event.remove(engine, "before_cursor_execute", note)


def write_probes(app: Flask, count: int) -> list[int]:
    """``count`` events in one transaction; their ids."""
    with app.app_context(), transaction():
        for n in range(count):
            emit("live.probe", {"n": n})
    return [event_id for event_id, name, _ in outbox(app) if name == "live.probe"][-count:]


def messages_of(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """SSE messages from a body read in chunks: ``{"id", "event", "data", "comment"}``."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while b"\n\n" in pending:
            block, pending = pending.split(b"\n\n", 1)
            message: dict[str, Any] = {"id": None, "event": None, "data": None, "comment": None}
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                message[name or "comment"] = value.removeprefix(" ")
            yield message


def test_a_client_too_far_behind_gets_replay_truncated_without_a_read_of_the_outbox(
    make_app: Callable[..., Flask], config: dict[str, Any], serve: Callable[[Flask], str]
) -> None:
    app = make_app(module_env={**config["module_env"], "live_replay_max_events": "1000"})
    base = serve(app)
    customer, admin = person(app, "customer"), person(app, "admin")
    write_probes(app, 3000)
    running = open_stream(base, admin)  # the feed runs: the customer's stream only joins it
    running.next()

    with outbox_reads(app) as reads:
        sse = open_stream(base, customer, query="?last_event_id=0")
        opening, truncated = sse.next(), sse.next()
    sse.close()
    running.close()

    assert opening is not None
    assert opening.id == "0"
    assert truncated is not None
    assert truncated.event == "replay-truncated"
    newest = outbox(app)[-1][0]
    assert int(truncated.id) >= newest  # type: ignore[arg-type]
    assert truncated.json["after"] == "0"
    assert truncated.json["until"] == truncated.id
    assert "reload" in truncated.json["detail"]
    assert reads == {name: [] for name in reads}  # not one page of the outbox was read


def test_a_replay_reads_its_pages_from_a_caught_up_replica(
    app: Flask, services: Services, serve: Callable[[Flask], str]
) -> None:
    base = serve(app)
    admin = person(app, "admin")
    running = open_stream(base, admin)  # the feed runs (its start writes a little WAL)
    running.next()
    ids = write_probes(app, 2 * PAGE_SIZE + 200)
    running.events(position_reached(ids[-1]))  # the feed took them all: all are replayed
    wait_for_replica(services)

    with outbox_reads(app) as reads:
        sse = open_stream(base, admin, last_event_id=ids[0] - 1)
        received = sse.events(position_reached(ids[-1]))
    sse.close()
    running.close()

    assert [int(m.id) for m in received if m.event == "live.probe"] == ids  # type: ignore[arg-type]
    assert reads["primary"] == []
    assert sum(len(found) for name, found in reads.items() if name != "primary") == 3


def test_a_session_ended_during_a_replay_ends_it_before_the_next_page(app: Flask) -> None:
    client = app.test_client()
    admin = person(app, "admin")
    ids = write_probes(app, 2 * PAGE_SIZE + 200)
    answer = client.get(STREAM, headers={**admin.headers, "Last-Event-ID": str(ids[0] - 1)},
                        buffered=False)  # fmt: skip
    body = messages_of(iter(answer.response))
    assert next(body)["retry"] == "2000"
    assert next(body)["event"] == "live.probe"  # the first page is read

    assert client.post("/api/v1/auth/logout", headers=admin.headers).status_code == 204
    rest = list(body)
    answer.close()

    assert [m["event"] for m in rest[:-1]] == ["live.probe"] * (PAGE_SIZE - 1)
    assert rest[-1]["event"] == "session-ended"
    assert json.loads(rest[-1]["data"])["reason"] == "session-revoked"


def test_streams_take_turns_to_replay(
    make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app(module_env={**config["module_env"], "live_replays": "1"})
    client = app.test_client()
    admin = person(app, "admin")
    ids = write_probes(app, 3)
    hub: Hub = app.extensions["live.hub"]
    assert hub.replays.acquire(timeout=5)  # another stream's replay
    try:
        answer = client.get(STREAM, headers={**admin.headers, "Last-Event-ID": str(ids[0] - 1)},
                            buffered=False)  # fmt: skip
        body = messages_of(iter(answer.response))
        next(body)
        # Waiting its turn: a comment each heartbeat, nothing replayed.
        assert next(body)["comment"] == "waiting to replay"
    finally:
        hub.replays.release()
    replayed = [next(body) for _ in ids]
    answer.close()

    assert [int(m["id"]) for m in replayed] == ids
