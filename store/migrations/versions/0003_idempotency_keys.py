"""Remember each create sent with an `Idempotency-Key`, to answer its repeats alike.

A row per client key and idempotency key: the digest of the body it came with, and the user
it created as created (a repeat gets that, whatever happened to the user since). No foreign
key: a user deleted later is still what the key created. Rows older than the retention are
dropped (`created_at` is indexed for that).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(64), primary_key=True),  # the API key's digest, in hex
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("idempotency_keys_created_at", "idempotency_keys", ["created_at"])
