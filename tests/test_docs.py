"""The documents that name tests name tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_REFERENCE = re.compile(r"`((?:[a-z_]+/)+test_[a-z0-9_]+\.py)(?:::(test_[a-z0-9_]+))?`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def test_security_checklist_names_real_tests() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    references = _REFERENCE.findall(text)
    assert len(references) > 40
    for file, name in references:
        path = ROOT / "tests" / file
        assert path.exists(), f"docs/security.md names {file}, which does not exist"
        if name:
            assert name in _tests_in(path), f"docs/security.md names {file}::{name}"
