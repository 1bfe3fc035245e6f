"""``lapak dashboard rebuild``."""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import with_appcontext

from .rollups import LOCK_TIMEOUT, RebuildBusy
from .rollups import rebuild as rebuild_rollups


@click.group()
def dashboard() -> None:
    """The dashboard's rollups."""


@dashboard.command()
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.001),
    default=LOCK_TIMEOUT.total_seconds(),
    show_default=True,
    help="Seconds to wait for the subscribers' writes before the swap gives up.",
)
@with_appcontext
def rebuild(lock_timeout: float) -> None:
    """Count every payment, transaction and refund again into the rollups (one transaction).

    The facts are counted first without holding up the subscribers, then swapped in under a
    short lock (see the README's Dashboard section). Run once on a database that had payments
    before the dashboard module (migration 0023), or whenever the rollups are in doubt; safe
    while the app runs. Also repairs the sellers' payments index (``dashboard_seller_payment``,
    kept by database triggers) if a write bypassed them.
    """
    try:
        rebuilt = rebuild_rollups(timedelta(seconds=lock_timeout))
    except RebuildBusy as busy:
        raise click.ClickException(str(busy)) from busy
    click.echo(
        f"{rebuilt.facts} facts counted into the dashboard's rollups "
        f"({rebuilt.meanwhile} by the subscribers meanwhile, {rebuilt.dropped} stale keys "
        f"dropped); tables locked {rebuilt.locked_s:.3f} s of {rebuilt.total_s:.1f} s"
    )
    if rebuilt.repaired is not None:
        repaired = rebuilt.repaired
        click.echo(
            f"sellers' payments: {repaired.inserted} missing rows inserted, {repaired.deleted} "
            f"wrong rows deleted, {repaired.retimed} times fixed"
        )
