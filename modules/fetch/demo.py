"""The bundled demo feed: a feed that needs no network, for a first run and for offline work.

``demo_feed.json`` (in this package) holds about 190 rows picked from a copy of the real feed with
every quirk it has: Indonesian number formats (``10.000``), four date spellings and null dates
that fall back to the timestamp, upper-case and timestamp uuids, duplicate uuids with different
prices, test rows, all-null rows, a commodity in the province column, bad prices and sizes.

A source is the demo feed when its URL in ``LAPAK_FETCH_SOURCES`` is ``demo:``. It is read from
the package, never through the HTTP client, whose rules (http and https only, public addresses)
stay as they are. In development, without ``LAPAK_FETCH_SOURCES``, it is the default source.
"""

from __future__ import annotations

import json
import time
from importlib import resources

from .client import FetchResult, SourceFailed

#: The URL that names the bundled feed in ``LAPAK_FETCH_SOURCES``.
DEMO_URL = "demo:"
#: Its source name where it is configured by default. Not ``demo``: the marketplace's demo
#: catalogue uses that product source, and a sync from the feed would deactivate it.
DEMO_SOURCE = "demo-feed"
DEMO_FILE = "demo_feed.json"
#: The setting that makes the demo feed the only source, for hints.
DEMO_SETTING = f"LAPAK_FETCH_SOURCES='{json.dumps({DEMO_SOURCE: DEMO_URL})}'"


def read_demo_feed(source: str) -> FetchResult:
    """The bundled document, as :func:`modules.fetch.client.fetch_json` would return it."""
    started = time.monotonic()
    try:
        body = resources.files(__package__).joinpath(DEMO_FILE).read_bytes()
    except OSError:
        raise SourceFailed(
            f"source {source!r}: the bundled demo feed ({DEMO_FILE}) is missing from this "
            "installation",
            source=source,
        ) from None
    return FetchResult(
        data=json.loads(body),
        url=DEMO_URL,
        status=200,
        elapsed_ms=round((time.monotonic() - started) * 1000),
        bytes=len(body),
        content=body,
    )


def load_demo() -> list[str]:
    """``lapak demo``: say which feed ``/api/v1/fetch/commodities`` reads, and how to change it."""
    from .feeds import feeds

    settings = feeds().settings
    default = settings.default_source
    if default is None:
        return [
            "Commodity feed: no default source; name one with ?source= "
            f"({', '.join(sorted(settings.sources))})."
        ]
    if settings.sources[default] == DEMO_URL:
        live = [f"?source={name}" for name in sorted(settings.sources) if name != default]
        also = f" (others: {', '.join(live)})" if live else ""
        return [
            f"Commodity feed: {default!r}, the bundled demo feed, needs no network{also}; "
            "LAPAK_FETCH_SOURCES sets the sources."
        ]
    return [
        f"Commodity feed: {default!r} ({settings.shown_url(default)}); offline, use the bundled "
        f"demo feed: {DEMO_SETTING}."
    ]
