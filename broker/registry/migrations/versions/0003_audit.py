"""The audit: releases to services (with their school codes) and admin changes; append-only.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "audit_releases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(1024), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("released", sa.Text, nullable=False),
        sa.Column("subject_ref", sa.String(32), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_releases_service_at", "audit_releases", ["service", "at"])
    op.create_index("ix_audit_releases_at", "audit_releases", ["at"])
    op.create_table(
        "audit_release_schools",
        sa.Column("release_id", sa.String(32), primary_key=True),
        sa.Column("school", sa.String(32), primary_key=True),
        sa.Column("service", sa.String(1024), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_release_schools_school_service_at", "audit_release_schools",
                    ["school", "service", "at"])
    op.create_index("ix_audit_release_schools_school_at", "audit_release_schools", ["school", "at"])
    op.create_table(
        "audit_admin",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("documents", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_audit_admin_at", "audit_admin", ["at"])
    op.create_index("ix_audit_admin_tenant_at", "audit_admin", ["tenant", "at"])


def downgrade() -> None:
    op.drop_table("audit_admin")
    op.drop_table("audit_release_schools")
    op.drop_table("audit_releases")
