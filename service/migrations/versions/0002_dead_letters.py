"""dead_letters: the DLQ inspector's table

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", UUID(as_uuid=True)),
        sa.Column("type", sa.Text),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("message", JSONB, nullable=False),
        sa.Column("x_death", JSONB),
        sa.Column("error", JSONB, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "dead_letters_job_idx",
        "dead_letters",
        ["job_id"],
        unique=True,
        postgresql_where=sa.text("job_id IS NOT NULL"),
    )
    op.create_index(
        "dead_letters_fingerprint_idx", "dead_letters", ["fingerprint", sa.text("id DESC")]
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
