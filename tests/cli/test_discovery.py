"""Which files a run picks up: .gitignore, default and user excludes, --force-exclude, symlinks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.conftest import BAD, run_cli


def _reported(cwd: Path, *args: str) -> set[str]:
    result = run_cli("check", "--output-format", "json", *args, cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    import json

    return {r["path"] for r in json.loads(result.stdout) if r["code"] == "CKP001"}


def _write(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BAD)


def test_gitignore_is_respected_nested_and_negated(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    _write(
        tmp_path, "keep.py", "generated/out.py", "pkg/scratch.py", "pkg/wanted.py", "logs/a.py", "logs/b.py"
    )
    (tmp_path / ".gitignore").write_text("generated/\nlogs/*\n!logs/b.py\n")
    (tmp_path / "pkg" / ".gitignore").write_text("scratch.py\n")
    assert _reported(tmp_path) == {"keep.py", "pkg/wanted.py", "logs/b.py"}
    everything = _reported(tmp_path, "--no-respect-gitignore")
    assert "generated/out.py" in everything and "pkg/scratch.py" in everything


def test_gitignore_above_the_walked_directory_applies_inside_a_checkout(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*_tmp.py\n")
    _write(tmp_path, "src/a.py", "src/b_tmp.py")
    assert _reported(tmp_path / "src") == {"a.py"}


def test_default_excludes(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", ".venv/lib/x.py", "build/lib/y.py", "__pycache__/z.py", "node_modules/w.py")
    assert _reported(tmp_path) == {"a.py"}


def test_exclude_replaces_defaults_and_extend_exclude_adds(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", "legacy/old.py", "build/y.py")
    assert _reported(tmp_path, "--extend-exclude", "legacy") == {"a.py"}
    assert _reported(tmp_path, "--exclude", "legacy") == {"a.py", "build/y.py"}
    assert _reported(tmp_path, "--extend-exclude", "/a.py,legacy/*.py") == set()


def test_named_paths_are_checked_unless_force_exclude(tmp_path: Path) -> None:
    _write(tmp_path, "build/gen.py", "legacy/old.py")
    assert _reported(tmp_path, "build/gen.py") == {"build/gen.py"}
    assert _reported(tmp_path, "--force-exclude", "build/gen.py") == set()
    assert _reported(tmp_path, "--extend-exclude", "legacy", "--force-exclude", "legacy/old.py") == set()
    result = run_cli("check", "--force-exclude", "build/gen.py", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")


def test_force_exclude_respects_gitignore_for_named_files(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored.py\n")
    _write(tmp_path, "ignored.py", "kept.py")
    assert _reported(tmp_path, "--force-exclude", "ignored.py", "kept.py") == {"kept.py"}


def test_a_named_directory_inside_an_excluded_one_is_walked(tmp_path: Path) -> None:
    # `ckptfix check .venv/lib/site-packages/torch` must check torch, minus its own caches.
    _write(tmp_path, ".venv/lib/site-packages/pkg/mod.py", ".venv/lib/site-packages/pkg/__pycache__/c.py")
    found = _reported(tmp_path, ".venv/lib/site-packages/pkg")
    assert found == {".venv/lib/site-packages/pkg/mod.py"}


def test_non_python_files_are_skipped_but_named_ones_are_read(tmp_path: Path) -> None:
    _write(tmp_path, "script", "notes.txt", "stubs.pyi")
    assert _reported(tmp_path) == {"stubs.pyi"}
    assert _reported(tmp_path, "script") == {"script"}


def test_each_file_once(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/a.py")
    (tmp_path / "alias.py").symlink_to(tmp_path / "pkg" / "a.py")
    result = run_cli("check", "pkg", "pkg/a.py", "alias.py", cwd=tmp_path)
    assert result.stdout.count(": CKP001 ") == 1, result.stdout


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    _write(tmp_path / "outside", "secret.py")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "linked").symlink_to(tmp_path / "outside")
    assert _reported(tmp_path / "proj") == set()


def test_paths_are_shown_relative_to_the_working_directory(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/sub/a.py")
    assert _reported(tmp_path / "pkg", "sub") == {"sub/a.py"}
    assert _reported(tmp_path / "pkg", str(tmp_path / "pkg" / "sub")) == {"sub/a.py"}
    outside = _reported(tmp_path / "pkg" / "sub", "../../pkg")
    assert outside == {"a.py"}
