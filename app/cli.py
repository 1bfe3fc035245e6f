"""The ``lapak`` command: serve, worker, db; modules add their own commands."""

from __future__ import annotations

import sys
from typing import Any

import click
from alembic import command as alembic_command
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from werkzeug.serving import run_simple

from app import create_app
from app.config import Settings, SettingsError
from app.jobs import QUEUES, PeriodicTicker, run_worker
from app.migrate import alembic_config, is_up_to_date
from app.registry import RegistryError


def _settings() -> Settings:
    return current_app.extensions["lapak.settings"]


def _load_app() -> Flask:
    try:
        return create_app()
    except (SettingsError, RegistryError) as error:
        click.echo(f"lapak: {error}", err=True)
        sys.exit(2)


@click.group(
    cls=FlaskGroup,
    create_app=_load_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
def main() -> None:
    """Lapak, the marketplace back office."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--dev", is_flag=True, help="Werkzeug with reloader and debugger (never in production)."
)
@with_appcontext
def serve(host: str, port: int, dev: bool) -> None:
    """Serve the API (gunicorn; --dev for the development server)."""
    settings = _settings()
    if not is_up_to_date(settings):
        click.echo(
            "lapak: the database is not at the newest revision; run `lapak db upgrade`", err=True
        )
        sys.exit(2)
    click.echo(f"Lapak on http://{host}:{port}/  API docs: http://{host}:{port}/api/v1/docs")
    if dev:
        if settings.production:
            raise click.UsageError("--dev is refused in LAPAK_ENV=production")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _start_embedded_ticker(app)
        app.debug = True
        # Werkzeug directly: Flask refuses app.run() inside its own CLI.
        run_simple(host, port, app, use_debugger=True, use_reloader=False, threaded=True)
        return
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": settings.web_workers,
            "control_socket_disable": True,
            "accesslog": None,
            "errorlog": "-",
            "graceful_timeout": 20,
            "timeout": 60,
        }
    ).run()


@main.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(QUEUES),
    help="Queue to work on (repeatable; default all).",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_appcontext
def worker(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (with its scheduler and the periodic jobs) inside the app."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions["lapak.jobs"].embedded:
        raise click.UsageError("LAPAK_REDIS_URL is not set: without Redis, `lapak serve` runs jobs")
    run_worker(app, queues or QUEUES, burst=burst)


@main.command()
@with_appcontext
def demo() -> None:
    """Load demo data (each module adds its own) and print how to log in."""
    for load_demo in current_app.extensions["lapak.registry"].wiring.demos:
        for line in load_demo():
            click.echo(line)


@main.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command()
@click.argument("revision", default="head")
@with_appcontext
def upgrade(revision: str) -> None:
    """Bring the database to REVISION (default: head)."""
    alembic_command.upgrade(alembic_config(_settings()), revision)


@db.command()
@click.argument("revision", default="-1")
@with_appcontext
def downgrade(revision: str) -> None:
    """Step the database back to REVISION (default: one step; `base` for empty)."""
    alembic_command.downgrade(alembic_config(_settings()), revision)


@db.command()
@click.option("-m", "--message", required=True)
@with_appcontext
def revision(message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    alembic_command.revision(alembic_config(_settings()), message=message, autogenerate=True)


@db.command()
@with_appcontext
def current() -> None:
    """Show the database's revision."""
    alembic_command.current(alembic_config(_settings()))


@db.command()
@with_appcontext
def check() -> None:
    """Fail when the models and the migrations disagree."""
    alembic_command.check(alembic_config(_settings()))


def _start_embedded_ticker(app: Flask) -> None:
    if app.extensions["lapak.jobs"].embedded:
        PeriodicTicker(app).start()


class _Gunicorn:
    """gunicorn with our app factory: each worker process builds its own app and engines."""

    def __init__(self, options: dict[str, Any]) -> None:
        from gunicorn.app.base import BaseApplication

        class Application(BaseApplication):
            def load_config(self) -> None:
                for key, value in options.items():
                    self.cfg.set(key, value)

            def load(self) -> Flask:
                app = create_app()
                _start_embedded_ticker(app)
                return app

        self.application = Application()

    def run(self) -> None:
        self.application.run()


if __name__ == "__main__":
    main()
