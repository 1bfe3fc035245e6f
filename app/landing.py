"""``/``: a small page for whoever opens Lapak in a browser, pointing at what exists.

Server-rendered, no script, no CDN; every value is escaped and a strict Content-Security-Policy
allows nothing but the page's own stylesheet (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape

from flask import Blueprint, Response, current_app

from app.http import API_PREFIX

landing = Blueprint("landing", __name__)

#: The web client, first when a module provides its shell (``hooks.web_shell``).
WEB_CLIENT = (
    "/web/",
    "Web client",
    "the back office's screens; `lapak demo` prints users to log in with",
)
LINKS = (
    (f"{API_PREFIX}/docs", "API documentation", "browse and try every endpoint"),
    (f"{API_PREFIX}/openapi.json", "OpenAPI document", "to generate a client"),
    ("/health/ready", "Readiness", "the database, replicas and Redis, checked now"),
    (f"{API_PREFIX}/modules", "Loaded modules", "as JSON, in load order"),
)

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}h1{margin-bottom:0}code{background:#f3f3f3;padding:0 .2em}"
    "td{padding:.1rem .8rem .1rem 0;vertical-align:top}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@landing.get("/")
def index() -> Response:
    """What Lapak is, and links to what a newcomer can open."""
    registry = current_app.extensions["lapak.registry"]
    manifests = registry.manifests
    shown = (WEB_CLIENT, *LINKS) if registry.wiring.web_shell is not None else LINKS
    links = "".join(
        f'<li><a href="{escape(href)}">{escape(label)}</a>: {_note(note)}</li>'
        for href, label, note in shown
    )
    modules = "".join(
        f"<tr><td><code>{escape(m.name)}</code></td><td>{escape(m.version)}</td>"
        f"<td>{escape(m.summary)}</td></tr>"
        for m in manifests
    )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>Lapak</title><style>{STYLE}</style></head><body>"
        "<h1>Lapak</h1><p>A modular marketplace back office: sale orders, invoices and payments, "
        "users and their imports, and commodity price feeds, behind a JSON API.</p>"
        f"<h2>Start here</h2><ul>{links}</ul>"
        f"<h2>Modules</h2><table>{modules}</table>"
        "</body></html>"
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _note(text: str) -> str:
    """``text`` escaped, its `backquoted` parts as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


@landing.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every page (the docs too); no icon is better than a logged 404."""
    return Response(status=204)
