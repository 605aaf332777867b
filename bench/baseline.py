"""The service as an earlier commit built it, to measure side by side with this checkout.

`--baseline REF` installs REF's tree (`git archive`) into a virtual environment of its own under
`bench/.baseline/<commit>/`, once, with the bench's peers pinned to what this checkout runs, and
adds a `baseline-` twin of each project variant, started from that tree.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from bench.servers import ROOT, Variant

CACHE = ROOT / "bench" / ".baseline"


def twins(ref: str, variants: list[Variant]) -> list[Variant]:
    """A `baseline-` twin of each project variant, run from REF's tree."""
    tree = install(ref)
    return [
        dataclasses.replace(
            variant, name=f"baseline-{variant.name}", root=tree, bin=tree / "venv" / "bin"
        )
        for variant in variants
        if not variant.peer
    ]


def install(ref: str) -> Path:
    """REF's tree with its own environment; made once per commit."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    tree = CACHE / commit
    if (tree / "venv" / ".installed").exists():
        return tree
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(tree / "venv")], check=True)
    pinned = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude", "users-api"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (tree / "constraints.txt").write_text(pinned)
    pip = [str(tree / "venv" / "bin" / "pip"), "install", "--quiet", "-c", "constraints.txt"]
    subprocess.run([*pip, ".[bench]"], cwd=tree, check=True)
    (tree / "venv" / ".installed").touch()
    return tree


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
