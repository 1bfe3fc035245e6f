"""user import row error codes, and the count of rows naming existing users

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 00:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("existing", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("user_import_error", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_import_error", schema=None) as batch_op:
        batch_op.drop_column("code")
    with op.batch_alter_table("user_import_job", schema=None) as batch_op:
        batch_op.drop_column("existing")
