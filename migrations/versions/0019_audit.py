"""audit: the stored API log and audit events

Revision ID: 0019
Revises: 0016
Create Date: 2026-11-29 15:40:00+00:00

``audit_request_log`` keeps one row per API request (route template, method, status, latency,
caller, IP, request id: never a body, query string or credential); ``audit_event`` one row per
authentication audit line. Both are append-only and purged after the retention period.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_request_log",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_request_log")),
    )
    # The listing's order and, covering status and latency, the health report's aggregates.
    op.create_index(
        "ix_audit_request_log_at_id",
        "audit_request_log",
        ["at", "id"],
        postgresql_include=["status", "latency_ms"],
    )
    op.create_index("ix_audit_request_log_user_at_id", "audit_request_log", ["user_id", "at", "id"])
    # A seller's view (their keys' calls) and the admin's API key filter.
    op.create_index(
        "ix_audit_request_log_user_key_at_id",
        "audit_request_log",
        ["user_id", "at", "id"],
        postgresql_where=sa.text("api_key_id IS NOT NULL"),
        sqlite_where=sa.text("api_key_id IS NOT NULL"),
    )
    op.create_index(
        "ix_audit_request_log_key_at_id", "audit_request_log", ["api_key_id", "at", "id"]
    )
    op.create_table(
        "audit_event",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index("ix_audit_event_at_id", "audit_event", ["at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_at_id", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index("ix_audit_request_log_key_at_id", table_name="audit_request_log")
    op.drop_index("ix_audit_request_log_user_key_at_id", table_name="audit_request_log")
    op.drop_index("ix_audit_request_log_user_at_id", table_name="audit_request_log")
    op.drop_index("ix_audit_request_log_at_id", table_name="audit_request_log")
    op.drop_table("audit_request_log")
