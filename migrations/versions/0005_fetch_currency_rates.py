"""fetch currency rates

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fetch_currency_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("rate_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetch_currency_rate")),
        sa.UniqueConstraint(
            "base",
            "quote",
            "rate_date",
            "source",
            name=op.f("uq_fetch_currency_rate_base_quote_rate_date_source"),
        ),
    )


def downgrade() -> None:
    op.drop_table("fetch_currency_rate")
