"""Create the users table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        # SQLite never reuses an id only for an INTEGER PRIMARY KEY AUTOINCREMENT.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),  # what the ETag is made from
        sqlite_autoincrement=True,
    )
    op.create_index(
        "users_username_lower_key", "users", [sa.func.lower(sa.column("username"))], unique=True
    )
