"""The progress bar: drawn on a terminal for long runs, absent from pipes and logs."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from ckptfix.progress import MIN_FILES
from tests.cli.conftest import BAD, CLEAN, REPO


def _tree(root: Path, count: int) -> None:
    for i in range(count):
        (root / f"m{i:03d}.py").write_text(BAD if i == 0 else CLEAN)


def _run_with_terminal_stderr(cwd: Path, *args: str) -> tuple[int, str, str]:
    """stderr on a pseudo-terminal, stdout on a pipe, as in `ckptfix check | less`."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckptfix", "check", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(timeout=60)
    os.close(leader)
    return code, stdout.decode(), b"".join(chunks).decode()


def test_bar_on_a_terminal_for_a_long_run(tmp_path: Path) -> None:
    _tree(tmp_path, MIN_FILES + 10)
    code, stdout, stderr = _run_with_terminal_stderr(tmp_path)
    assert code == 1
    assert f"{MIN_FILES + 10}/{MIN_FILES + 10} files" in stderr
    assert "files" not in stdout and "\r" not in stdout  # data stays clean


def test_no_bar_for_a_short_run_or_when_quiet(tmp_path: Path) -> None:
    _tree(tmp_path, MIN_FILES + 10)
    assert "/" not in _run_with_terminal_stderr(tmp_path, "-q")[2]
    assert "/" not in _run_with_terminal_stderr(tmp_path, "m000.py", "m001.py")[2]


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    _tree(tmp_path, MIN_FILES + 10)
    result = subprocess.run(
        [sys.executable, "-m", "ckptfix", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 1
    assert "\r" not in result.stderr and " files" not in result.stderr.split("Found")[0]
