"""``python -m bench.serve_floor MODULE:APP --host H --port P``: serve a floor app the way
``lapak serve`` serves Lapak.

A floor is only a floor when the server around it is the same: :func:`app.serving.run_gunicorn`
with the settings ``lapak serve`` reads (``LAPAK_WEB_WORKERS``, ``LAPAK_WEB_THREADS``,
``LAPAK_WEB_STREAMS``, the request limits), so the worker class (gunicorn's threaded worker),
threads, connections, keep-alive and timeouts cannot drift apart from Lapak's; only the app in
each worker differs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from app.config import Settings
from app.serving import run_gunicorn


def load_app(target: str) -> Any:
    """``package.module:attribute`` imported, as gunicorn's own loader would."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the WSGI app, as module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # The app is imported in each worker (as lapak serve builds create_app() there), not in the
    # arbiter: connections and threads made at import must not be shared across the fork.
    run_gunicorn(
        Settings.from_env(), args.host, args.port, lambda: load_app(args.target), streams=False
    )


if __name__ == "__main__":
    main()
