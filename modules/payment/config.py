"""The payment module's settings, read from ``LAPAK_*`` variables and validated at start.

| variable | default |
| --- | --- |
| ``LAPAK_PUBLIC_URL`` | unset: the address the server is bound to (``SERVER_NAME`` and |
|   | ``SERVER_PORT`` of the WSGI server, never the request's ``Host``). The base URL providers |
|   | reach Lapak at, e.g. ``https://shop.example.com``: notification URLs are built from it |

A notification URL is never built from the request's headers: a forged ``Host`` would make the
server POST signed notifications anywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, has_request_context, request

from app.config import Settings, SettingsError

UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")  # noqa: S104 - names of "every address", not a bind


def install(app: Flask, settings: Settings) -> None:
    app.extensions["payment.public_url"] = _public_url(settings.module_env.get("public_url"))


def _public_url(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(
            "LAPAK_PUBLIC_URL must be an http(s) URL without query, e.g. https://shop.example.com"
        )
    return text.strip().rstrip("/")


def public_url(endpoint: str, **values: str) -> str | None:
    """The absolute URL of ``endpoint`` under ``LAPAK_PUBLIC_URL``, or else under the address
    the server is bound to (in a request); None outside a request without the setting."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    configured = current_app.extensions.get("payment.public_url")
    if configured is not None:
        return configured + path
    if not has_request_context():
        return None
    environ = request.environ
    host = environ.get("SERVER_NAME", "")
    host = "127.0.0.1" if host in UNSPECIFIED_HOSTS else host
    if ":" in host:
        host = f"[{host}]"
    scheme = environ.get("wsgi.url_scheme", "http")
    return f"{scheme}://{host}:{environ.get('SERVER_PORT', '80')}{request.script_root}{path}"
