"""atomic_save: the file at the path is always the previous checkpoint or the new one, never a torso."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ckptfix.runtime import atomic_save
from fixtures.full_disk import full_disk


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("as_path", [str, Path])
def test_saves_like_torch_save(tmp_path, as_path):
    state = {"w": torch.arange(5.0), "step": 7}
    atomic_save(state, as_path(tmp_path / "c.pt"))
    loaded = torch.load(tmp_path / "c.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7
    assert _entries(tmp_path) == ["c.pt"]


def test_passes_torch_save_keyword_arguments(tmp_path):
    atomic_save({"a": 1}, tmp_path / "c.pt", pickle_protocol=2, _use_new_zipfile_serialization=False)
    with open(tmp_path / "c.pt", "rb") as handle:
        assert not handle.read(4).startswith(b"PK")  # legacy format, not a zip archive
    assert torch.load(tmp_path / "c.pt") == {"a": 1}


def test_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "c.pt"
    atomic_save({"v": 1}, target)
    os.chmod(target, 0o640)
    atomic_save({"v": 2}, target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert torch.load(target) == {"v": 2}


def test_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_save({"v": 1}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "c.pt").st_mode & 0o777 == 0o644


def test_unpicklable_object_raises_the_original_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "c.pt"
    atomic_save({"v": 1}, target)
    # A local lambda: pickle raises AttributeError("Can't pickle local object ...").
    with pytest.raises(AttributeError, match="Can't pickle local object"):
        atomic_save({"v": 2, "bad": lambda: None}, target)
    assert torch.load(target) == {"v": 1}
    assert _entries(tmp_path) == ["c.pt"]


def test_full_disk_keeps_previous_checkpoint_and_removes_temp_file(tmp_path):
    target = tmp_path / "c.pt"
    atomic_save({"v": 1}, target)
    with pytest.raises(RuntimeError), full_disk(64 * 1024):
        atomic_save({"v": 2, "w": torch.zeros(1_000_000)}, target)
    assert torch.load(target) == {"v": 1}
    assert _entries(tmp_path) == ["c.pt"]


def test_plain_torch_save_on_full_disk_destroys_the_previous_checkpoint(tmp_path):
    """The fault atomic_save exists for: the baseline really loses the last good checkpoint."""
    target = tmp_path / "c.pt"
    torch.save({"v": 1}, target)
    with pytest.raises(RuntimeError), full_disk(64 * 1024):
        torch.save({"v": 2, "w": torch.zeros(1_000_000)}, target)
    with pytest.raises((RuntimeError, OSError, EOFError)):
        torch.load(target)


def test_file_objects_are_written_directly(tmp_path):
    buffer = io.BytesIO()
    atomic_save({"v": 3}, buffer)
    buffer.seek(0)
    assert torch.load(buffer) == {"v": 3}
    assert _entries(tmp_path) == []


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_save({"v": 1}, tmp_path / "nope" / "c.pt")


@pytest.mark.timeout(120)
def test_sigkill_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "c.pt"
    atomic_save({"v": 1}, target)
    script = textwrap.dedent(
        f"""
        import torch
        from ckptfix.runtime import atomic_save
        big = {{"v": 2, "w": torch.ones(150_000_000, dtype=torch.uint8)}}
        print("ready", flush=True)
        atomic_save(big, {str(target)!r})
        print("done", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    temp = None
    while time.monotonic() < deadline and temp is None:
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".ckptfix-tmp") and p.stat().st_size > 0]
        temp = temps[0] if temps else None
        time.sleep(0.005)
    assert temp is not None, "the save never started writing its temp file"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the save finished before it could be killed"
    assert torch.load(target) == {"v": 1}
