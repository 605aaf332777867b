"""The benchmark's servers start as it starts them and answer each of its scenarios.

Nothing here measures a time: `make bench` does that, and only when asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fill import write_users_file
from bench.servers import Data, all_variants, check_answers, running
from tests.support.stores import POSTGRES_URL

VARIANTS = {variant.name: variant for variant in all_variants()}


@pytest.mark.parametrize(
    "name",
    [
        "flask-memory-1w",
        "async-sqlite-normal-1w",
        "fastapi",
        "stock-connexion",
        "seed-flask",
        "floor-flask",
        "floor-async",
        "floor-async-def",
        "async-postgres-1w",
        "fastapi-asyncpg",
        "flask-psycopg",
        "floor-asyncpg",
    ],
)
def test_a_bench_server_starts_filled_and_answers_its_scenarios(tmp_path: Path, name: str) -> None:
    users_file = tmp_path / "users.jsonl"
    write_users_file(users_file, 50)
    variant = VARIANTS[name]
    data = Data(tmp_path, users_file, POSTGRES_URL, pool_size=3)
    try:
        with running(variant, data, tmp_path) as server:
            check_answers(server, list(variant.scenarios))
    finally:
        data.drop()  # the PostgreSQL variants' schema
