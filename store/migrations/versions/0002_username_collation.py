"""Compare usernames in the "C" collation on PostgreSQL, whatever the database's default.

The unique index on lower(username) is what makes names unique ignoring case, and lower()
follows the collation: under a Turkish one, lower('IVAN') has a dotless i, so 'IVAN' and 'ivan'
would both be taken while the service, lowering in Python, calls them one name. In "C",
lower() maps A-Z to a-z only, as Python does for the ASCII names the spec allows. Changing
the column's collation rebuilds the index in it. SQLite's lower() is ASCII-only already.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from users_api.store import MigrationRefused

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    database = op.get_bind()
    if database.dialect.name == "postgresql":
        # The default collation may have let in names that are one name in "C".
        clashes = database.execute(
            sa.text(
                "SELECT string_agg(username, ' and ' ORDER BY id) FROM users "
                'GROUP BY lower(username COLLATE "C") HAVING count(*) > 1 LIMIT 5'
            )
        ).scalars()
        if found := list(clashes):
            raise MigrationRefused(
                f"usernames that differ only in case: {'; '.join(found)}. Rename all but one "
                "of each, then migrate again"
            )
        op.alter_column(
            "users",
            "username",
            type_=sa.String(64, collation="C"),
            existing_type=sa.String(64),
            existing_nullable=False,
        )
