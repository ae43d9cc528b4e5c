"""Helpers of the bad-input corpus: run the console script in this process, mirror a dataset cheaply, and
fingerprint a folder so that a test can assert that a refused command wrote nothing."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from eeg2image.cli import main
from eeg2image.io import LOCK_NAME


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``eeg2image ARGS`` as the console script runs it: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def mirror(src: Path, dst: Path, *, copy: tuple[str, ...] = ()) -> Path:
    """``dst``: the tree of ``src`` with every file a symbolic link to the original (cheap, and the original
    cannot be damaged through it: tests replace a link before writing), except the files or folders in ``copy``
    (relative paths), which are real copies."""
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        target = dst / rel
        if any(str(rel) == c or str(rel).startswith(c + "/") for c in copy):
            if p.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, target)
        elif p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(p)
    return dst


def unlink_for_writing(path: Path) -> Path:
    """Replace a mirrored link by nothing, so that the test writes a file of its own there."""
    if path.is_symlink():
        path.unlink()
    return path


def fingerprint(root: Path) -> dict[str, str]:
    """Every file below ``root`` (links as their target path) with its content hash; the folder lock (a file the
    lock library keeps, empty) is left out: it is the one trace a refused command may leave."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name.startswith(LOCK_NAME) or p.is_dir():
            continue
        rel = str(p.relative_to(root))
        out[rel] = f"link:{p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_refused(code: int, err: str, named: str, before: dict[str, str], after: dict[str, str]) -> None:
    """Exit status 2, one line on stderr that matches ``named`` (the file or key, and what was expected), no
    traceback, and no file written or changed."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(named, lines[0]), (named, lines[0])
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:6]


def as_sets(items: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [x for s in items for x in ("--set", s)]
