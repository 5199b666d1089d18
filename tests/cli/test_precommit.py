"""The hooks in .pre-commit-hooks.yaml, run by the real pre-commit program against a scratch repo.

pre-commit pip-installs the hook repo into an environment of its own, which takes a while: the
environment is built once (one PRE_COMMIT_HOME for the module) and shared by the four runs, each
about two seconds after the first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import BAD, CLEAN, REPO

PRE_COMMIT = Path(sys.executable).with_name("pre-commit")
GIT = (
    "git",
    "-c",
    "user.name=ckptfix tests",
    "-c",
    "user.email=tests@ckptfix.invalid",
    "-c",
    "commit.gpgsign=false",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not PRE_COMMIT.exists(), reason="pre-commit is not installed next to this Python"),
]


def _hook_repo(dest: Path) -> Path:
    """This working tree as a committed repo: pre-commit installs hooks from a commit, not a worktree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in ("ckptfix", "codemods"):
        shutil.copytree(REPO / package, dest / package, ignore=ignore)
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    if not (dest / "README.md").exists():
        (dest / "README.md").write_text("ckptfix\n")  # pyproject names it; the branch may not have it yet
    subprocess.run([*GIT, "init", "-q", str(dest)], check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "hooks under test"], cwd=dest, check=True)
    return dest


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("precommit")
    hooks = _hook_repo(base / "hooks")
    project = base / "project"
    project.mkdir()
    subprocess.run([*GIT, "init", "-q", str(project)], check=True)
    (project / "train.py").write_text(BAD)
    (project / "util.py").write_text(CLEAN)
    (project / "notes.txt").write_text("torch.save(model, 'x.pt') is mentioned here, in prose\n")
    subprocess.run([*GIT, "add", "-A"], cwd=project, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(base / "cache"), "NO_COLOR": "1"}
    env.pop("PYTHONPATH", None)  # the hook must run from the environment pre-commit built
    return hooks, project, env


def _try_repo(
    scratch: tuple[Path, Path, dict[str, str]], hook: str, *files: str
) -> subprocess.CompletedProcess[str]:
    hooks, project, env = scratch
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(hooks), hook, "--color", "never", "--files", *files],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )


def test_clean_file_passes(scratch: tuple[Path, Path, dict[str, str]]) -> None:
    result = _try_repo(scratch, "ckptfix-check", "util.py")  # the first run builds the environment
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout


def test_bare_save_fails_the_hook(scratch: tuple[Path, Path, dict[str, str]]) -> None:
    result = _try_repo(scratch, "ckptfix-check", "train.py", "util.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout and "train.py:6:1: CKP001" in result.stdout
    assert "util.py:" not in result.stdout


def test_apply_hook_rewrites_and_fails_the_commit(scratch: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, _ = scratch
    result = _try_repo(scratch, "ckptfix-apply", "train.py", "util.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "files were modified by this hook" in result.stdout
    assert (project / "train.py").read_text() != BAD and (project / "util.py").read_text() == CLEAN
    (project / "train.py").write_text(BAD)  # leave the scratch project as the other tests expect


def test_no_python_files_passes(scratch: tuple[Path, Path, dict[str, str]]) -> None:
    result = _try_repo(scratch, "ckptfix-check", "notes.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no files to check" in result.stdout
