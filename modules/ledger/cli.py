"""``lapak ledger verify`` and ``lapak ledger backfill``."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from app.db import close_session

from .registry import registry
from .verify import verify as verify_ledger


@click.group()
def ledger() -> None:
    """The double-entry ledger."""


@ledger.command()
@with_appcontext
def verify() -> None:
    """Recompute every sum, running balance and the hash chain; exit 1 naming the first bad row."""
    report = verify_ledger()
    click.echo(
        f"{report.transactions} transactions, {report.entries} entries, "
        f"{report.accounts} accounts checked"
    )
    click.echo(
        f"unbalanced transactions: {report.unbalanced}; malformed entries: "
        f"{report.malformed_entries}; running-balance mismatches: {report.balance_mismatches}; "
        f"negative holder balances: {report.negative_balances}; chain breaks: "
        f"{report.chain_breaks}; cached-balance mismatches: {report.cached_mismatches}; "
        f"accounts not as the chart says: {report.account_mismatches}"
    )
    if not report.ok:
        click.echo(f"first bad row: {report.first_problem}", err=True)
        for problem in report.problems[1:]:
            click.echo(f"  also: {problem}", err=True)
        sys.exit(1)
    click.echo("the ledger is consistent")


@ledger.command()
@with_appcontext
def backfill() -> None:
    """Post what happened before the ledger existed (invoices, payments...), once.

    Safe to run again: what is already posted is skipped (each posting's nonce is its cause).
    """
    sources = registry().backfills
    if not sources:
        click.echo("no module has history to post")
        return
    for module, run in sources:
        try:
            posted = run()
        finally:
            close_session()
        click.echo(f"{module}: {posted} transaction(s) posted")
