"""The project model through the real CLI: facts read from disk for the files named, a findings cache
that never serves a finding whose cross-file facts changed, and `apply` on a directory agreeing with
`apply` on the one changed file."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.conftest import finding_codes, run_cli
from tests.project.conftest import write
from tests.project.test_cross_file import TRAIN_GUARDED, UTILS


def test_a_file_named_alone_is_analysed_with_the_facts_of_the_others(tmp_path: Path) -> None:
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    named = run_cli("check", "--no-cache", "utils.py", cwd=root)
    assert "CKP001" not in finding_codes(named.stdout), named.stdout
    alone = run_cli("check", "--no-cache", "--no-project", "utils.py", cwd=root)
    assert "CKP001" in finding_codes(alone.stdout), alone.stdout


def test_a_stale_cross_file_fact_is_never_served_from_the_cache(tmp_path: Path) -> None:
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    first = run_cli("check", "-v", "train.py", cwd=root)
    assert "CKP002" in finding_codes(first.stdout), first.stdout
    again = run_cli("check", "-v", "train.py", cwd=root)
    assert "(cached)" in again.stderr and again.stdout == first.stdout
    # train.py's bytes do not change; the helper stops writing a checkpoint.
    write(root, {"utils.py": UTILS.replace("torch.save(state, path)", "print(state, path)")})
    changed = run_cli("check", "-v", "train.py", cwd=root)
    assert "(cached)" not in changed.stderr, changed.stderr
    assert "CKP002" not in finding_codes(changed.stdout), changed.stdout
    # ... and back: the old entry is valid again, and served.
    write(root, {"utils.py": UTILS})
    restored = run_cli("check", "-v", "train.py", cwd=root)
    assert restored.stdout == first.stdout and "(cached)" in restored.stderr


def test_apply_on_the_directory_and_on_the_one_changed_file_agree(tmp_path: Path) -> None:
    whole = write(tmp_path / "whole", {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    single = tmp_path / "single"
    shutil.copytree(whole, single)
    assert run_cli("apply", "--no-cache", ".", cwd=whole).returncode in (0, 1)
    assert run_cli("apply", "--no-cache", "train.py", cwd=single).returncode in (0, 1)
    assert (whole / "train.py").read_text() == (single / "train.py").read_text() != TRAIN_GUARDED
    assert "checkpoint_barrier" in (single / "train.py").read_text()
    assert "barrier" not in (whole / "utils.py").read_text()


def test_a_file_changed_with_its_size_and_a_trusted_stat_kept_is_read_again(tmp_path: Path) -> None:
    """The summaries' stat shortcut: a change that keeps the size is caught by the mtime, and a stat
    taken right after a change is never trusted (git's racy-clean rule)."""
    import os

    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    old = 1_000_000_000 * 1_600_000_000  # long ago: these stats are trusted
    for name in ("train.py", "utils.py"):
        os.utime(root / name, ns=(old, old))
    assert "CKP002" in finding_codes(run_cli("check", "train.py", cwd=root).stdout)
    same_size = UTILS.replace("torch.save(state, path)", "print((state, path), 1)")
    assert len(same_size) == len(UTILS)
    write(root, {"utils.py": same_size})
    os.utime(root / "utils.py", ns=(old + 1, old + 1))
    changed = run_cli("check", "train.py", cwd=root)
    assert "CKP002" not in finding_codes(changed.stdout), changed.stdout
