"""The findings cache: real runs of `python -m ckptfix` on real files, and the keys it is built on."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ckptfix import cache
from ckptfix.options import Options
from tests.cli.conftest import BAD, CLEAN, REPO, finding_codes, run_cli

CACHE = ".ckptfix_cache"


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("??/*.json"))


def _plant(directory: Path, message: str) -> None:
    """Replace every entry by one finding with `message`: only a run that reads the cache prints it."""
    for entry in _entries(directory):
        entry.write_text(json.dumps([[1, 1, "CKP001", message, False, False]]))


def test_second_run_gives_the_same_output_from_the_cache(tree: Path) -> None:
    first = run_cli("check", "-v", cwd=tree)
    second = run_cli("check", "-v", cwd=tree)
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout
    assert "CKP001" in finding_codes(second.stdout)
    assert re.search(r"^train\.py: \d+ findings \(cached\)$", second.stderr, re.M), second.stderr
    # Only the file the prefilter lets through is analysed, so only it has an entry.
    assert len(_entries(tree / CACHE)) == 1


def test_the_cache_is_read(tree: Path) -> None:
    run_cli("check", cwd=tree)
    _plant(tree / CACHE, "planted in the cache")
    hit = run_cli("check", cwd=tree)
    assert hit.stdout == "train.py:1:1: CKP001 planted in the cache\n"
    assert hit.returncode == 1
    # The path is the one asked for, not one stored: a copy of the file hits the same entry.
    shutil.copy(tree / "train.py", tree / "train_copy.py")
    assert "train_copy.py:1:1: CKP001 planted in the cache" in run_cli("check", cwd=tree).stdout


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_cache_hit_imports_neither_the_analysis_nor_libcst(tree: Path, jobs: str) -> None:
    if jobs == "2":  # enough files for the workers to share the triage (engine._FILES_FOR_SHARED_TRIAGE)
        for index in range(500):
            (tree / f"util_{index}.py").write_text(CLEAN)
    run_cli("check", cwd=tree)
    hit = run_cli("check", "-j", jobs, cwd=tree, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert hit.returncode == 1
    assert "ckptfix.cache" in hit.stderr  # the import profile is there
    assert "libcst" not in hit.stderr
    assert "ckptfix.api" not in hit.stderr


def test_editing_a_file_invalidates_its_entry(tree: Path) -> None:
    run_cli("check", cwd=tree)
    _plant(tree / CACHE, "stale")
    (tree / "train.py").write_text("# moved down a line\n" + BAD)
    result = run_cli("check", cwd=tree)
    assert "stale" not in result.stdout
    assert "train.py:7:1: CKP001" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--select", "CKP002"), ("--style", "inline"), ("--barrier-timeout", "60"), ("--final-timeout", "9")],
)
def test_changing_an_option_invalidates(tree: Path, args: tuple[str, ...]) -> None:
    run_cli("check", cwd=tree)
    _plant(tree / CACHE, "stale")
    result = run_cli("check", *args, cwd=tree)
    assert "stale" not in result.stdout
    assert result.returncode == 1
    if args[0] == "--select":
        assert set(finding_codes(result.stdout)) == {"CKP002"}


def test_changing_a_config_key_invalidates(tree: Path) -> None:
    run_cli("check", cwd=tree)
    _plant(tree / CACHE, "stale")
    (tree / "pyproject.toml").write_text('[tool.ckptfix]\nextra-save-functions = ["mylib.save_ckpt"]\n')
    result = run_cli("check", cwd=tree)
    assert "stale" not in result.stdout
    assert "CKP001" in finding_codes(result.stdout)


def test_every_option_is_part_of_the_key() -> None:
    base = Options()
    changed = {
        "select": frozenset({"CKP001"}),
        "style": "inline",
        "barrier_timeout": 1.0,
        "final_timeout": 2.0,
        "assume_distributed": True,
        "extra_save_functions": ("a.b",),
        "extra_main_predicates": ("c.d",),
        "rewrite_local_rank_guards": True,
        "unsafe_fixes": True,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(Options)}, "a new option: add it here"
    keys = {cache.options_key(dataclasses.replace(base, **{name: value})) for name, value in changed.items()}
    assert len(keys | {cache.options_key(base)}) == len(changed) + 1
    # The same options spelled in another order are the same key.
    assert cache.options_key(Options(select=frozenset({"CKP002", "CKP001"}))) == cache.options_key(
        Options(select=frozenset({"CKP001", "CKP002"}))
    )


def test_a_change_to_ckptfix_itself_invalidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "ckptfix"
    shutil.copytree(REPO / "ckptfix", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = cache.source_digest(str(package))
    assert cache.source_digest(str(package)) == before
    rules = package / "analysis" / "catalog.py"
    rules.write_text(rules.read_text() + "\n# one more line\n")
    assert cache.source_digest(str(package)) != before

    options = Options()
    opened = cache.open_cache(str(tmp_path / "c"), options, pytest.fail)
    monkeypatch.setattr(cache, "code_key", lambda: b"another ckptfix")
    reopened = cache.open_cache(str(tmp_path / "c"), options, pytest.fail)
    assert opened is not None and reopened is not None
    assert opened._entry("x.py", b"x") != reopened._entry("x.py", b"x")


def test_a_corrupt_entry_is_ignored_and_rewritten(tree: Path) -> None:
    expected = run_cli("check", cwd=tree)
    for garbage in (b"\x00not json", b'{"findings": 1}', b"[[1, 2]]", b'[[1, 1, "CKP001", "m", "yes"]]', b""):
        for entry in _entries(tree / CACHE):
            entry.write_bytes(garbage)
        result = run_cli("check", cwd=tree)
        assert (result.stdout, result.returncode) == (expected.stdout, expected.returncode)
        assert result.stderr == expected.stderr
    assert all(json.loads(entry.read_text()) for entry in _entries(tree / CACHE))


def test_no_cache_writes_nothing_and_reads_nothing(tree: Path) -> None:
    result = run_cli("check", "--no-cache", cwd=tree)
    assert result.returncode == 1
    assert not (tree / CACHE).exists()
    run_cli("check", cwd=tree)
    _plant(tree / CACHE, "planted")
    assert "planted" not in run_cli("check", "--no-cache", cwd=tree).stdout


def test_config_can_turn_the_cache_off(tree: Path) -> None:
    (tree / "pyproject.toml").write_text("[tool.ckptfix]\ncache = false\n")
    assert run_cli("check", cwd=tree).returncode == 1
    assert not (tree / CACHE).exists()
    (tree / "pyproject.toml").write_text('[tool.ckptfix]\ncache = "no"\n')
    assert "`cache` must be true or false" in run_cli("check", cwd=tree).stderr


def test_stdin_is_never_cached(tree: Path) -> None:
    result = run_cli("check", "-", "--stdin-filename", "train.py", cwd=tree, input=BAD.encode())
    assert result.returncode == 1
    assert not (tree / CACHE).exists()


def test_the_cache_directory_is_tagged_and_ignored(tree: Path) -> None:
    run_cli("check", cwd=tree)
    tag = (tree / CACHE / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (tree / CACHE / ".gitignore").read_text() == "*\n"
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=tree, capture_output=True, text=True
    )
    assert CACHE not in status.stdout


def test_the_cache_lives_beside_the_config(tree: Path) -> None:
    (tree / "pyproject.toml").write_text("[tool.ckptfix]\n")
    sub = tree / "sub"
    sub.mkdir()
    run_cli("check", str(tree / "train.py"), cwd=sub)
    assert _entries(tree / CACHE)
    assert not (sub / CACHE).exists()


def test_cache_dir_flag_and_environment(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    flag_dir = tmp_path_factory.mktemp("flag") / "c"
    env_dir = tmp_path_factory.mktemp("env") / "c"
    run_cli("check", "--cache-dir", str(flag_dir), cwd=tree)
    run_cli("check", cwd=tree, env={"CKPTFIX_CACHE_DIR": str(env_dir)})
    assert _entries(flag_dir) and _entries(env_dir)
    assert not (tree / CACHE).exists()


def test_an_unusable_cache_directory_only_warns(tree: Path) -> None:
    (tree / "blocker").write_text("a file where the cache directory would go\n")
    for index in range(3):
        (tree / f"train_{index}.py").write_text(BAD)
    expected = run_cli("check", "--no-cache", cwd=tree)
    for jobs in ("1", "2"):
        result = run_cli("check", "-j", jobs, "--cache-dir", str(tree / "blocker" / "c"), cwd=tree)
        assert (result.stdout, result.returncode) == (expected.stdout, expected.returncode)
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1, result.stderr
        assert "running without the cache" in warnings[0]
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_cache_directory_only_warns(tree: Path) -> None:
    (tree / CACHE).mkdir()
    (tree / CACHE).chmod(0o555)
    try:
        result = run_cli("check", cwd=tree)
    finally:
        (tree / CACHE).chmod(0o755)
    assert result.returncode == 1 and "CKP001" in finding_codes(result.stdout)
    assert result.stderr.count("warning") == 1


def test_concurrent_runs_share_the_cache(tree: Path) -> None:
    for index in range(40):
        (tree / f"train_{index}.py").write_text(BAD.replace("ckpt.pt", f"ckpt{index}.pt"))
    expected = run_cli("check", "--no-cache", cwd=tree)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ckptfix", "check", "-j2"],
            cwd=tree,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert (out, proc.returncode) == (expected.stdout, expected.returncode), err
    assert len(_entries(tree / CACHE)) == 41
    assert not list((tree / CACHE).glob("**/*.tmp"))
    assert run_cli("check", cwd=tree).stdout == expected.stdout


def test_apply_still_rewrites_files_whose_findings_are_cached(tree: Path) -> None:
    run_cli("check", cwd=tree)
    result = run_cli("apply", cwd=tree)
    assert result.returncode in (0, 1), result.stderr
    assert (tree / "train.py").read_text() != BAD
    # Apply twice = apply once, with the rewritten file's findings cached by now.
    run_cli("check", cwd=tree)
    assert run_cli("apply", "--diff", cwd=tree).stdout == ""


def test_apply_uses_a_cached_clean_result(tree: Path) -> None:
    clean = "import torch.distributed as dist\n\ndist.init_process_group('gloo')\ndist.barrier()\n"
    (tree / "train.py").write_text(clean)
    run_cli("check", cwd=tree)
    hit = run_cli("apply", "--diff", "-v", cwd=tree)
    assert hit.returncode == 0
    assert "train.py: 0 findings (cached)" in hit.stderr
    # A cached result with findings is never taken for apply: it needs the analysis to rewrite.
    (tree / "train.py").write_text(BAD)
    run_cli("check", cwd=tree)
    assert "(cached)" not in run_cli("apply", "--diff", "-v", cwd=tree).stderr


def test_the_same_bytes_in_a_test_file_or_a_package_are_another_entry(tree: Path) -> None:
    """A test file's or an installable package's fixes are unsafe: the findings of the same bytes
    elsewhere must not be served for them."""
    run_cli("check", cwd=tree)
    (tree / "tests").mkdir()
    shutil.copy(tree / "train.py", tree / "tests" / "train.py")
    package = tree / "src" / "mylib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tree / "pyproject.toml").write_text('[project]\nname = "mylib"\n')
    shutil.copy(tree / "train.py", package / "train.py")
    result = run_cli("check", "--output-format", "json", cwd=tree)
    rows = json.loads(result.stdout)
    unsafe = {row["path"] for row in rows if row["unsafe"]}
    assert any(name.startswith("tests") for name in unsafe)
    assert any("mylib" in name for name in unsafe)
    assert not any(name == "train.py" for name in unsafe)
