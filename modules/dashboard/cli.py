"""``lapak dashboard rebuild``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .rollups import rebuild as rebuild_rollups


@click.group()
def dashboard() -> None:
    """The dashboard's rollups."""


@dashboard.command()
@with_appcontext
def rebuild() -> None:
    """Count every payment, transaction and refund again into the rollups (one transaction).

    Run once on a database that had payments before the dashboard module (migration 0023),
    or whenever the rollups are in doubt; safe while the app runs.
    """
    counted = rebuild_rollups()
    click.echo(f"{counted} facts counted into the dashboard's rollups")
