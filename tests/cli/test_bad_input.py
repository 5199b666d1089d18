"""Bad input for the tool itself: one clear line per bad file, the others processed, nothing half-written.

Each test puts one bad input next to `train.py` (the canonical finding) and `util.py` (clean): the
finding must still be reported or fixed, the bad file named in exactly one error line on stderr, and
the exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptfix.sourcefile import FileError, decode, read_bytes, write_back
from tests.cli.conftest import BAD, finding_codes, run_cli


def _errors(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:") and name in line]


def _assert_one_error_others_processed(tree: Path, name: str, *words: str, command: str = "check") -> None:
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file() and not p.is_symlink()}
    result = run_cli(command, cwd=tree)
    assert result.returncode == 2, (result.stdout, result.stderr)
    errors = _errors(result.stderr, name)
    assert len(errors) == 1, result.stderr
    assert all(word in errors[0] for word in words), errors[0]
    assert "Traceback" not in result.stderr
    if command == "check":
        assert "CKP001" in finding_codes(result.stdout)  # the good file was still checked
        assert all(p.read_bytes() == data for p, data in before.items())
    else:
        assert (tree / "train.py").read_text() != BAD  # the good file was still rewritten


# Each is the canonical finding plus the defect, so that no prefilter can rule it out unparsed.
BAD_SOURCES = {
    "syntax_error.py": BAD + "torch.save(model\n",
    "python2.py": BAD + 'print "saved"\n',
    "latin1_undeclared.py": b"# Pr\xfcfpunkt\n" + BAD.encode(),
    "bad_cookie.py": b"# -*- coding: klingon -*-\n" + BAD.encode(),
    "binary.py": BAD.encode() + b"\x00\x01\x02\x00",
}


@pytest.mark.parametrize("name", sorted(BAD_SOURCES))
@pytest.mark.parametrize("command", ["check", "apply"])
def test_unparsable_or_undecodable_file(tree: Path, name: str, command: str) -> None:
    content = BAD_SOURCES[name]
    data = content if isinstance(content, bytes) else content.encode()
    (tree / name).write_bytes(data)
    _assert_one_error_others_processed(tree, name, command=command)
    assert (tree / name).read_bytes() == data


def test_error_messages_say_what_is_wrong(tree: Path) -> None:
    (tree / "latin1_undeclared.py").write_bytes(BAD_SOURCES["latin1_undeclared.py"])  # type: ignore[arg-type]
    (tree / "bad_cookie.py").write_bytes(BAD_SOURCES["bad_cookie.py"])  # type: ignore[arg-type]
    stderr = run_cli("check", cwd=tree).stderr
    assert "not valid utf-8" in _errors(stderr, "latin1_undeclared.py")[0]
    assert "encoding" in _errors(stderr, "bad_cookie.py")[0]


def test_empty_file_is_fine(tree: Path) -> None:
    (tree / "empty.py").write_bytes(b"")
    result = run_cli("check", cwd=tree)
    assert result.returncode == 1 and "error" not in result.stderr
    assert run_cli("check", "empty.py", cwd=tree).returncode == 0


def test_five_megabyte_file(tree: Path) -> None:
    filler = "".join(f"value_{i} = {i} * 2  # padding line\n" for i in range(150_000))
    assert len(filler) > 5_000_000
    (tree / "huge.py").write_text(BAD + filler + 'torch.save(model.state_dict(), "late.pt")\n')
    result = run_cli("check", "huge.py", cwd=tree, timeout=280)
    assert result.returncode == 1, result.stderr
    assert "huge.py:6:1: CKP001" in result.stdout
    assert f"huge.py:{150_000 + 7}:1: CKP001" in result.stdout


def test_read_only_file_is_not_rewritten(tree: Path) -> None:
    (tree / "locked.py").write_text(BAD)
    os.chmod(tree / "locked.py", 0o444)
    _assert_one_error_others_processed(tree, "locked.py", "read-only", command="apply")
    assert (tree / "locked.py").read_text() == BAD
    assert os.stat(tree / "locked.py").st_mode & 0o777 == 0o444


def test_broken_symlink(tree: Path) -> None:
    (tree / "dangling.py").symlink_to(tree / "gone.py")
    _assert_one_error_others_processed(tree, "dangling.py", "broken symbolic link")


def test_symlink_loop(tree: Path) -> None:
    (tree / "loop_a.py").symlink_to(tree / "loop_b.py")
    (tree / "loop_b.py").symlink_to(tree / "loop_a.py")
    result = run_cli("check", cwd=tree)
    assert result.returncode == 2
    assert len(_errors(result.stderr, "loop_a.py")) == 1 and "loop" in _errors(result.stderr, "loop_a.py")[0]
    assert "CKP001" in finding_codes(result.stdout)


def test_symlink_loop_named_explicitly(tree: Path) -> None:
    (tree / "self.py").symlink_to(tree / "self.py")
    result = run_cli("check", "self.py", "train.py", cwd=tree)
    assert result.returncode == 2
    assert _errors(result.stderr, "self.py") == ["error: self.py: symbolic link loop"]
    assert "CKP001" in finding_codes(result.stdout)


def test_directory_symlink_loop_is_not_followed(tree: Path) -> None:
    (tree / "sub").mkdir()
    (tree / "sub" / "up").symlink_to(tree)
    result = run_cli("check", cwd=tree)
    assert result.returncode == 1, result.stderr
    assert finding_codes(result.stdout).count("CKP001") == 1


def test_nonexistent_path(tree: Path) -> None:
    result = run_cli("check", "missing.py", "train.py", cwd=tree)
    assert result.returncode == 2
    assert _errors(result.stderr, "missing.py") == ["error: missing.py: no such file or directory"]
    assert "CKP001" in finding_codes(result.stdout)


def test_directory_named_like_a_python_file_is_walked_not_read(tree: Path) -> None:
    (tree / "x.py").mkdir()
    (tree / "x.py" / "inner.py").write_text(BAD)
    for args in ((), ("x.py", "train.py")):
        result = run_cli("check", *args, cwd=tree)
        assert result.returncode == 1, result.stderr
        assert "error" not in result.stderr
        assert "x.py/inner.py:6:1: CKP001" in result.stdout


def test_file_changed_on_disk_between_read_and_write_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(BAD)
    source = decode(str(path), read_bytes(str(path)))
    path.write_text(BAD + "# edited by someone else meanwhile\n")
    with pytest.raises(FileError, match="changed on disk"):
        write_back(source, "rewritten = True\n")
    assert path.read_text() == BAD + "# edited by someone else meanwhile\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.py"]  # no temp file left behind


def test_write_back_replaces_atomically_and_keeps_unrelated_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_bytes(BAD.replace("\n", "\r\n").encode())
    source = decode(str(path), read_bytes(str(path)))
    inode = path.stat().st_ino
    write_back(source, source.text + "x = 1\n")
    assert path.read_bytes().endswith(b"x = 1\r\n")
    assert path.stat().st_ino != inode  # a new file was renamed over the old one


def test_full_disk_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """A real full file system (a tiny tmpfs): the rewrite fails cleanly, the original survives."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        (small / "train.py").write_text(BAD)
        with pytest.raises(OSError), open(small / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        result = run_cli("apply", "train.py", cwd=small)
        assert result.returncode == 2, result.stderr
        errors = _errors(result.stderr, "train.py")
        assert len(errors) == 1 and "No space left" in errors[0], result.stderr
        assert (small / "train.py").read_text() == BAD
        assert sorted(p.name for p in small.iterdir()) == ["filler", "train.py"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_internal_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Started from a directory that no longer exists: no traceback, a clear line, exit 2."""
    import subprocess
    import sys

    from tests.cli.conftest import REPO

    (tmp_path / "train.py").write_text(BAD)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (
        f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m ckptfix check "{tmp_path}/train.py"'
    )
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("ckptfix: internal error:"), result.stderr
