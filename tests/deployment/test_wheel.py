"""The installed wheel (tests/support/installed.py): what it holds, and every command run from
outside the checkout."""

from __future__ import annotations

import subprocess
import zipfile
from contextlib import nullcontext
from pathlib import Path

import httpx
import pytest

from tests.support.api import AUTH
from tests.support.installed import CHECKOUT, VERSION, Installed, install_editable
from tests.support.servers import assert_the_seeds_put_answers_200_400_and_404, serve
from tests.support.stores import postgres_schema
from users_api.store.migrations import head


def test_the_wheel_holds_one_namespace_with_the_spec_and_the_migrations(
    installed: Installed,
) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    # The spec alone: its released copies (openapi/released/) are the repo's, for the tests.
    assert [name for name in names if "/openapi/" in name and not name.endswith(".py")] == [
        "users_api/openapi/users.yaml"
    ]
    assert "users_api/store/migrations/env.py" in names
    assert "users_api/store/migrations/versions/0001_create_users.py" in names
    assert "users_api/handlers/users.py" in names
    assert "users_api/py.typed" in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"users_api", f"users_api-{VERSION}.dist-info"}
    packaged = installed.users_api.parent.parent / "lib"
    (spec,) = packaged.glob("python3*/site-packages/users_api/openapi/users.yaml")
    assert spec.read_text() == (CHECKOUT / "openapi" / "users.yaml").read_text()


def test_version_is_the_contracts_and_the_package_ships_no_second_http_client(
    installed: Installed,
) -> None:
    result = installed.run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"users-api, version {VERSION}")
    pip = installed.users_api.parent / "pip"
    listed = subprocess.run([pip, "list", "--format=freeze"], capture_output=True, text=True)
    assert "httpx2" not in listed.stdout.lower()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_installed_service_serves_the_contract(
    installed: Installed, tmp_path: Path, backend: str
) -> None:
    with (
        postgres_schema()
        if backend == "postgresql"
        else nullcontext(f"sqlite:///{tmp_path / 'users.db'}") as store,
        serve(
            tmp_path,
            "--store",
            store,
            command=[str(installed.users_api)],
            cwd=installed.outside,
        ) as server,
    ):
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "ok"}
        assert_the_seeds_put_answers_200_400_and_404(server)
        served = httpx.get(f"{server.url}/openapi.yaml").text
        assert served == (CHECKOUT / "openapi" / "users.yaml").read_text()
        assert httpx.get(f"{server.url}/ui/").status_code == 200


def test_an_editable_install_serves_from_any_folder(tmp_path: Path) -> None:
    editable = install_editable(tmp_path / "editable")
    with serve(tmp_path, command=[str(editable.users_api)], cwd=editable.outside) as server:
        assert_the_seeds_put_answers_200_400_and_404(server)
        served = httpx.get(f"{server.url}/openapi.yaml").text
        assert served == (CHECKOUT / "openapi" / "users.yaml").read_text()


def test_migrate_export_and_import_from_any_folder_round_trip_every_user(
    installed: Installed, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with serve(
        tmp_path, "--store", source, command=[str(installed.users_api)], cwd=installed.outside
    ) as server:
        for name in ("cosmo", "elaine", "george"):
            httpx.post(f"{server.url}/users", json={"username": name}, headers=AUTH)
    exported, again = tmp_path / "users.jsonl", tmp_path / "again.jsonl"
    with postgres_schema() as target:
        # The installed migrations bring the target to its head (tests/app/test_cli.py has the
        # commands' behaviour; this is what the wheel ships for them, run from outside).
        migrated = installed.run("migrate", "--store", target)
        assert migrated.returncode == 0, migrated.stderr
        assert f"The database is at schema revision {head()}." in migrated.stderr
        steps = [
            ("export", "--store", source, str(exported)),
            ("import", "--store", target, str(exported)),
            ("export", "--store", target, str(again)),
        ]
        said = []
        for step in steps:
            result = installed.run(*step)
            assert result.returncode == 0, result.stderr
            said.append(result.stderr.strip())
    assert said[1] == f"Imported 3 users from {exported}."
    assert again.read_text() == exported.read_text()
    assert exported.read_text().splitlines()[3:] == ['{"last_id": 3}']
