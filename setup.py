"""The package's version is the contract's: `info.version` in openapi/users.yaml."""

import re
from pathlib import Path

from setuptools import setup

SPEC = Path(__file__).parent / "openapi" / "users.yaml"
setup(version=re.search(r"^  version: (\S+)$", SPEC.read_text(), re.MULTILINE)[1])  # type: ignore[index]
