"""The CPU allocator setting: on where glibc is, off when asked, and harmless elsewhere."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CODE = "from eeg2image.allocator import keep_freed_memory as k; print(k(), k())"


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "EEG2IMAGE_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["EEG2IMAGE_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_glibc_keeps_freed_memory_unless_told_not_to():
    assert _run(None).split() == ["True", "True"]  # in effect, and idempotent
    assert _run("0").split() == ["False", "False"]
