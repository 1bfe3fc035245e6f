"""The ``lapak`` command: serve, worker, db, vault; modules add their own commands.

``lapak --help`` builds no app: it lists the enabled modules' commands from their manifests,
and a module's code is imported only when one of its commands runs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext

from app.config import Settings, SettingsError
from app.registry import RegistryError, enabled_manifests

if TYPE_CHECKING:
    from flask import Flask

#: Commands the app itself adds (flask-smorest's), listed without building the app.
APP_COMMANDS = {"openapi": "Print or write the OpenAPI document."}


def _settings() -> Settings:
    return current_app.extensions["lapak.settings"]


def _load_app() -> Flask:
    from app import create_app

    try:
        return create_app()
    except (SettingsError, RegistryError) as error:
        click.echo(f"lapak: {error}", err=True)
        sys.exit(2)


def _other_commands() -> dict[str, str] | None:
    """The commands of the app and of the enabled modules, with a line of help each (None when
    the settings or modules are wrong: running any command then says what to fix)."""
    try:
        settings = Settings.from_env()
        manifests = enabled_manifests(settings.module_packages, settings.modules)
    except (SettingsError, RegistryError):
        return None
    commands = dict(APP_COMMANDS)
    for manifest in manifests:
        for name in manifest.commands:
            commands[name] = f"{manifest.summary} (module {manifest.name})."
    return commands


class LapakGroup(click.Group):
    """Lapak's own commands; the others are the app's, looked up only when one is asked for."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # flask.cli.with_appcontext builds the app through the ScriptInfo it finds here.
        extra.setdefault(
            "obj",
            ScriptInfo(create_app=_load_app, set_debug_flag=False, load_dotenv_defaults=False),
        )
        return super().make_context(info_name, args, parent, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *(_other_commands() or {})})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        others = _other_commands()
        if others is not None and cmd_name not in others:
            return None
        return ctx.ensure_object(ScriptInfo).load_app().cli.get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)))
        rows = {name: command.get_short_help_str(limit) for name, command in self.commands.items()}
        rows.update(_other_commands() or {})
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows.items()))


@click.group(cls=LapakGroup)
def main() -> None:
    """Lapak, the marketplace back office."""


@main.command()
@click.option(
    "--host",
    envvar="LAPAK_HOST",
    default="127.0.0.1",
    show_default=True,
    show_envvar=True,
    help="Interface to listen on.",
)
@click.option(
    "--port", envvar="LAPAK_PORT", default=8000, show_default=True, show_envvar=True, type=int
)
@click.option(
    "--dev", is_flag=True, help="Werkzeug with reloader and debugger (never in production)."
)
@click.option(
    "--upgrade",
    is_flag=True,
    help="Bring the database to the newest revision first, when it is not (scripts/run).",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, dev: bool, upgrade: bool) -> None:
    """Serve the API (gunicorn; --dev for the development server)."""
    from app import migrate
    from app.serving import port_in_use, run_gunicorn

    # Before the app is built (and its warnings are logged): a taken port is all there is to say.
    if port_in_use(host, port):
        click.echo(f"lapak: port {port} in use on {host}: set LAPAK_PORT (or --port)", err=True)
        sys.exit(2)
    ctx.with_resource(ctx.ensure_object(ScriptInfo).load_app().app_context())
    settings = _settings()
    if not migrate.is_up_to_date(settings):
        if not upgrade:
            click.echo(
                "lapak: the database is not at the newest revision; run `lapak db upgrade`",
                err=True,
            )
            sys.exit(2)
        click.echo("lapak: bringing the database to the newest revision", err=True)
        migrate.upgrade(settings)
    click.echo(f"Lapak on http://{host}:{port}/  API docs: http://{host}:{port}/api/v1/docs")
    if dev:
        from werkzeug.serving import run_simple

        if settings.production:
            raise click.UsageError("--dev is refused in LAPAK_ENV=production")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        _start_embedded_ticker(app)
        app.debug = True
        # Werkzeug directly: Flask refuses app.run() inside its own CLI.
        run_simple(host, port, app, use_debugger=True, use_reloader=False, threaded=True)
        return

    def build() -> Flask:
        from app import create_app

        app = create_app()
        _start_embedded_ticker(app)
        return app

    run_gunicorn(settings, host, port, build)


@main.command()
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queue to work on (repeatable; default all).",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_appcontext
def worker(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (with its scheduler and the periodic jobs) inside the app."""
    from app.jobs import QUEUES, run_worker

    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise click.BadParameter(
            f"no queue {', '.join(unknown)}; the queues are {', '.join(QUEUES)}",
            param_hint="--queue",
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions["lapak.jobs"].embedded:
        raise click.UsageError("LAPAK_REDIS_URL is not set: without Redis, `lapak serve` runs jobs")
    run_worker(app, queues or QUEUES, burst=burst)


@main.command()
@with_appcontext
def demo() -> None:
    """Load demo data (each module adds its own) and print how to log in.

    Then the modules' history (:mod:`app.demo`): some weeks of orders, payments, refunds and
    payouts made through their services at past moments. Without Redis the jobs they queue
    (the outbox: the dashboard's figures) run at each moment; with Redis, `lapak worker` runs
    them. Best run before `lapak serve` starts. The history is played once, on a database with
    no orders or ledger postings yet: a second run changes nothing, and a run after an
    interrupted one says how to start over.
    """
    from app.demo import HistoryStarted, activity, before_history, play, recorded

    settings = _settings()
    # Before any module's step: the history backdates ledger postings, and demo users come with
    # printed passwords.
    if settings.production:
        raise click.ClickException("demo data is refused in LAPAK_ENV=production")
    start_over = _start_over(settings)
    earlier = recorded()
    if earlier is not None and earlier.interrupted:
        raise click.ClickException(
            f"an earlier `lapak demo` (started {earlier.started_at:%Y-%m-%d %H:%M} UTC) was "
            "interrupted while it played the history (unless it is still running), so this "
            "database holds part of it; it is not played again on top of that, and nothing was "
            f"changed. To have the whole demo, {start_over}"
        )
    if earlier is not None:
        assert earlier.finished_at is not None
        click.echo(
            f"The demo is already there (its history was played on "
            f"{earlier.finished_at:%Y-%m-%d}); nothing was changed. The demo users' passwords "
            f"are not shown again: `lapak users set-password EMAIL` sets a new one. For a fresh "
            f"demo, {start_over}"
        )
        return
    _warn_if_served()
    wiring = current_app.extensions["lapak.registry"].wiring
    jobs = current_app.extensions["lapak.jobs"]

    @contextlib.contextmanager
    def moment_jobs() -> Iterator[None]:
        """Without Redis: the jobs of a moment's steps run after them, at that moment."""
        with jobs.holding():
            yield
        jobs.wait_embedded()

    in_moment = moment_jobs if jobs.embedded else contextlib.nullcontext
    try:
        # The users, catalogue and keys, dated just before the history (they were there before
        # its first order), their jobs (the users' events) run then too.
        with before_history(), in_moment():
            for load_demo in wiring.demos:
                for line in load_demo():
                    click.echo(line)
        histories = [start() for start in wiring.demo_histories]
        found = activity(histories)
        if found:
            click.echo(
                f"Demo history: left out, as this database already has business history "
                f"({', '.join(found)}): the demo's, dated over the last weeks, would come before "
                f"it and take the ledger back in time. To have the whole demo, {start_over}"
            )
        else:
            try:
                play(histories, each_moment=in_moment)
            except HistoryStarted as started:
                raise click.ClickException(f"{started}; nothing more was changed.") from None
            for history in histories:
                for line in history.summary():
                    click.echo(line)
        if jobs.embedded:
            from app.events import dispatch_outbox

            # Whatever is still pending, so the screens show everything when the server starts.
            jobs.wait_embedded()
            dispatch_outbox()
    finally:
        # Also on Ctrl-C: a job thread started as the interrupt landed is known to no one but
        # its executor, and would keep the process from exiting until that is shut down.
        jobs.wait_embedded()


def _start_over(settings: Settings) -> str:
    """How to start the demo over: from an empty database (named when it is a file)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        empty = f"stop Lapak and move {url.database} aside (with its -wal and -shm files, if any)"
    else:  # its URL may hold a password: not printed
        empty = "point LAPAK_DATABASE_URL at a new, empty database"
    return f"start from an empty database: {empty}, then run `lapak db upgrade` and `lapak demo`."


def _warn_if_served() -> None:
    """Warn when something listens where `lapak serve` would (LAPAK_HOST, LAPAK_PORT): its
    periodic jobs would work on the history at today's time while the history is made."""
    import os

    from app.serving import port_in_use

    host = os.environ.get("LAPAK_HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("LAPAK_PORT", "8000"))
    except ValueError:
        return
    if port_in_use(host, port):
        click.echo(
            f"lapak demo: something listens on {host}:{port}; if it is `lapak serve` (or a "
            "`lapak worker` runs), its periodic jobs (hold releases, checkout expiry) run at "
            "today's time while the history is dated in the past. The history is best loaded "
            "before the server starts; going on.",
            err=True,
        )


@main.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command()
@click.argument("revision", default="head")
@with_appcontext
def upgrade(revision: str) -> None:
    """Bring the database to REVISION (default: head)."""
    _alembic().upgrade(_alembic_config(), revision)


@db.command()
@click.argument("revision", default="-1")
@with_appcontext
def downgrade(revision: str) -> None:
    """Step the database back to REVISION (default: one step; `base` for empty)."""
    _alembic().downgrade(_alembic_config(), revision)


@db.command()
@click.option("-m", "--message", required=True)
@with_appcontext
def revision(message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    _alembic().revision(_alembic_config(), message=message, autogenerate=True)


@db.command()
@with_appcontext
def current() -> None:
    """Show the database's revision."""
    _alembic().current(_alembic_config())


@db.command()
@with_appcontext
def check() -> None:
    """Fail when the models and the migrations disagree."""
    _alembic().check(_alembic_config())


@main.group()
def vault() -> None:
    """Secrets at rest: make a vault key, re-seal everything under the newest one."""


@vault.command("new-key")
def new_key() -> None:
    """Print a new random vault key (to prepend to LAPAK_VAULT_KEYS)."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode("ascii"))


@vault.command()
@click.option(
    "--batch-size",
    default=500,  # app.vault.ROTATE_BATCH_SIZE, not imported: `lapak --help` stays light
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows re-sealed per transaction.",
)
@with_appcontext
def rotate(batch_size: int) -> None:
    """Re-seal every stored secret under the newest key of LAPAK_VAULT_KEYS (resumable).

    Prints what it did per Sealed column; a value that no configured key opens is named by
    table, column and primary key, and makes the command exit 1 once the rest is done.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import Base, get_database
    from app.vault import ColumnRotation, VaultError, get_vault
    from app.vault import rotate as rotate_all

    unreadable = 0

    def report(outcome: ColumnRotation) -> None:
        nonlocal unreadable
        where = f"{outcome.table}.{outcome.column}"
        if outcome.missing:
            click.echo(f"{where}: no such table in the database (run `lapak db upgrade`)")
            return
        click.echo(
            f"{where}: {outcome.resealed} re-sealed, {outcome.current} already under the "
            f"newest key, {len(outcome.unreadable)} unreadable"
        )
        for key in outcome.unreadable:
            row = ", ".join(f"{name}={value}" for name, value in key.items())
            click.echo(f"lapak: {where} row {row}: no configured vault key opens it", err=True)
        unreadable += len(outcome.unreadable)

    tables = list(Base.metadata.tables.values())
    try:
        rotate_all(get_database().primary, get_vault(), tables, batch_size, on_column=report)
    except (SQLAlchemyError, VaultError) as error:
        # A VaultError's message is safe by design; of a database error only the class (its
        # driver message may quote a row). Committed batches are kept.
        why = str(error) if isinstance(error, VaultError) else type(error).__name__
        click.echo(
            f"lapak: vault rotate stopped ({why}); what it re-sealed so far is kept: run it "
            "again to resume",
            err=True,
        )
        sys.exit(1)
    if unreadable:
        click.echo(
            f"lapak: {unreadable} sealed value{'s' if unreadable != 1 else ''} no configured "
            "vault key opens (listed above): add the key that sealed them to LAPAK_VAULT_KEYS "
            "and run again",
            err=True,
        )
        sys.exit(1)


def _alembic() -> Any:
    from alembic import command

    return command


def _alembic_config() -> Any:
    from app.migrate import alembic_config

    return alembic_config(_settings())


def _start_embedded_ticker(app: Flask) -> None:
    from app.jobs import PeriodicTicker

    if app.extensions["lapak.jobs"].embedded:
        PeriodicTicker(app).start()


if __name__ == "__main__":
    main()
