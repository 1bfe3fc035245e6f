"""Which feeds may be read: configured sources by name, and ad-hoc URLs on an allow-list.

Settings (``LAPAK_*``, read through :attr:`Settings.module_env`):

``LAPAK_FETCH_SOURCES``
    A JSON object, source name -> feed URL (``http``/``https``, or ``demo:`` for the bundled
    demo feed, :mod:`.demo`). Default: the public eFishery feed as ``efishery``; in development
    also the demo feed as ``demo-feed``, which is then the default source, so a first run works
    without network.
``LAPAK_FETCH_DEFAULT_SOURCE``
    The source used when a request names none. Default: the only one configured.
``LAPAK_FETCH_URL_HOSTS``
    Comma-separated host names an ad-hoc ``url`` may point at, and the only hosts its
    redirects may lead to. Empty (default): no ad-hoc URLs.
``LAPAK_FETCH_FRESH_SECONDS``
    How long a fetched feed is served before the source is asked again, ``300``.
``LAPAK_FETCH_KEEP_SECONDS``
    How long Redis keeps a source's last good response, ``604800`` (the table keeps it for good).
``LAPAK_FETCH_RETRY_SECONDS``
    After the source failed, how long the kept copy is served before it is tried again, ``30``.

A request names a configured source and may pass ``url`` to read another document of the same
shape, on an allowed host, under that source's name. The client's own checks
(:mod:`modules.fetch.client`) still apply to every URL and every redirect, configured or not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.config import Settings, SettingsError, module_int
from app.errors import Invalid

from .client import normal_host
from .demo import DEMO_SOURCE, DEMO_URL

#: The public feed this module was written for (the shape of eFishery's storages list).
DEFAULT_SOURCES = {
    "efishery": "https://stein.efishery.com/v1/storages/5e1edf521073e315924ceab4/list",
}
DEFAULT_FRESH_SECONDS = 300
DEFAULT_KEEP_SECONDS = 7 * 24 * 3600

_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


@dataclass(frozen=True)
class Feed:
    """One document to read: the source it is read as, its URL, and its cache key."""

    source: str
    url: str
    #: The source name for its configured URL; ``name~digest`` for an ad-hoc URL.
    key: str
    adhoc: bool
    #: The hosts the URL and each of its redirects may reach; empty: any (the address rules
    #: still apply). An ad-hoc URL gets ``LAPAK_FETCH_URL_HOSTS``.
    allowed_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SourceSettings:
    sources: Mapping[str, str]
    default_source: str | None
    url_hosts: frozenset[str]
    fresh_seconds: int
    keep_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceSettings:
        env = settings.module_env
        text = env.get("fetch_sources", "")
        if text.strip():
            sources, default = _sources(text), None
        elif settings.env == "development":
            sources, default = {DEMO_SOURCE: DEMO_URL, **DEFAULT_SOURCES}, DEMO_SOURCE
        else:
            sources, default = dict(DEFAULT_SOURCES), None
        default = env.get("fetch_default_source", "").strip() or default
        if default is None and len(sources) == 1:
            default = next(iter(sources))
        if default is not None and default not in sources:
            raise SettingsError(
                f"LAPAK_FETCH_DEFAULT_SOURCE {default!r} is not in LAPAK_FETCH_SOURCES"
            )
        return cls(
            sources=sources,
            default_source=default,
            url_hosts=frozenset(
                normal_host(part)
                for part in env.get("fetch_url_hosts", "").split(",")
                if part.strip()
            ),
            fresh_seconds=module_int(env, "fetch_fresh_seconds", DEFAULT_FRESH_SECONDS, 0),
            keep_seconds=module_int(env, "fetch_keep_seconds", DEFAULT_KEEP_SECONDS),
        )

    def feed(self, source: str | None, url: str | None = None) -> Feed:
        """The feed a request asks for; :class:`Invalid` names the parameter that is wrong."""
        if source is None or not source.strip():
            if self.default_source is None:
                raise Invalid(
                    "name a source",
                    errors={"source": f"required; one of {', '.join(sorted(self.sources))}"},
                )
            source = self.default_source
        source = source.strip().lower()
        configured = self.sources.get(source)
        if configured is None:
            raise Invalid(
                f"there is no source {source!r}",
                errors={"source": f"unknown; one of {', '.join(sorted(self.sources)) or 'none'}"},
            )
        if url is None or url == configured:
            return Feed(source=source, url=configured, key=source, adhoc=False)
        return Feed(
            source=source,
            url=self._adhoc_url(url),
            key=adhoc_key(source, url),
            adhoc=True,
            allowed_hosts=self.url_hosts,
        )

    def shown_url(self, source: str) -> str:
        """Where ``source`` is read from, safe to show anyone: scheme and host, no credentials,
        path or query (which may carry a token)."""
        url = self.sources[source]
        if url == DEMO_URL:
            return url
        parts = urlsplit(url)
        # The netloc as written, less any user:password@ (parsing the port could fail).
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def demo_source(self) -> str | None:
        """A configured source that reads the bundled demo feed, if there is one."""
        return next((name for name, url in self.sources.items() if url == DEMO_URL), None)

    def _adhoc_url(self, url: str) -> str:
        if not self.url_hosts:
            raise Invalid(
                "ad-hoc URLs are not enabled here", errors={"url": "not allowed; name a source"}
            )
        try:
            parts = urlsplit(url)
            host = normal_host(parts.hostname or "")
        except ValueError:
            raise Invalid("the url is not valid", errors={"url": "not a URL"}) from None
        if parts.scheme.lower() not in ("http", "https"):
            raise Invalid(
                "only http and https URLs can be read", errors={"url": "must be http or https"}
            )
        if host not in self.url_hosts:
            raise Invalid(
                f"the host {host or '(none)'!r} is not on the allow-list",
                errors={"url": f"host must be one of {', '.join(sorted(self.url_hosts))}"},
            )
        return url


def adhoc_key(source: str, url: str) -> str:
    """A short, stable cache key for an ad-hoc URL read as ``source``."""
    return f"{source}~{hashlib.sha256(url.encode()).hexdigest()[:20]}"


def _sources(text: str) -> dict[str, str]:
    try:
        raw = json.loads(text)
    except ValueError:
        raise SettingsError(
            'LAPAK_FETCH_SOURCES must be a JSON object, like {"efishery": "https://..."}'
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise SettingsError("LAPAK_FETCH_SOURCES must be a non-empty JSON object of name -> URL")
    sources = {}
    for name, url in raw.items():
        if not isinstance(name, str) or not _SOURCE_NAME.match(name):
            raise SettingsError(
                f"LAPAK_FETCH_SOURCES: {name!r} is not a source name "
                "(lower-case letters, digits, - and _, at most 50)"
            )
        if url == DEMO_URL:
            sources[name] = url
            continue
        if not isinstance(url, str) or urlsplit(url).scheme.lower() not in ("http", "https"):
            raise SettingsError(
                f"LAPAK_FETCH_SOURCES: {name!r} needs an http(s) URL, or {DEMO_URL!r} for the "
                "bundled demo feed"
            )
        sources[name] = url
    return sources
