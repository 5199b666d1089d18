"""Test files: their fixes are unsafe (written only with --unsafe-fixes).

A test writes a checkpoint to show that saving works, mostly into a temporary directory of its own
process (pytest's `tmp_path`, `tempfile.mkdtemp()` in `setUp`), and mostly in one process. Guarding
such a write, or making it atomic, changes what the test tests and fixes nothing in training; in the
review of 32 training repositories every rewrite in a test file was noise. `check` still reports them.
"""

from __future__ import annotations

from pathlib import PurePath

REASON = (
    "a test file: its writes usually go to a temporary directory of its own process, and guarding them "
    "changes what the test tests"
)

_TEST_DIRS = frozenset({"test", "tests", "testing", "unit_tests", "unittests"})


def is_test_file(path: str) -> bool:
    """`test_x.py`, `x_test.py`, `conftest.py`, or, for a relative path (as the CLI names files under
    the working directory), a file under a `tests/` (`test/`, `testing/`) folder. The folders of an
    absolute path are not looked at: a checkout under `/home/me/testing/` is not a test."""
    pure = PurePath(path)
    name = pure.name
    if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
        return True
    return not pure.is_absolute() and any(part in _TEST_DIRS for part in pure.parts[:-1])
