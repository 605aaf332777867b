"""A TypeScript client: types that openapi-typescript generates from openapi/users.yaml, calls
made with openapi-fetch, compiled by `tsc --strict` and run by node against a real server.

Everything generated goes into a temporary folder: the types (`users-api.d.ts`), a tsconfig
that extends the committed tests/deployment/typescript/tsconfig.json and maps the module
`users-api` to them, and the compiled program, out/flow.mjs. A `node_modules` link there to the
checkout's lets the compiler and node find openapi-fetch and the Node types from that folder.
package.json pins the tools.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.api import API_KEY
from tests.support.servers import Server, serve
from users_api.app import SPEC

CHECKOUT = Path(__file__).resolve().parents[2]
NODE_MODULES = CHECKOUT / "node_modules"
TYPESCRIPT = CHECKOUT / "tests" / "deployment" / "typescript"

STEPS = [
    "list: 200",
    "create: 201",
    "get: 200",
    "put: 200",
    "put without username: 400",
    "put empty username: 400",
    "put unknown user: 404",
    'put If-Match "2": 200',
    'put stale If-Match "2": 412',
    'get If-None-Match "3": 304',
    "delete: 204",
    "get deleted user: 404",
]


@dataclass
class Build:
    folder: Path
    generated: subprocess.CompletedProcess[str]
    compiled: subprocess.CompletedProcess[str]


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def compile_with_strict(folder: Path, program: Path) -> subprocess.CompletedProcess[str]:
    """`tsc --strict` on `program` with the committed tsconfig's options and the generated
    types as the module `users-api`; the output goes to out/ (none if it fails)."""
    tsconfig = {
        "extends": str(TYPESCRIPT / "tsconfig.json"),
        "compilerOptions": {"paths": {"users-api": ["./users-api.d.ts"]}, "outDir": "out"},
        "files": [str(program)],
    }
    name = f"tsconfig.{program.stem}.json"
    (folder / name).write_text(json.dumps(tsconfig, indent=2))
    return run([NODE_MODULES / ".bin" / "tsc", "--strict", "--project", name], folder)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Generates the types and compiles tests/deployment/typescript/flow.mts, once for this module.

    openapi-typescript runs in the temporary folder, so it does not pick up the repo's
    redocly.yaml: that strict lint is `make lint-spec`'s, with its accepted findings.
    """
    folder = tmp_path_factory.mktemp("typescript")
    (folder / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    generated = run(
        [NODE_MODULES / ".bin" / "openapi-typescript", SPEC, "--output", "users-api.d.ts"], folder
    )
    return Build(folder, generated, compile_with_strict(folder, TYPESCRIPT / "flow.mts"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path, "--store", "memory://") as running:
        yield running


def test_the_types_generate_without_a_warning(build: Build) -> None:
    assert build.generated.returncode == 0, build.generated.stderr
    assert "⚠" not in build.generated.stdout + build.generated.stderr
    assert "export interface paths" in (build.folder / "users-api.d.ts").read_text()


def test_the_flow_compiles_under_strict(build: Build) -> None:
    """It asserts at the type level that each call's `error` is the spec's Problem, so this
    fails if openapi-fetch typed an error as `unknown` (or `any`)."""
    assert build.compiled.returncode == 0, build.compiled.stdout
    assert (build.folder / "out" / "flow.mjs").exists()


def test_an_error_read_as_the_wrong_type_does_not_compile(build: Build) -> None:
    """The check above can fail: a problem's `status` is a number, not `unknown` or `any`."""
    wrong = build.folder / "wrong.mts"
    wrong.write_text(
        'import createClient from "openapi-fetch";\n'
        'import type { paths } from "users-api";\n'
        'const api = createClient<paths>({ baseUrl: "http://127.0.0.1" });\n'
        'const got = await api.GET("/users/{user_id}", { params: { path: { user_id: 1 } } });\n'
        "const status: string | undefined = got.error?.status;\n"
        "console.log(status);\n"
    )
    result = compile_with_strict(build.folder, wrong)
    assert result.returncode != 0
    assert "wrong.mts(5," in result.stdout
    assert "Type 'number | undefined' is not assignable to type 'string | undefined'" in (
        result.stdout
    )


def test_the_flow_passes_every_step_against_a_live_server(build: Build, server: Server) -> None:
    """The key goes in the environment, not on the command line."""
    assert build.compiled.returncode == 0, build.compiled.stdout
    result = subprocess.run(
        ["node", str(build.folder / "out" / "flow.mjs"), server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "USERS_API_KEY": API_KEY},
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.partition(" (")[0] for line in lines] == STEPS, result.stdout
    assert result.stderr == ""
