"""``lapak users ...`` and the users of ``lapak demo``.

Passwords are asked with hidden input (twice) or read from one line of stdin, checked against
the same policy as the API, and never printed back.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from app.db import Session
from app.errors import DomainError, Invalid

from . import services
from .csvfile import ENCODINGS
from .importer import process
from .imports import ImportOptions, create_import, first_errors, get_import, hint
from .models import IMPORT_MODES, ROLES, ImportJob
from .services import EmailTaken


@click.group()
def users() -> None:
    """Manage users."""


@users.command("create-admin")
@click.argument("email")
@click.option("--name", default="", help="The admin's full name.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of asking for it.",
)
@with_appcontext
def create_admin(email: str, name: str, password_stdin: bool) -> None:
    """Create an admin who can log in with EMAIL and a password (asked twice, hidden)."""
    password = _read_password(password_stdin)
    try:
        user = services.create_user(email, name=name, role="admin", password=password)
    except EmailTaken as error:
        _fail(error.detail or error.title)
    except Invalid as error:
        _fail(_describe(error))
    click.echo(f"Created admin {user.email} (id {user.uuid}).")


@users.command("set-password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of asking for it.",
)
@with_appcontext
def set_password(email: str, password_stdin: bool) -> None:
    """Set the password of the user with EMAIL (asked twice, hidden); ends their sessions.

    An imported user without a password is activated by it.
    """
    password = _read_password(password_stdin)
    try:
        user, activated = services.reset_password(email, password)
    except Invalid as error:
        _fail(_describe(error))
    except DomainError as error:
        _fail(error.detail or error.title)
    current_app.extensions["lapak.jobs"].wait_embedded()  # without Redis: sessions end now
    click.echo(
        f"Password of {user.email} set"
        + ("; the user is activated." if activated else "; their sessions are ended.")
    )
    if not user.active:
        click.echo(
            f"{user.email} is deactivated: reactivate with PATCH /api/v1/users/{user.uuid} "
            '{"active": true} before they can log in.'
        )


@users.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mode", type=click.Choice(IMPORT_MODES), default="create", show_default=True)
@click.option("--dry-run", is_flag=True, help="Check and count everything, write nothing.")
@click.option("--default-role", type=click.Choice(ROLES), default="customer", show_default=True)
@click.option(
    "--encoding",
    type=click.Choice(ENCODINGS),
    default=None,
    help="Force an encoding (default: detected).",
)
@with_appcontext
def import_users(
    file: Path, mode: str, dry_run: bool, default_role: str, encoding: str | None
) -> None:
    """Import users from FILE now, in this process, with a progress bar."""
    options = ImportOptions(
        mode=mode, dry_run=dry_run, default_role=default_role, encoding=encoding
    )
    try:
        with file.open("rb") as upload:
            job = create_import(upload, file.name, options, created_by_id=None, queue=False)
    except DomainError as error:
        _fail(_describe(error))
    with click.progressbar(length=job.total_rows, label=f"Importing {file.name}") as bar:
        done = 0

        def advance(progress: ImportJob) -> None:
            nonlocal done
            bar.update(progress.processed_rows - done)
            done = progress.processed_rows

        process(job.id, on_progress=advance)
    Session.remove()
    job = get_import(job.uuid)
    click.echo(
        f"{job.status}: {job.created} created, {job.updated} updated, {job.skipped} skipped, "
        f"{job.failed} failed of {job.total_rows} rows" + (" (dry run)" if job.dry_run else "")
    )
    for error in first_errors(job):
        click.echo(f"  row {error.row_number}: {error.column or 'row'}: {error.message}")
    if advice := hint(job, upsert="--mode upsert"):
        click.echo(f"  {advice}")
    if job.error:
        click.echo(f"  {job.error}", err=True)
    if job.status == "failed":
        sys.exit(1)


def _read_password(from_stdin: bool) -> str:
    """The first line of stdin, or a hidden prompt answered twice."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("no password on stdin (give it as the first line)")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


def _describe(error: DomainError) -> str:
    if not error.errors:
        return error.detail or error.title
    return "; ".join(
        f"the {field} {message}" for field, messages in error.errors.items() for message in messages
    )


def _fail(message: str) -> NoReturn:
    click.echo(f"lapak: {message}", err=True)
    sys.exit(1)
