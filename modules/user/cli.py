"""``lapak users ...`` and the users of ``lapak demo``.

Passwords are asked with hidden input (twice) or read from one line of stdin, checked against
the same policy as the API, and never printed back.
"""

from __future__ import annotations

import secrets
import sys
from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from app.errors import DomainError, Invalid

from . import services
from .services import EmailTaken

DEMO_ADMIN_EMAIL = "admin@lapak.local"
#: Users without a password: give them an activation token to try the activation flow.
DEMO_USERS = (
    ("staff@lapak.local", "Sari Wulandari", "staff", "081234567801"),
    ("seller@lapak.local", "Toko Budi Makmur", "seller", "081234567802"),
    ("dewi@lapak.local", "Dewi Lestari", "customer", "081234567803"),
    ("agus@lapak.local", "Agus Santoso", "customer", None),
)


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
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("no password on stdin (give it as the first line)")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    try:
        user = services.create_user(email, name=name, role="admin", password=password)
    except EmailTaken as error:
        _fail(error.detail or error.title)
    except Invalid as error:
        _fail(_describe(error))
    click.echo(f"Created admin {user.email} (id {user.uuid}).")


def load_demo() -> list[str]:
    """Create the demo admin (with a fresh random password) and a few users without passwords.

    Idempotent: existing users are left alone, and an existing admin's password is neither
    reset nor printed. Refused in production, where a printed password is a leak.
    """
    if current_app.extensions["lapak.settings"].production:
        raise click.ClickException("demo users are refused in LAPAK_ENV=production")
    lines = []
    password = secrets.token_urlsafe(18)
    try:
        services.create_user(DEMO_ADMIN_EMAIL, name="Demo Admin", role="admin", password=password)
    except EmailTaken:
        lines.append(
            f"Admin {DEMO_ADMIN_EMAIL} already exists; its password was not changed "
            "(create another admin with `lapak users create-admin EMAIL`)."
        )
    else:
        lines.append(f"Admin login: {DEMO_ADMIN_EMAIL}  password: {password}")
        lines.append("Keep this password: it is shown only once.")
    created = []
    for email, name, role, phone in DEMO_USERS:
        try:
            services.create_user(email, name=name, role=role, phone=phone)
        except EmailTaken:
            continue
        created.append(f"{email} ({role})")
    if created:
        lines.append(
            f"Demo users without a password: {', '.join(created)}; an admin issues their "
            "activation tokens with POST /api/v1/users/{id}/activation."
        )
    return lines


def _describe(error: DomainError) -> str:
    if not error.errors:
        return error.detail or error.title
    return "; ".join(
        f"the {field} {message}" for field, messages in error.errors.items() for message in messages
    )


def _fail(message: str) -> NoReturn:
    click.echo(f"lapak: {message}", err=True)
    sys.exit(1)
