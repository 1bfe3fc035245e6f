"""A WSGI app for tests of the server around the app: ``/hold`` keeps its thread until told.

``GET /hold`` writes its worker's pid to ``$HOLDING_DIR/held`` and answers only once
``$HOLDING_DIR/release`` exists (60 s at most); ``GET /pid`` answers the worker's pid at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask

app = Flask(__name__)
HOLDING_DIR = Path(os.environ.get("HOLDING_DIR", "."))


@app.get("/pid")
def pid() -> str:
    return str(os.getpid())


@app.get("/hold")
def hold() -> str:
    # Written whole, then renamed: the test reads it as soon as it exists.
    (HOLDING_DIR / "held.tmp").write_text(str(os.getpid()))
    os.replace(HOLDING_DIR / "held.tmp", HOLDING_DIR / "held")
    deadline = time.monotonic() + 60
    while not (HOLDING_DIR / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return str(os.getpid())
