"""A Hugging Face hub cache written by hand, in the layout huggingface_hub writes, for the loaders' real paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def fake_hf_cache(root: Path, repo: str, files: dict[str, bytes | Callable[[Path], object]]) -> None:
    """``models--org--name/{refs/main, snapshots/<sha>/<file>}`` under ``root``; each file given as its bytes or
    as a function that writes it to the path it is given."""
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(SNAPSHOT)
    for name, content in files.items():
        path = base / "snapshots" / SNAPSHOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path)
