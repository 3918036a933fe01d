"""Exactly-once results and API tokens: a frame identity on results (unique per station), a flag
for results whose MQTT message the broker has not acknowledged yet, station leases (one live
station per name) and hashed API tokens.

Revision ID: 0002_exactly_once_and_tokens
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from inspect_app.store.models import UTCDateTime

revision = "0002_exactly_once_and_tokens"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("frame_key", sa.String(512)))
        batch.add_column(sa.Column("publish_pending", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.create_index("uq_results_station_frame_key", ["station", "frame_key"], unique=True)
        batch.create_index("ix_results_publish_pending", ["station", "publish_pending"])

    op.create_table(
        "station_leases",
        sa.Column("station", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("station_leases")
    with op.batch_alter_table("results") as batch:
        batch.drop_index("ix_results_publish_pending")
        batch.drop_index("uq_results_station_frame_key")
        batch.drop_column("publish_pending")
        batch.drop_column("frame_key")
