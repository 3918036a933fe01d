"""Initial schema: results, feedback, users, audit log, settings, station status, alarms.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from inspect_app.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("station", sa.String(128), nullable=False),
        sa.Column("product", sa.String(64)),
        sa.Column("profile_version", sa.String(64)),
        sa.Column("mode", sa.String(32)),
        sa.Column("lot", sa.String(128)),
        sa.Column("file", sa.Text),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("raw_score", sa.Float),
        sa.Column("regions", sa.JSON, nullable=False),
        sa.Column("timings_ms", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("explanation", sa.Text),
        sa.Column("explanation_source", sa.String(64)),
        sa.Column("image_path", sa.Text),
        sa.Column("overlay_path", sa.Text),
        sa.Column("image_bytes", sa.Integer),
    )
    op.create_index("ix_results_product_time", "results", ["product", "time"])
    op.create_index("ix_results_time", "results", ["time"])
    op.create_index("ix_results_verdict", "results", ["verdict"])
    op.create_index("ix_results_lot", "results", ["lot"])
    op.create_index("ix_results_image_path", "results", ["image_path"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
    )
    op.create_index("ix_feedback_result_id", "feedback", ["result_id"])

    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("detail", sa.JSON),
    )
    op.create_index("ix_audit_log_time", "audit_log", ["time"])

    op.create_table(
        "settings",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )

    op.create_table(
        "station_status",
        sa.Column("station", sa.String(128), primary_key=True),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )

    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("station", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_alarms_time", "alarms", ["time"])


def downgrade() -> None:
    for table in ("alarms", "station_status", "settings", "audit_log", "users", "feedback", "results"):
        op.drop_table(table)
