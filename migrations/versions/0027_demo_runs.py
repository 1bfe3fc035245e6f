"""core: lapak demo's history, recorded when it starts and when it is played whole

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02 09:00:00+00:00

``core_demo_run`` holds at most one row (id 1): when ``lapak demo`` started playing its history
on this database, its first moment, and when it finished (null while it plays, and for good when
that run was interrupted). A database that has the row gets no history again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_demo_run",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_moment", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_demo_run")),
    )


def downgrade() -> None:
    op.drop_table("core_demo_run")
