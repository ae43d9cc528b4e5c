"""Imports follow the data flow: training never reaches the test reader (evaluation)."""

from __future__ import annotations

import ast
from pathlib import Path

import eeg2image

PKG = Path(eeg2image.__file__).parent


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_training_and_upstream_stages_never_import_evaluation():
    for stage in ("data", "features", "models", "training"):
        for path in (PKG / stage).glob("*.py"):
            bad = [m for m in imported_modules(path) if "evaluation" in m.split(".")]
            assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_the_scan_sees_imports():  # the check above would pass vacuously if the scan found nothing
    assert "..evaluation.evaluate" in imported_modules(PKG / "demo.py") or any(
        "evaluation" in m for m in imported_modules(PKG / "cli.py")
    )
