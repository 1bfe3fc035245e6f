"""Settings: every knob Lapak has, read once from ``LAPAK_*`` variables (and ``.env``).

The defaults need no services at all: SQLite under ``./instance/``, jobs in a background thread,
and a development secret and vault key generated once and kept in ``./instance/`` with a loud
warning. In ``LAPAK_ENV=production`` a missing or weak secret, and missing or malformed vault
keys, are refused instead.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

ENVIRONMENTS = ("development", "test", "production")
MIN_SECRET_LENGTH = 32
#: gunicorn's request limits and the largest value it accepts for each.
LIMITS = {
    "limit_request_line": 8190,
    "limit_request_field_size": 65536,
    "limit_request_fields": 32768,
}


#: Fields derived while validating, never read from a variable (nor reported as unknown).
DERIVED_SETTINGS = frozenset({"secret_is_generated", "vault_key_is_generated", "module_env"})
#: The generated development vault key, in the instance folder (see :func:`_development_vault_key`).
VAULT_KEY_FILE = "vault-key"
GENERATE_VAULT_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    " (or `lapak vault new-key`)"
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with :meth:`from_env`, never by hand in app code."""

    env: str = "development"
    instance_path: Path = field(default_factory=lambda: Path.cwd() / "instance")
    database_url: str = ""
    replica_urls: tuple[str, ...] = ()
    redis_url: str | None = None
    # Secrets stay out of repr(): a Settings object printed in a traceback or a log shows none.
    secret_key: str = field(default="", repr=False)
    secret_is_generated: bool = False
    #: Fernet keys of the vault (app/vault.py), newest first: the newest seals, any opens.
    vault_keys: tuple[str, ...] = field(default=(), repr=False)
    vault_key_is_generated: bool = False
    modules: tuple[str, ...] | None = None
    module_packages: tuple[str, ...] = ("modules",)
    log_level: str = "INFO"
    web_workers: int = field(default_factory=lambda: min(2 * (os.cpu_count() or 1) + 1, 8))
    #: Threads of each gunicorn worker that answer ordinary requests (``lapak serve``).
    web_threads: int = 4
    #: Long-lived responses (the event stream) served at once per worker: by the stream
    #: process (``web_stream_process``), or by each worker on threads of its own besides
    #: ``web_threads``; one more is a 503 with ``Retry-After``.
    web_streams: int = 100
    #: ``lapak serve`` hands each event stream to one stream process of its own, which serves
    #: ``web_streams`` x ``web_workers`` of them (app/stream_host.py); off: each worker serves
    #: its streams on threads of its own, as the development server does.
    web_stream_process: bool = True
    #: A replica that failed is not tried again for this many seconds.
    replica_retry_seconds: float = 10.0
    #: A replica's state (still in recovery, how far replayed), once read, is trusted this many
    #: seconds for reads that need no newer position (0: asked before every read).
    replica_trust_seconds: float = 1.0
    #: Connect timeout for replicas: a dead replica must not stall a read for long.
    replica_connect_timeout: int = 2
    #: Each round trip to a replica (a statement, a commit, a rollback) gives up after this many
    #: seconds: a hung replica is then skipped and the read served by the primary.
    replica_read_timeout: float = 5.0
    #: ``/health/ready`` gives each database this many seconds to connect and answer.
    health_check_timeout: float = 2.0
    #: In-process job threads when no Redis is configured.
    embedded_job_threads: int = 2
    outbox_max_attempts: int = 8
    #: Reverse proxies in front of Lapak whose X-Forwarded-For/-Proto to trust (0: none). The
    #: client IP feeds login throttling and audit logs, so it must not be spoofable.
    trusted_proxy_hops: int = 0
    #: gunicorn's limits on what it reads before the app sees a request: the request line
    #: (method, path and query; over it: 414), each header field (431) and the number of header
    #: fields (431). Answered as problem+json by gunicorn's worker (app/serving.py).
    limit_request_line: int = 4094
    limit_request_field_size: int = 8190
    limit_request_fields: int = 100
    #: Largest request body read (bytes); more is a 413 before it is read. Uploads that may be
    #: larger (the CSV import) set their own limit.
    max_json_bytes: int = 1024 * 1024
    #: ``LAPAK_*`` variables the core does not know, by lower-case name without the prefix
    #: (``LAPAK_JWT_ALGORITHM`` -> ``jwt_algorithm``): each module reads and validates its own.
    module_env: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        dotenv_path: Path | None = None,
    ) -> Settings:
        """Read ``LAPAK_*`` variables (a ``.env`` file fills the gaps), apply overrides, validate.

        ``overrides`` uses field names (``database_url``...) and wins over the environment; it
        is how tests and ``create_app(config)`` pass settings.
        """
        environ = dict(os.environ if environ is None else environ)
        dotenv_file = dotenv_path or Path.cwd() / ".env"
        if dotenv_file.is_file():
            for key, value in dotenv_values(dotenv_file).items():
                if value is not None:
                    environ.setdefault(key, value)
        raw = {k[len("LAPAK_") :].lower(): v for k, v in environ.items() if k.startswith("LAPAK_")}
        values = _parse(raw)
        known = {f.name for f in fields(cls)}
        for key, value in (overrides or {}).items():
            if key not in known:
                raise SettingsError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
            values[key] = _coerce_override(key, value)
            if key == "module_env":
                values[key] = {**_parse(raw).get("module_env", {}), **values[key]}
        settings = cls(**values)
        return settings._validated()

    def _validated(self) -> Settings:
        if self.env not in ENVIRONMENTS:
            raise SettingsError(
                f"LAPAK_ENV must be one of {', '.join(ENVIRONMENTS)}, not {self.env!r}"
            )
        instance = Path(self.instance_path).resolve()
        settings = replace(self, instance_path=instance)
        database_url = _normalise_database_url(
            self.database_url or f"sqlite:///{instance / 'lapak.db'}", "LAPAK_DATABASE_URL"
        )
        replicas = tuple(
            _normalise_database_url(u, "LAPAK_REPLICA_URLS") for u in self.replica_urls
        )
        if replicas and make_url(database_url).get_backend_name() != "postgresql":
            raise SettingsError("LAPAK_REPLICA_URLS needs a PostgreSQL LAPAK_DATABASE_URL")
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise SettingsError(
                    "LAPAK_REDIS_URL must look like redis://host:6379/0 "
                    f"(or rediss://, unix://), not scheme {scheme!r}"
                )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"LAPAK_LOG_LEVEL {self.log_level!r} is not a logging level")
        if self.trusted_proxy_hops < 0:
            raise SettingsError("LAPAK_TRUSTED_PROXY_HOPS must be 0 or more")
        for name in (
            "web_workers",
            "web_threads",
            "web_streams",
            "embedded_job_threads",
            "outbox_max_attempts",
            "max_json_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"LAPAK_{name.upper()} must be at least 1")
        for name in ("replica_read_timeout", "health_check_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"LAPAK_{name.upper()} must be more than 0 seconds")
        if not 0 <= self.replica_trust_seconds <= 60:
            raise SettingsError("LAPAK_REPLICA_TRUST_SECONDS must be between 0 and 60 seconds")
        for name, most in LIMITS.items():
            if not 1 <= getattr(self, name) <= most:
                raise SettingsError(f"LAPAK_{name.upper()} must be between 1 and {most}")
        secret, generated = self.secret_key, self.secret_is_generated
        if not secret:
            if self.production:
                raise SettingsError(
                    "LAPAK_SECRET_KEY is required in production: set it to a random string of "
                    f"at least {MIN_SECRET_LENGTH} characters (python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))')"
                )
            secret, generated = _development_secret(instance), True
        elif len(secret) < MIN_SECRET_LENGTH and self.production:
            raise SettingsError(f"LAPAK_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
        vault_keys, vault_key_generated = _validated_vault_keys(self.vault_keys), False
        if not vault_keys:
            if self.production:
                raise SettingsError(
                    "LAPAK_VAULT_KEYS is required in production: set it to one or more Fernet "
                    f"keys, newest first, comma-separated; make one with {GENERATE_VAULT_KEY}"
                )
            vault_keys, vault_key_generated = (_development_vault_key(instance),), True
        return replace(
            settings,
            database_url=database_url,
            replica_urls=replicas,
            secret_key=secret,
            secret_is_generated=generated,
            vault_keys=vault_keys,
            vault_key_is_generated=vault_key_generated,
            log_level=self.log_level.upper(),
        )


def _parse(raw: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, text in raw.items():
        text = text.strip()
        if name in ("secret_is_generated", "vault_key_is_generated"):
            continue
        if name == "env":
            values["env"] = text.lower()
        elif name == "instance_path":
            values["instance_path"] = Path(text)
        elif name in ("database_url", "secret_key", "log_level"):
            values[name] = text
        elif name == "redis_url":
            values["redis_url"] = text or None
        elif name == "web_stream_process":
            values[name] = _boolean(name, text)
        elif name in ("replica_urls", "module_packages"):
            values[name] = _split(text)
        elif name == "vault_keys":
            values[name] = _key_list(text)
        elif name == "modules":
            values["modules"] = _split(text) if text else None
        elif name in (
            "trusted_proxy_hops",
            "web_workers",
            "web_threads",
            "web_streams",
            "replica_connect_timeout",
            "embedded_job_threads",
            "outbox_max_attempts",
            *LIMITS,
            "max_json_bytes",
        ):
            values[name] = _integer(name, text)
        elif name in (
            "replica_retry_seconds",
            "replica_trust_seconds",
            "replica_read_timeout",
            "health_check_timeout",
        ):
            values[name] = _number(name, text)
        elif not name.startswith("test_"):  # LAPAK_TEST_* belong to the test harness
            values.setdefault("module_env", {})[name] = text
    return values


def _coerce_override(key: str, value: Any) -> Any:
    if key == "modules" and isinstance(value, str):
        return _split(value) or None
    if key == "vault_keys":
        return _key_list(value) if isinstance(value, str) else tuple(value)
    if key in ("replica_urls", "module_packages") and isinstance(value, str):
        return _split(value)
    if key in ("replica_urls", "module_packages", "modules") and isinstance(value, list):
        return tuple(value)
    if key == "instance_path":
        return Path(value)
    if key == "module_env":
        return {str(k).lower(): str(v) for k, v in value.items()}
    return value


#: Read by ``lapak serve`` (its --host and --port) and ``scripts/run``, not by the app.
COMMAND_SETTINGS = frozenset({"host", "port"})


def misspelled_settings(settings: Settings, module_settings: Iterable[str]) -> list[str]:
    """A warning for each ``LAPAK_*`` variable that nothing reads, naming the closest known one.

    ``module_settings`` are the names the modules declare in their manifests.
    """
    core = {f.name for f in fields(Settings)} - DERIVED_SETTINGS
    known = sorted(core | COMMAND_SETTINGS | set(module_settings))
    warnings = []
    for name in sorted(set(settings.module_env) - set(known)):
        closest = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean LAPAK_{closest[0].upper()}?" if closest else ""
        warnings.append(f"LAPAK_{name.upper()} is not a Lapak setting and is ignored{hint}")
    return warnings


def _boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"LAPAK_{name.upper()} must be 1 or 0 (true or false), not {text!r}")


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def module_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """A whole-number module setting from :attr:`Settings.module_env`, validated by name."""
    text = env.get(name)
    if text is None:
        return default
    value = _integer(name, text)
    if value < minimum:
        raise SettingsError(f"LAPAK_{name.upper()} must be at least {minimum}")
    return value


def _key_list(text: str) -> tuple[str, ...]:
    """Comma-separated keys, empty entries kept (so an error names the right position); only a
    text with no key at all is no keys."""
    parts = tuple(part.strip() for part in text.split(","))
    return parts if any(parts) else ()


def _validated_vault_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys, each checked to be a Fernet key (32 bytes in url-safe base64).

    The message names the key's position, never the key: it may be one character off a real one.
    Checked here, without importing ``cryptography``, so ``lapak --help`` stays light; Fernet
    checks it again in :class:`app.vault.Vault`.
    """
    for position, key in enumerate(keys, start=1):
        where = f"LAPAK_VAULT_KEYS: key {position} of {len(keys)}"
        if not key:
            raise SettingsError(f"{where} is empty (keys are comma-separated, newest first)")
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
            canonical = base64.urlsafe_b64encode(raw).decode("ascii") == key
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw, canonical = b"", False
        if len(raw) != 32 or not canonical:
            raise SettingsError(
                f"{where} is not a Fernet key (44 characters of url-safe base64 for 32 bytes); "
                f"make one with {GENERATE_VAULT_KEY}"
            )
    if len(set(keys)) != len(keys):
        raise SettingsError("LAPAK_VAULT_KEYS lists the same key twice")
    return keys


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"LAPAK_{name.upper()} must be a whole number, not {text!r}") from None


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"LAPAK_{name.upper()} must be a number, not {text!r}") from None


def _normalise_database_url(url: str, variable: str) -> str:
    """Read ``postgresql://`` and ``postgres://`` as psycopg 3 URLs; refuse unparseable ones."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(
            f"{variable} is not a database URL (expected postgresql://user@host:5432/db "
            "or sqlite:///path)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres" or (
        backend == "postgresql" and parsed.get_driver_name() in ("", "psycopg2")
    ):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("postgresql", "sqlite"):
        raise SettingsError(f"{variable}: Lapak runs on PostgreSQL or SQLite, not {backend!r}")
    return parsed.render_as_string(hide_password=False)


def _development_secret(instance: Path) -> str:
    """A random secret kept in the instance folder, so restarts and workers share it."""
    try:
        return _kept_once(
            instance / "development-secret",
            lambda: secrets.token_urlsafe(48),
            lambda kept: len(kept) >= MIN_SECRET_LENGTH,
        )
    except OSError:
        return secrets.token_urlsafe(48)


def _development_vault_key(instance: Path) -> str:
    """A Fernet key kept in the instance folder, so restarts and workers share it.

    Unlike the secret, a key that cannot be kept is refused (what it seals would be unreadable
    after the next start), and so is a file that holds something else than a key: replacing it
    could lose the key of sealed data.
    """
    path = instance / VAULT_KEY_FILE
    try:
        if path.is_file() and path.read_text().strip():
            try:
                return _validated_vault_keys((path.read_text().strip(),))[0]
            except SettingsError:
                raise SettingsError(
                    f"{path} does not hold a Fernet key: restore the key it held, or remove the "
                    "file if nothing was sealed with it (a new key is then generated)"
                ) from None
        return _kept_once(
            path,
            lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii"),
            lambda kept: bool(kept),
        )
    except OSError as error:
        raise SettingsError(
            f"LAPAK_VAULT_KEYS is not set and no vault key can be kept in {instance} "
            f"({error.strerror or type(error).__name__}): set LAPAK_VAULT_KEYS or make the "
            "instance folder writable"
        ) from None


def _kept_once(path: Path, generate: Callable[[], str], usable: Callable[[str], bool]) -> str:
    """The value kept in ``path`` when it is usable, else a new one written there (mode 0600).

    Raises OSError when the folder cannot be written.
    """
    if path.is_file():
        kept = path.read_text().strip()
        if usable(kept):
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate()
    # Write a private file, then publish it whole: a concurrent reader never sees it empty.
    draft = path.parent / f".{path.name}.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        if path.exists():  # empty or truncated by a crash: replace it
            os.replace(draft, path)
            return value
        os.link(draft, path)  # fails if another process published first
        return value
    except FileExistsError:
        return path.read_text().strip()
    finally:
        draft.unlink(missing_ok=True)
