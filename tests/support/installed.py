"""The distribution as an operator gets it (the sdist and wheel built from this checkout, and the
wheel installed into a fresh virtual environment outside it), and as a contributor does
(`pip install -e .` in setuptools' default editable mode)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CHECKOUT = Path(__file__).resolve().parents[2]
VERSION = yaml.safe_load((CHECKOUT / "openapi" / "users.yaml").read_text())["info"]["version"]
"""The contract's version, which the package takes as its own (setup.py)."""


@dataclass
class Installed:
    wheel: Path
    """The wheel installed; for an editable install, the checkout."""
    users_api: Path
    """The `users-api` command of the fresh environment."""
    outside: Path
    """A folder outside the checkout, where each command runs."""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.users_api), *args],
            capture_output=True,
            text=True,
            cwd=self.outside,
            timeout=120,
        )


def build_and_install(root: Path) -> Installed:
    """The sdist and the wheel as the README builds them, `make dist` in a fresh clone (this
    checkout's files, committed or not, nothing it ignores); both checked by twine; the wheel
    installed into a new venv."""
    clone = fresh_clone(root / "clone")
    built = subprocess.run(["make", "dist"], cwd=clone, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    dist = clone / "dist"
    artifacts = sorted(str(path) for path in dist.iterdir())
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *artifacts], check=True)
    (wheel,) = dist.glob("*.whl")
    return Installed(wheel, *_install(root, str(wheel)))


def fresh_clone(into: Path) -> Path:
    """The files a clone of this checkout would hold if its changes were committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = CHECKOUT / name
        if source.is_file():  # not one deleted since the last commit
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def install_editable(root: Path) -> Installed:
    """The checkout installed as `pip install -e .` does by default: an import hook that maps
    `users_api` and its subpackages to the checkout's folders."""
    return Installed(CHECKOUT, *_install(root, "--editable", str(CHECKOUT)))


def _install(root: Path, *what: str) -> tuple[Path, Path]:
    """`what` pip-installed into a new venv; its `users-api`, and a folder outside the checkout."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", *what],
        check=True,
        capture_output=True,
    )
    outside = root / "elsewhere"
    outside.mkdir()
    return venv / "bin" / "users-api", outside
