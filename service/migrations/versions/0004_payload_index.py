"""jobs_payload_idx: a GIN index for GET /jobs?payload.<field>=<value>

`jsonb_path_ops` indexes only containment (`@>`), which is all the filter uses, and is a
fraction of the default operator class's size.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX jobs_payload_idx ON jobs USING gin (payload jsonb_path_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX jobs_payload_idx")
