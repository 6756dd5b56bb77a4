"""`warren_work` records a success that came after a cancel was asked for as `cancelled`

A job asked to cancel while it ran, whose handler returned before the worker's heartbeat
noticed the request, was recorded `completed`: the person who cancelled it had been told it
would end cancelled (CONTRACT.md, `DELETE /jobs/{id}`). A failure already honoured the request.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from service.store import sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql.FUNCTIONS)


def downgrade() -> None:
    """The earlier text is not restored: it differs only for a success after a cancel."""
