"""Imports run down the data flow (../shared/design.md, docs/architecture.md):

    data -> features -> models -> {training, evaluation, generation};  runs.py and datasets.py sit under the three

``training``, ``evaluation`` and ``generation`` stand side by side and never import each other; only the
pipeline, the demo and the CLI chain them. Above all, nothing in training reaches the test reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eeg2image

PKG = Path(eeg2image.__file__).parent
TOP = ("training", "evaluation", "generation", "pipeline", "demo", "cli")

# layer (a sub-package or a top-level module) -> what it must never import
FORBIDDEN = {
    "data": ("features", "models", "datasets", "runs", *TOP),
    "features": ("models", "datasets", "runs", *TOP),
    "models": ("datasets", "runs", *TOP),
    "datasets": ("models", "runs", *TOP),
    "runs": TOP,
    "training": ("evaluation", "generation", "pipeline", "demo", "cli"),
    "evaluation": ("training", "generation", "pipeline", "demo", "cli"),
    "generation": ("training", "evaluation", "pipeline", "demo", "cli"),
    "config": ("data", "features", "models", "datasets", "runs", *TOP),
    "io": ("config", "data", "features", "models", "datasets", "runs", *TOP),
    "allocator": ("io", "config", "data", "features", "models", "datasets", "runs", *TOP),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved; ``from x import y`` gives
    both ``x`` and ``x.y``), at any depth of the file (function-level imports included)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "eeg2image" else None


def files_of(layer: str) -> list[Path]:
    folder = PKG / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PKG / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_run_down_the_data_flow(layer):
    files = [p for p in files_of(layer) if p.is_file()]
    if layer != "generation":
        assert files, layer
    for path in files:
        bad = sorted(m for m in imported_modules(path) if layer_of(m) in FORBIDDEN[layer])
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_the_scan_sees_imports():
    """The rules above would pass vacuously if the scan found nothing: it resolves relative imports at every
    depth, so the pipeline is seen importing training and evaluation, and training seen importing models."""
    assert {"eeg2image.training.run", "eeg2image.evaluation.evaluate"} <= imported_modules(PKG / "pipeline.py")
    assert "eeg2image.models.retrieval" in imported_modules(PKG / "training" / "trainer.py")
    assert "eeg2image.data.things_eeg2" in imported_modules(PKG / "data" / "preprocess.py")
    assert layer_of("eeg2image.evaluation.evaluate") == "evaluation" and layer_of("numpy") is None
