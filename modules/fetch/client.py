"""An SSRF-safe JSON fetcher for configured third-party feeds.

:func:`fetch_json` promises that a request only ever reaches a public address (or loopback, when
the policy allows it for tests and local development):

- only ``http``/``https`` URLs without credentials, on an allow-listed host when the policy
  has a list (:attr:`FetchPolicy.allowed_hosts`: the first URL and every redirect);
- the host is resolved once per hop and refused if *any* address is loopback, private,
  link-local (cloud metadata included), multicast, unspecified, reserved, shared (100.64/10), or
  an IPv6 form that embeds one of those (IPv4-mapped, 6to4, Teredo, NAT64). Because the check is
  on resolved addresses, every spelling (``2130706433``, ``0x7f.1``, ``127.1``...) is caught;
- the socket connects to exactly the vetted addresses, never to a second DNS answer (DNS
  rebinding), while the Host header, TLS SNI and certificate check keep the URL's host name;
- redirects are followed by hand and every hop is checked again;
- one deadline covers the whole exchange (all hops, retries and the body), enforced by a
  watchdog that shuts the sockets down, so a slow-drip body cannot outlive it;
- bodies are capped in bytes after decompression, whatever Content-Length claims;
- 5xx answers, connection failures and timeouts are retried with bounded exponential backoff,
  4xx answers never.

Failures are domain errors: :class:`UnsafeUrl` (refused before connecting), :class:`SourceFailed`
and :class:`SourceTimeout`; each names the source and the reason, never the response body.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import idna
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from app.config import Settings, SettingsError, module_int
from app.errors import Invalid, UpstreamFailed, UpstreamTimeout

log = logging.getLogger(__name__)

#: ``socket.getaddrinfo``'s shape: ``(host, port, family, type)`` -> address tuples.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0
CHUNK_BYTES = 64 * 1024

_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(Invalid):
    """The URL or one of its redirects breaks a safety rule; nothing was sent to it."""

    code = "unsafe-url"
    title = "The source URL is not allowed"


class SourceFailed(UpstreamFailed):
    """The source answered with an error, an unusable body, or could not be reached."""

    code = "source-failed"
    title = "The data source failed"


class SourceTimeout(UpstreamTimeout):
    """The source did not complete the exchange within the policy's deadline."""

    code = "source-timeout"
    title = "The data source did not answer in time"


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one :func:`fetch_json` call. Build it from settings with :meth:`from_settings`."""

    connect_timeout: float = 3.0
    #: Seconds for the whole exchange: every hop, retry, backoff and the body.
    total_timeout: float = 15.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    #: Extra attempts after the first, on 5xx, connection errors and timeouts only.
    retries: int = 2
    #: Permit 127.0.0.0/8 and ::1 (tests, local development); never private or link-local.
    allow_loopback: bool = False
    #: Lower-case host names allowed, for the first URL and every redirect; empty means any
    #: public host. Not a setting of its own: an ad-hoc feed URL gets ``LAPAK_FETCH_URL_HOSTS``.
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    #: A CA file for sources signed by a private root; None trusts the usual public roots.
    ca_bundle: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """Read ``LAPAK_FETCH_*`` from :attr:`Settings.module_env`; raise SettingsError if bad."""
        env = settings.module_env
        if "fetch_allowed_hosts" in env:
            # It once limited every fetch; ignoring it now would silently widen what is allowed.
            raise SettingsError(
                "LAPAK_FETCH_ALLOWED_HOSTS is not a setting: LAPAK_FETCH_URL_HOSTS lists the hosts "
                "an ad-hoc ?url= and each of its redirects may reach; configured sources are "
                "the URLs in LAPAK_FETCH_SOURCES"
            )
        defaults = cls()
        return cls(
            connect_timeout=_seconds(env, "fetch_connect_timeout", defaults.connect_timeout),
            total_timeout=_seconds(env, "fetch_total_timeout", defaults.total_timeout),
            max_bytes=module_int(env, "fetch_max_bytes", defaults.max_bytes),
            max_redirects=module_int(env, "fetch_max_redirects", defaults.max_redirects, 0),
            retries=module_int(env, "fetch_retries", defaults.retries, 0),
            allow_loopback=_flag(env, "fetch_allow_loopback", defaults.allow_loopback),
            ca_bundle=env.get("fetch_ca_bundle") or None,
        )


@dataclass(frozen=True)
class FetchResult:
    """A decoded JSON document and how it was obtained."""

    data: Any
    #: The URL that answered, after redirects.
    url: str
    status: int
    elapsed_ms: int
    #: Body size in bytes after content decoding.
    bytes: int
    #: The body itself, for callers that keep the exact document they were given.
    content: bytes = field(repr=False, default=b"")


def fetch_json(
    source: str,
    url: str,
    policy: FetchPolicy,
    *,
    resolve: Resolver = socket.getaddrinfo,
) -> FetchResult:
    """GET ``url`` under ``policy`` and decode its JSON body.

    ``source`` is the configured source name, used in every error. ``resolve`` looks host names
    up (``socket.getaddrinfo`` by default); the connection goes only to the addresses it returned
    and that passed the checks. Raises :class:`UnsafeUrl`, :class:`SourceFailed` or
    :class:`SourceTimeout`.
    """
    started = time.monotonic()
    deadline = _Deadline(policy.total_timeout)
    try:
        current = url
        for hop in range(policy.max_redirects + 1):
            addresses = _vet(source, current, policy, resolve)
            session, response = _get_with_retries(source, current, addresses, policy, deadline)
            with session, response:
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise SourceFailed(
                            f"source {source!r} answered HTTP {response.status_code} "
                            "without a Location",
                            source=source,
                        )
                    if hop == policy.max_redirects:
                        break
                    current = urljoin(current, location)
                    continue
                if response.status_code >= 400:
                    raise SourceFailed(
                        f"source {source!r} answered HTTP {response.status_code}",
                        source=source,
                        upstream_status=response.status_code,
                    )
                body = _read_body(source, response, policy, deadline)
                status = response.status_code
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                raise SourceFailed(
                    f"source {source!r} returned invalid JSON", source=source
                ) from None
            return FetchResult(
                data=data,
                url=current,
                status=status,
                elapsed_ms=round((time.monotonic() - started) * 1000),
                bytes=len(body),
                content=body,
            )
        raise SourceFailed(
            f"source {source!r}: too many redirects (more than {policy.max_redirects})",
            source=source,
        )
    finally:
        deadline.cancel()


def address_refusal(ip: _IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` must not be contacted (a short rule name), or None if it is acceptable."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_refusal(ip.ipv4_mapped, allow_loopback)
        # Addresses that tunnel to an embedded IPv4 address: judge what they would reach.
        # Loopback is never allowed through a tunnel: allow_loopback means 127/8 and ::1 only.
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for inner in embedded:
            reason = address_refusal(inner, allow_loopback=False)
            if reason:
                return f"{reason} (embedded in IPv6)"
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        return "shared address space"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class PostAnswer:
    """What one :func:`post_once` got back: the status, headers and the start of the body."""

    status: int
    #: Looked up case-insensitively.
    headers: Mapping[str, str]
    #: The first ``excerpt_bytes`` of the body (the rest is not read).
    excerpt: bytes
    elapsed_ms: int


def vet_url(
    label: str, url: str, policy: FetchPolicy, *, resolve: Resolver = socket.getaddrinfo
) -> tuple[str, ...]:
    """Check ``url`` by the rules of :func:`fetch_json` without contacting it; the vetted
    addresses. Raises :class:`UnsafeUrl`, or :class:`SourceFailed` if the host has no address.
    ``label`` names the URL's owner in the error (a source, a webhook endpoint)."""
    return _vet(label, url, policy, resolve)


def post_once(
    label: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: FetchPolicy,
    *,
    excerpt_bytes: int = 1024,
    resolve: Resolver = socket.getaddrinfo,
) -> PostAnswer:
    """POST ``body`` to ``url`` once, by the same rules as :func:`fetch_json` (vetted and
    pinned addresses, one deadline of ``policy.total_timeout`` for the exchange) but without
    retries and without following a redirect: a 3xx is returned as it is.

    Raises :class:`UnsafeUrl` before connecting, :class:`SourceTimeout` past the deadline and
    :class:`SourceFailed` when no answer came (refused, reset, TLS).
    """
    started = time.monotonic()
    addresses = _vet(label, url, policy, resolve)
    host = normal_host(urlsplit(url).hostname or "")
    deadline = _Deadline(policy.total_timeout)
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    adapter = _PinnedAdapter(host, addresses, deadline)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    try:
        remaining = deadline.remaining()
        try:
            response = session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                stream=True,
                verify=policy.ca_bundle or True,
                timeout=(min(policy.connect_timeout, remaining), remaining),
            )
        except requests.Timeout:
            raise _timeout(label) from None
        except requests.exceptions.SSLError:
            if deadline.passed:
                raise _timeout(label) from None
            raise SourceFailed(
                f"source {label!r}: TLS handshake or certificate check failed", source=label
            ) from None
        except requests.RequestException as exc:
            if deadline.passed:
                raise _timeout(label) from None
            raise SourceFailed(
                f"source {label!r}: {_connection_reason(exc)}", source=label
            ) from None
        with response:
            excerpt = b""
            try:
                for chunk in response.iter_content(min(CHUNK_BYTES, max(excerpt_bytes, 1))):
                    excerpt += chunk
                    if len(excerpt) >= excerpt_bytes or deadline.passed:
                        break
            except requests.RequestException:
                pass  # the answer's status is what counts; its body is only an excerpt
            return PostAnswer(
                status=response.status_code,
                # Case-insensitive, as HTTP header names are (``retry-after`` is Retry-After).
                headers=CaseInsensitiveDict(response.headers),
                excerpt=excerpt[:excerpt_bytes],
                elapsed_ms=round((time.monotonic() - started) * 1000),
            )
    finally:
        session.close()
        deadline.cancel()


# -- URL and address checks -------------------------------------------------------------------


def _vet(source: str, url: str, policy: FetchPolicy, resolve: Resolver) -> tuple[str, ...]:
    """Check ``url`` and return the resolved addresses that the connection may use."""

    def refuse(rule: str) -> UnsafeUrl:
        return UnsafeUrl(f"source {source!r}: URL refused: {rule}", source=source)

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise refuse(f"scheme {scheme or '(none)'!r} is not http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("credentials in the URL")
    if not parts.hostname:
        raise refuse("no host")
    try:
        host = normal_host(parts.hostname)
    except UnicodeError:
        raise refuse("the host is not a valid domain name") from None
    if policy.allowed_hosts and host not in policy.allowed_hosts:
        raise refuse(f"host {host!r} is not on the allow-list")
    port = port or (443 if scheme == "https" else 80)
    try:
        answers = resolve(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise SourceFailed(
            f"source {source!r}: host {host!r} could not be resolved", source=source
        ) from None
    addresses: list[str] = []
    for answer in answers:
        text = str(answer[4][0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise refuse(f"host {host!r} resolved to an unparseable address") from None
        reason = address_refusal(ip, policy.allow_loopback)
        if reason:
            # Not the address, nor what kind: the refusal reaches sellers, not only admins
            # (a webhook's owner could map a private network by it). The log has both.
            log.warning("%s: host %r resolves to a %s address (%s): refused", source, host,
                        reason, ip)  # fmt: skip
            raise refuse(f"host {host!r} is not a public address")
        # Connect to an IPv4-mapped address over IPv4: it is the same host, and works without
        # a dual-stack socket.
        connect_to = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        address = str(connect_to or ip)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise SourceFailed(f"source {source!r}: host {host!r} has no address", source=source)
    return tuple(addresses)


def normal_host(host: str) -> str:
    """``host`` as allow-lists hold it and as requests connects to it: lower case, no
    brackets, no trailing dot, an international name in its IDNA form (``bücher.example`` ->
    ``xn--bcher-kva.example``, UTS 46 as requests encodes it), so the host vetted is the host
    connected to. Raises ``UnicodeError`` (a ``ValueError``) for a name IDNA refuses."""
    host = host.strip().strip("[]").rstrip(".")
    if not host.isascii():
        host = idna.encode(host, uts46=True).decode("ascii")
    return host.lower()


# -- Deadline ---------------------------------------------------------------------------------


class _Deadline:
    """One deadline for a whole fetch; at expiry it shuts down every socket it was given.

    Socket timeouts bound each ``recv``, not a body that drips one byte at a time, so a timer
    ends the exchange instead. Each fetch owns its deadline; nothing is shared between threads
    except through the lock.
    """

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def passed(self) -> bool:
        return self._expired or self.remaining() <= 0

    def remaining(self) -> float:
        return max(0.0, self._ends - time.monotonic())

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._expired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


# -- Pinned connections -----------------------------------------------------------------------


def _connect_pinned(
    conn: HTTPConnection, addresses: tuple[str, ...], deadline: _Deadline
) -> socket.socket:
    """Connect to the first vetted address that answers, never resolving the host again."""
    error: OSError | None = None
    for address in addresses:
        try:
            sock = urllib3_connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            error = exc
            continue
        deadline.register(sock)
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class _Pinned:
    """Connects only to the vetted addresses; the host name stays in ``self.host``, so the Host
    header, TLS SNI and the certificate check use the name, not the address."""

    def __init__(
        self, *args: Any, pinned: tuple[str, ...], deadline: _Deadline, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._pinned = pinned
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        return _connect_pinned(self, self._pinned, self._deadline)  # type: ignore[arg-type]


class _PinnedHTTPConnection(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_Pinned, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinnedPoolManager(PoolManager):
    """Pools for one vetted host whose connections go only to its vetted addresses."""

    def __init__(
        self, *args: Any, host: str, pinned: tuple[str, ...], deadline: _Deadline, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._pinned = pinned
        self._deadline = deadline
        self.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        if normal_host(host) != self._host:
            # Only reachable if a caller bypassed the vetting: fail closed.
            raise NewConnectionError(self, f"host {host!r} was not vetted")  # type: ignore[arg-type]
        context = dict(request_context or self.connection_pool_kw)
        context["pinned"] = self._pinned
        context["deadline"] = self._deadline
        return super()._new_pool(scheme, host, port, context)


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, host: str, pinned: tuple[str, ...], deadline: _Deadline) -> None:
        self._host = host
        self._pinned = pinned
        self._deadline = deadline
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = _PinnedPoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            host=self._host,
            pinned=self._pinned,
            deadline=self._deadline,
            **pool_kwargs,
        )


# -- The exchange -----------------------------------------------------------------------------


def _get_with_retries(
    source: str,
    url: str,
    addresses: tuple[str, ...],
    policy: FetchPolicy,
    deadline: _Deadline,
) -> tuple[requests.Session, requests.Response]:
    """GET one hop, retrying 5xx, connection errors and timeouts; return the open response.

    The caller closes both: the response holds a connection from the session's pinned pool.
    """
    host = normal_host(urlsplit(url).hostname or "")
    attempts = policy.retries + 1
    for attempt in range(1, attempts + 1):
        if deadline.passed:
            raise _timeout(source)
        failure: SourceFailed | SourceTimeout
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc from the environment
        adapter = _PinnedAdapter(host, addresses, deadline)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        remaining = deadline.remaining()
        try:
            response = session.get(
                url,
                headers={"Accept": "application/json"},
                allow_redirects=False,
                stream=True,
                verify=policy.ca_bundle or True,
                timeout=(min(policy.connect_timeout, remaining), remaining),
            )
        except requests.Timeout:
            failure = _timeout(source)
        except requests.exceptions.SSLError:
            session.close()
            if deadline.passed:
                raise _timeout(source) from None
            raise SourceFailed(
                f"source {source!r}: TLS handshake or certificate check failed", source=source
            ) from None
        except requests.RequestException as exc:
            # The watchdog ends sockets at the deadline; what follows looks like a reset.
            failure = (
                _timeout(source)
                if deadline.passed
                else SourceFailed(f"source {source!r}: {_connection_reason(exc)}", source=source)
            )
        else:
            if response.status_code < 500:
                return session, response
            response.close()
            failure = SourceFailed(
                f"source {source!r} answered HTTP {response.status_code} "
                f"after {attempt} attempt{'s' if attempt > 1 else ''}",
                source=source,
                upstream_status=response.status_code,
            )
        session.close()
        delay = min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
        if attempt == attempts or delay >= deadline.remaining():
            raise failure  # no attempts or no time left: report what last went wrong
        log.warning("fetch: source %r attempt %d failed (%s); retrying", source, attempt, failure)
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_body(
    source: str, response: requests.Response, policy: FetchPolicy, deadline: _Deadline
) -> bytes:
    """The decoded body, refused past ``max_bytes`` and cut off at the deadline."""

    def too_large() -> SourceFailed:
        return SourceFailed(
            f"source {source!r}: response larger than {policy.max_bytes} bytes", source=source
        )

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > policy.max_bytes:
                raise too_large()
            chunks.append(chunk)
            if deadline.passed:
                raise _timeout(source)
    except requests.RequestException as exc:
        if deadline.passed:
            raise _timeout(source) from None
        raise SourceFailed(
            f"source {source!r}: the body was cut off ({_connection_reason(exc)})", source=source
        ) from None
    # A body without Content-Length ends when the socket does, and the watchdog ends sockets:
    # a deadline that passed means the body may be truncated.
    if deadline.passed:
        raise _timeout(source)
    return b"".join(chunks)


def _timeout(source: str) -> SourceTimeout:
    return SourceTimeout(f"source {source!r} did not answer in time", source=source)


def _connection_reason(exc: BaseException) -> str:
    """A short, body-free reason from requests' and urllib3's wrapped exceptions."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return "connection failed"


# -- Settings ---------------------------------------------------------------------------------


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(
            f"LAPAK_{name.upper()} must be a number of seconds, not {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"LAPAK_{name.upper()} must be a positive number of seconds")
    return value


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    text = env.get(name)
    if text is None:
        return default
    normal = text.strip().lower()
    if normal in ("true", "1", "yes", "on"):
        return True
    if normal in ("false", "0", "no", "off", ""):
        return False
    raise SettingsError(f"LAPAK_{name.upper()} must be true or false, not {text!r}")
