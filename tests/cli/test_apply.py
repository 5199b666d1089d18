"""`ckptfix apply`: in-place rewrites, --diff, exit codes, and what a rewrite must keep."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import BAD, CLEAN, REPO, finding_codes, run_cli


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if "ckptfix-tmp" in p.name]


def test_apply_rewrites_and_the_save_is_no_longer_reported(tree: Path) -> None:
    result = run_cli("apply", cwd=tree)
    assert result.returncode in (0, 1), result.stderr  # 1 only if unfixable findings remain
    assert (tree / "train.py").read_text() != BAD
    assert (tree / "util.py").read_text() == CLEAN
    assert "Rewrote 1 file" in result.stderr
    assert "CKP001" not in finding_codes(run_cli("check", cwd=tree).stdout)
    assert _no_temp_files(tree)


def test_apply_twice_is_apply_once(tree: Path) -> None:
    run_cli("apply", cwd=tree)
    once = (tree / "train.py").read_bytes()
    second = run_cli("apply", "--exit-non-zero-on-fix", cwd=tree)
    assert (tree / "train.py").read_bytes() == once
    assert "Nothing to rewrite" in second.stderr


def test_exit_non_zero_on_fix(tree: Path) -> None:
    assert run_cli("apply", "--exit-non-zero-on-fix", cwd=tree).returncode == 1


def test_diff_writes_nothing_exits_1_and_applies_with_git(tree: Path) -> None:
    result = run_cli("apply", "--diff", cwd=tree)
    assert result.returncode == 1, result.stderr
    assert (tree / "train.py").read_text() == BAD
    assert result.stdout.startswith("--- a/train.py\n+++ b/train.py\n")
    # The reviewed diff is exactly what `apply` writes: apply it with git and compare.
    patched = tree / "patched"
    patched.mkdir()
    (patched / "train.py").write_text(BAD)
    subprocess.run(["git", "apply", "-"], input=result.stdout, text=True, cwd=patched, check=True)
    run_cli("apply", cwd=tree)
    assert (patched / "train.py").read_text() == (tree / "train.py").read_text()


def test_diff_of_an_absolute_path_under_the_working_directory_is_relative(tree: Path) -> None:
    result = run_cli("apply", "--diff", str(tree / "train.py"), cwd=tree)
    assert result.stdout.startswith("--- a/train.py\n+++ b/train.py\n"), result.stdout[:200]


def test_diff_on_clean_tree_exits_0(tree: Path) -> None:
    result = run_cli("apply", "--diff", "util.py", cwd=tree)
    assert (result.returncode, result.stdout) == (0, "")


def test_apply_reports_remaining_findings_in_the_chosen_format(tree: Path) -> None:
    import json

    result = run_cli("apply", "--output-format", "json", cwd=tree)
    remaining = json.loads(result.stdout)
    assert all(r["code"] != "CKP001" for r in remaining)
    assert result.returncode == (1 if remaining else 0)


def test_apply_stdin_prints_the_rewritten_source(tree: Path) -> None:
    result = run_cli("apply", "-", "--stdin-filename", "train.py", cwd=tree, input=BAD.encode())
    out = result.stdout.decode()
    assert out != BAD and "model.state_dict()" in out
    assert (tree / "train.py").read_text() == BAD  # stdin mode never touches the file of that name
    clean = run_cli("apply", "-", cwd=tree, input=CLEAN.encode())
    assert (clean.returncode, clean.stdout) == (0, CLEAN.encode())


def test_apply_stdin_force_excluded_echoes_input(tree: Path) -> None:
    result = run_cli(
        "apply", "-", "--stdin-filename", ".venv/x.py", "--force-exclude", cwd=tree, input=BAD.encode()
    )
    assert (result.returncode, result.stdout) == (0, BAD.encode())


def test_keeps_file_mode(tree: Path) -> None:
    path = tree / "train.py"
    os.chmod(path, 0o751)
    run_cli("apply", cwd=tree)
    assert path.read_text() != BAD
    assert stat.S_IMODE(path.stat().st_mode) == 0o751


def test_keeps_crlf(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_bytes(BAD.replace("\n", "\r\n").encode())
    assert run_cli("check", cwd=tmp_path).returncode == 1
    run_cli("apply", cwd=tmp_path)
    data = path.read_bytes()
    assert data != BAD.replace("\n", "\r\n").encode()
    assert data.count(b"\n") == data.count(b"\r\n"), data  # no lone LF was introduced


def test_keeps_bom(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_bytes(b"\xef\xbb\xbf" + BAD.encode())
    result = run_cli("check", cwd=tmp_path)
    assert "train.py:6:1: CKP001" in result.stdout  # the BOM does not shift columns
    run_cli("apply", cwd=tmp_path)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and not data.startswith(b"\xef\xbb\xbf" * 2)
    assert data != b"\xef\xbb\xbf" + BAD.encode()


def test_keeps_pep263_encoding(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    source = "# -*- coding: latin-1 -*-\n# Prüfpunkt\n" + BAD
    path.write_bytes(source.encode("latin-1"))
    assert run_cli("check", cwd=tmp_path).returncode == 1
    run_cli("apply", cwd=tmp_path)
    data = path.read_bytes()
    assert "# Prüfpunkt".encode("latin-1") in data and data != source.encode("latin-1")
    data.decode("latin-1")


def test_keeps_tabs(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    source = BAD + 'def save_again(m):\n\ttorch.save(m.state_dict(), "again.pt")\n'
    path.write_text(source)
    run_cli("apply", cwd=tmp_path)
    rewritten = path.read_text()
    assert rewritten != source
    compile(rewritten, "train.py", "exec")
    indents = [line[: len(line) - len(line.lstrip())] for line in rewritten.splitlines()]
    assert not [i for i in indents if " " in i and "\t" in i], rewritten  # tabs never mixed with spaces


def test_symlinked_file_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text(BAD)
    (tmp_path / "link.py").symlink_to(real)
    run_cli("apply", "link.py", cwd=tmp_path)
    assert (tmp_path / "link.py").is_symlink()
    assert real.read_text() != BAD


def test_apply_stdin_diff(tree: Path) -> None:
    result = run_cli("apply", "--diff", "-", "--stdin-filename", "pkg/train.py", cwd=tree, input=BAD.encode())
    assert result.returncode == 1
    assert result.stdout.startswith(b"--- a/pkg/train.py\n+++ b/pkg/train.py\n")


def test_apply_names_each_rewritten_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(BAD)
    (tmp_path / "b.py").write_text(BAD)
    (tmp_path / "c.py").write_text(CLEAN)
    result = run_cli("apply", cwd=tmp_path)
    rewrote = sorted(line.split()[1] for line in result.stderr.splitlines() if line.startswith("Rewrote "))
    assert rewrote == ["2", "a.py", "b.py"], result.stderr  # one line per file, then the total
    assert "fixes" in result.stderr and "fixs" not in result.stderr
    assert run_cli("apply", "-q", cwd=tmp_path).stderr == ""


def test_a_reader_that_stops_early_is_not_an_internal_error(tree: Path) -> None:
    """`ckptfix apply --diff | head -1`: the closed pipe ends the run quietly."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckptfix", "apply", "--diff"],
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before ckptfix writes its diff
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
