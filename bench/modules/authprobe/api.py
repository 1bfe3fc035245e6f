"""``/api/v1/authprobe/open`` and ``/api/v1/authprobe/guarded``: one view body, two guards.

The latency difference between the two is exactly what authentication adds to a request:
reading the bearer token, verifying it, and checking its session (Redis cache, else the
primary database); or, for a signed API-key request (the guarded view names a scope), loading
the key, checking the signature and the replay cache.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.security import requires

blp = Blueprint("authprobe", __name__, description="Benchmark probe")


def probe_body() -> dict[str, str]:
    return {"status": "ok"}


@blp.route("/open")
class Open(MethodView):
    @blp.response(200)
    def get(self) -> dict[str, str]:
        """The probe, for anyone."""
        return probe_body()


@blp.route("/guarded")
class Guarded(MethodView):
    @requires(scope="probe:read")
    @blp.response(200)
    def get(self) -> dict[str, str]:
        """The same probe, for a logged-in caller."""
        return probe_body()
