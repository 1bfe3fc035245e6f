"""Webhook deliveries per second to a local receiver, beside plain POSTs of the same bodies.

``python -m bench.webhooks [--deliveries N] [--threads K,...] [--rounds R]``

A throw-away embedded Lapak (SQLite in a temporary folder, no Redis), migrated, with an admin
and one endpoint on a receiver at 127.0.0.1 that answers ``204`` at once; the receiver runs in a
process of its own (a ``ThreadingHTTPServer``), so it does not share this process's GIL.

* ``lapak``: N deliveries (one ``ping`` message each) made pending, then sent by
  :func:`modules.webhook.jobs.send_delivery` from K threads (each in the app's context, as the
  in-process job threads run it): claim, sign, POST through the fetch module's SSRF-safe client
  (vetted and pinned address, one deadline), record the attempt;
* ``floor``: the same N bodies POSTed by ``requests.post`` from K threads (a new connection each,
  as each delivery has), nothing signed, checked or recorded.

R rounds each (the median is reported; lapak and floor alternate which goes first). The figure
is deliveries per second and lapak / floor. Only 127.0.0.1 is contacted, and the receiver is
stopped even on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from bench.runner import FAST_PASSWORDS, Figures, bench_settings, run_as_command

NAME = "webhooks"


def _serve(port_out: Any) -> None:  # pragma: no cover - runs in the receiver's process
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def measure(inputs: Mapping[str, Any]) -> Figures:
    from app import create_app
    from app.db import transaction
    from app.migrate import upgrade
    from app.security import Principal
    from modules.user.services import create_user
    from modules.webhook import services
    from modules.webhook.jobs import send_delivery
    from modules.webhook.models import WebhookDelivery, WebhookMessage
    from modules.webhook.sending import message_body

    ports: Any = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}/hook"
        with tempfile.TemporaryDirectory(prefix="lapak-bench-webhooks-") as folder:
            workdir = Path(folder)
            settings = bench_settings(
                workdir,
                "bench-secret-" + "x" * 40,
                database_url=f"sqlite:///{workdir / 'lapak.db'}",
                module_env={**FAST_PASSWORDS, "fetch_allow_loopback": "true"},
            )
            upgrade(settings)
            app = create_app(settings)
            with app.app_context():
                admin = create_user("bench@example.test", role="admin", password="x" * 12)
                principal = Principal(admin.id, admin.uuid, admin.email, "admin")
                endpoint = services.create_endpoint(principal, {"url": url}).endpoint
            app.extensions["lapak.jobs"].wait_embedded()  # the user's event, before timing

            def pending(count: int) -> list[int]:
                """``count`` pending pings, written without queueing a job."""
                with app.app_context(), transaction() as session:
                    ids = []
                    for _ in range(count):
                        message = WebhookMessage(
                            event_id=uuid.uuid4(),
                            event_type="ping",
                            occurred_at=_now(),
                            payload={"bench": True},
                        )
                        session.add(message)
                        session.flush()
                        delivery = WebhookDelivery(
                            message_id=message.id, endpoint_id=endpoint.id, next_attempt_at=_now()
                        )
                        session.add(delivery)
                        session.flush()
                        ids.append(delivery.id)
                    return ids

            def lapak(threads: int, count: int) -> float:
                ids = pending(count)

                def one(delivery_id: int) -> None:
                    with app.app_context():
                        assert send_delivery(delivery_id) == "sent"

                return _timed(threads, ids, one)

            body = message_body(uuid.uuid4(), "ping", _now(), {"bench": True})

            def floor(threads: int, count: int) -> float:
                def one(_index: int) -> None:
                    answer = requests.post(
                        url, data=body, timeout=10, headers={"content-type": "application/json"}
                    )
                    assert answer.status_code == 204

                return _timed(threads, list(range(count)), one)

            rows = []
            for threads in inputs["threads"]:
                runs: dict[str, list[float]] = {"lapak": [], "floor": []}
                for round_number in range(inputs["rounds"]):
                    order = ("lapak", "floor") if round_number % 2 == 0 else ("floor", "lapak")
                    for which in order:
                        run = lapak if which == "lapak" else floor
                        runs[which].append(
                            inputs["deliveries"] / run(threads, inputs["deliveries"])
                        )
                lapak_rate = statistics.median(runs["lapak"])
                floor_rate = statistics.median(runs["floor"])
                rows.append(
                    {
                        "threads": threads,
                        "lapak_per_s": round(lapak_rate, 1),
                        "floor_per_s": round(floor_rate, 1),
                        "ratio": round(lapak_rate / floor_rate, 3),
                    }
                )
            app.extensions["lapak.jobs"].wait_embedded()
            app.extensions["lapak.db"].dispose()
            return {"deliveries": rows}
    finally:
        receiver.terminate()
        receiver.join(timeout=5)


def _timed(threads: int, items: list[Any], one: Callable[[Any], None]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - started


def _now() -> Any:
    from app.db import utcnow

    return utcnow()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--threads", default="1,4", help="comma-separated sender threads")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    threads = [int(part) for part in args.threads.split(",") if part.strip()]
    inputs = {"deliveries": args.deliveries, "threads": threads, "rounds": args.rounds}
    return run_as_command(NAME, inputs, measure)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
