"""Helpers for CLI tests: run the real console entry point in a subprocess, in a scratch tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The canonical finding: a save every rank runs, in a module that initialises the process group.
# The real analysis may report more codes on it; tests assert on CKP001 and on formats, not the full list.
BAD = """import torch
import torch.distributed as dist

dist.init_process_group("gloo")
model = torch.nn.Linear(4, 4)
torch.save(model.state_dict(), "ckpt.pt")
"""

# No torch at all: nothing to find, and the prefilter should rule it out without parsing.
CLEAN = '''def add(a, b):
    """Add two numbers."""
    return a + b
'''


def run_cli(
    *args: str, cwd: Path, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m ckptfix ARGS` as a user would run it; stdout and stderr kept apart."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ckptfix", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
        text=input is None,
    )


def finding_codes(stdout: str) -> list[str]:
    """CODEs of `path:line:col: CODE message` lines."""
    return [line.split(": ", 1)[1].split(" ", 1)[0] for line in stdout.splitlines() if ": CKP" in line]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch project: one file with the canonical finding and one clean file."""
    (tmp_path / "train.py").write_text(BAD)
    (tmp_path / "util.py").write_text(CLEAN)
    return tmp_path
