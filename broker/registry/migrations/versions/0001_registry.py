"""The versioned registry: content blobs, versions, their changes, the active state and its head.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "registry_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("base_seq", sa.Integer, nullable=False),
        sa.Column("activated_seq", sa.Integer, nullable=True, unique=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_by", sa.String(200), nullable=True),
        sa.Column("restores", sa.Integer, nullable=True),
        sa.Column("report", sa.Text, nullable=True),
    )
    op.create_table(
        "registry_changes",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("before_sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=True),
        sa.Column("after_sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=True),
    )
    op.create_index("registry_changes_by_key", "registry_changes", ["kind", "key"])
    op.create_table(
        "registry_current",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("registry_blobs.sha256"), nullable=False),
    )
    head = op.create_table(
        "registry_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("version_id", sa.Integer, nullable=True),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "version_id": None}])


def downgrade() -> None:
    for table in ("registry_head", "registry_current", "registry_changes", "registry_versions", "registry_blobs"):
        op.drop_table(table)
