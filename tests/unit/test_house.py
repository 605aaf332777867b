"""The shape of the package: Connexion's internals reached from one module only (the layers
between the others are import-linter's contract in pyproject.toml, run by `make lint`)."""

from __future__ import annotations

import ast
from importlib.resources import files
from pathlib import Path

CONNEXION_INTERNALS = (
    "connexion.apps",
    "connexion.decorators",
    "connexion.operations",
    "connexion.middleware.abstract",
    "connexion.utils",
    "connexion.datastructures",
)
ADAPTER = "connexion_adapter.py"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
    return names


def test_only_the_adapter_imports_connexions_internals() -> None:
    # Listed apart: an editable install maps each to a folder of its own.
    folders = [Path(str(files(f"users_api{part}"))) for part in ("", ".handlers", ".store")]
    modules = {path for folder in folders for path in folder.rglob("*.py")}
    modules = {path for path in modules if path.name != ADAPTER}
    assert len(modules) > 20, f"found too few modules under {folders}"
    reaching = {
        f"{path}: {name}"
        for path in modules
        for name in _imported(path)
        if name.startswith(CONNEXION_INTERNALS)
    }
    assert not reaching, f"Connexion's internals imported outside {ADAPTER}: {sorted(reaching)}"


def test_the_adapter_is_where_the_internals_are() -> None:
    """The check above looks at the right files: the adapter itself reaches in."""
    adapter = Path(str(files("users_api"))) / ADAPTER
    assert any(name.startswith(CONNEXION_INTERNALS) for name in _imported(adapter))
