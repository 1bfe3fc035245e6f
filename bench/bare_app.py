"""The baseline for ``bench.http_overhead``: a bare Flask app with Lapak's two measured routes.

Served as ``gunicorn bench.bare_app:app``. ``/api/v1/modules`` returns the JSON document in the
file named by ``BENCH_BARE_MODULES_JSON`` (the harness copies Lapak's own response there, so both
servers send the same body), re-serialised on every request as Flask does for any dict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flask import Flask

_body_file = os.environ.get("BENCH_BARE_MODULES_JSON")
MODULES: dict[str, Any] = (
    json.loads(Path(_body_file).read_text(encoding="utf-8")) if _body_file else {"items": []}
)

app = Flask(__name__)


@app.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/modules")
def modules() -> dict[str, Any]:
    return MODULES
