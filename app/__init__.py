"""The Lapak core: ``create_app`` builds the application; nothing here knows a business module."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Settings

# Not `log`: importing the submodule app.log sets that name on this package.
logger = logging.getLogger(__name__)

#: Warnings this process (or the one it was forked from) already gave. gunicorn's master builds
#: the app before forking its workers, so each warning is logged once per start, not per worker.
_warned: set[str] = set()
#: Set where the start's warnings were logged by another process (:func:`warned_elsewhere`).
_warned_elsewhere = False
#: Where the web client lives (``hooks.web_shell`` and ``hooks.screens``).
WEB_PREFIX = "/web"


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the application from the environment; ``config`` overrides settings by field name."""
    # Imported here, not above: `lapak --help` imports this package and must not pay for them.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app import db, http, openapi, streaming
    from app import demo as _demo  # noqa: F401 - its table (core_demo_run) in the metadata
    from app.config import Settings, misspelled_settings
    from app.events import SWEEP_EVERY, dispatch_outbox
    from app.health import core, health
    from app.jobs import Jobs
    from app.landing import landing
    from app.log import configure_logging
    from app.registry import Periodic, load
    from app.security import API_KEY_SCHEME, BEARER_SCHEME
    from app.vault import Vault

    settings = config if isinstance(config, Settings) else Settings.from_env(overrides=config)
    configure_logging(settings.log_level)
    if settings.secret_is_generated:
        _warn_once(
            "LAPAK_SECRET_KEY is not set: using a generated development secret kept in "
            f"{settings.instance_path}. Set LAPAK_SECRET_KEY before any real use; production "
            "refuses to start without it."
        )
    if settings.vault_key_is_generated:
        _warn_once(
            "LAPAK_VAULT_KEYS is not set: secrets are sealed with a generated vault key kept in "
            f"{settings.instance_path}. Keep that file with the database (without it nothing "
            "sealed can be read) and set LAPAK_VAULT_KEYS before any real use; production "
            "refuses to start without it."
        )

    app = Flask("lapak", instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.env == "test",
        JSON_SORT_KEYS=False,
    )
    app.extensions["lapak.settings"] = settings
    app.extensions["lapak.vault"] = Vault(settings.vault_keys, settings.secret_key)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    db.init_app(app, settings)
    api = http.init_app(app, settings, openapi.document_plugins())
    app.extensions["lapak.jobs"] = Jobs(app, settings)
    streaming.install(app, settings.web_streams)

    registry = load(settings.module_packages, settings.modules)
    registry.wiring.periodic.append(Periodic(dispatch_outbox, SWEEP_EVERY, "events"))
    app.extensions["lapak.registry"] = registry
    for warning in misspelled_settings(settings, registry.module_settings):
        _warn_once(warning)

    api.spec.components.security_scheme(
        BEARER_SCHEME, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        API_KEY_SCHEME,
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "A signed request: X-API-Key, X-Timestamp (unix seconds) and "
            "X-Signature (hex HMAC-SHA256; see the README's API keys section). Only operations "
            "naming a scope (x-lapak-scope) accept it.",
        },
    )
    app.register_blueprint(landing)
    api.register_blueprint(health)
    api.register_blueprint(core)
    for module_name, blueprint in registry.wiring.blueprints:
        # Flask's url_prefix option replaces the blueprint's own prefix; nest it instead.
        own_prefix = (blueprint.url_prefix or "").strip("/")
        url_prefix = f"{http.API_PREFIX}/{module_name}" + (f"/{own_prefix}" if own_prefix else "")
        api.register_blueprint(blueprint, url_prefix=url_prefix)
    if registry.wiring.web_shell is not None:
        app.register_blueprint(registry.wiring.web_shell, url_prefix=WEB_PREFIX)
        for module_name, blueprint in registry.wiring.screens:
            own_prefix = (blueprint.url_prefix or "").strip("/")
            url_prefix = f"{WEB_PREFIX}/{module_name}" + (f"/{own_prefix}" if own_prefix else "")
            app.register_blueprint(blueprint, url_prefix=url_prefix)
    for command in registry.wiring.commands:
        app.cli.add_command(command)
    for install in registry.wiring.setups:
        install(app, settings)
    return app


def warned_elsewhere() -> None:
    """Log none of the start's warnings in this process: ``lapak serve``'s stream process, which
    builds the app anew, would repeat what the server logged once already."""
    global _warned_elsewhere
    _warned_elsewhere = True


def _warn_once(message: str) -> None:
    if message not in _warned and not _warned_elsewhere:
        _warned.add(message)
        logger.warning(message)
