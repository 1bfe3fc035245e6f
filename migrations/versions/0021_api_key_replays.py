"""auth API-key replays: signatures of accepted signed requests, in the database

Revision ID: 0021
Revises: 0019
Create Date: 2026-11-29 16:00:00+00:00

``auth_api_replay`` holds one row per accepted signature (a digest of key id and signature)
until its timestamp leaves the window: the embedded default (several processes, no Redis) and
a Redis outage refuse a replay through its primary key. Expired rows are purged periodically.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_api_replay",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_auth_api_replay")),
    )
    op.create_index(
        op.f("ix_auth_api_replay_expires_at"), "auth_api_replay", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_api_replay_expires_at"), table_name="auth_api_replay")
    op.drop_table("auth_api_replay")
