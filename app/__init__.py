"""The Lapak core: ``create_app`` builds the application; nothing here knows a business module."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import db, http, openapi
from app.config import Settings
from app.events import SWEEP_EVERY, dispatch_outbox
from app.health import core, health
from app.jobs import Jobs
from app.log import configure_logging
from app.registry import Periodic, load
from app.security import BEARER_SCHEME

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the application from the environment; ``config`` overrides settings by field name."""
    settings = config if isinstance(config, Settings) else Settings.from_env(overrides=config)
    configure_logging(settings.log_level)
    if settings.secret_is_generated:
        log.warning(
            "LAPAK_SECRET_KEY is not set: using a generated development secret kept in %s. "
            "Set LAPAK_SECRET_KEY before any real use; production refuses to start without it.",
            settings.instance_path,
        )

    app = Flask("lapak", instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.env == "test",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=None,
    )
    app.extensions["lapak.settings"] = settings
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    db.init_app(app, settings)
    api = http.init_app(app, settings, openapi.document_plugins())
    app.extensions["lapak.jobs"] = Jobs(app, settings)

    registry = load(settings.module_packages, settings.modules)
    registry.wiring.periodic.append(Periodic(dispatch_outbox, SWEEP_EVERY, "events"))
    app.extensions["lapak.registry"] = registry

    api.spec.components.security_scheme(
        BEARER_SCHEME, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.register_blueprint(health)
    api.register_blueprint(core)
    for module_name, blueprint in registry.wiring.blueprints:
        # Flask's url_prefix option replaces the blueprint's own prefix; nest it instead.
        own_prefix = (blueprint.url_prefix or "").strip("/")
        url_prefix = f"{http.API_PREFIX}/{module_name}" + (f"/{own_prefix}" if own_prefix else "")
        api.register_blueprint(blueprint, url_prefix=url_prefix)
    for command in registry.wiring.commands:
        app.cli.add_command(command)
    for install in registry.wiring.setups:
        install(app, settings)
    return app
