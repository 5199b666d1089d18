"""Where a project starts: the nearest directory above the paths that marks one.

Why: the files named on the command line (pre-commit names only the staged ones) are a part of a
program whose other parts live beside them; the root bounds the search for those parts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", ".git")


def common_directory(paths: Iterable[str]) -> str:
    """The deepest directory holding every path (a file's own directory for a single file)."""
    absolute = [os.path.abspath(p) for p in paths]
    if not absolute:
        return os.getcwd()
    common = os.path.commonpath(absolute)
    return common if os.path.isdir(common) else os.path.dirname(common)


def find_root(paths: Iterable[str]) -> tuple[str, bool]:
    """(root, marked): the nearest directory at or above the paths' common directory holding one of
    MARKERS, or the common directory itself (marked False) when no directory above has one."""
    start = common_directory(paths)
    current = start
    while True:
        if any(os.path.exists(os.path.join(current, marker)) for marker in MARKERS):
            return current, True
        parent = os.path.dirname(current)
        if parent == current:
            return start, False
        current = parent


def is_distribution(root: str) -> bool:
    """The project is packaged (others install it and import its modules): setup.py, setup.cfg, or a
    pyproject.toml with a [project] or [tool.poetry] table."""
    if os.path.exists(os.path.join(root, "setup.py")) or os.path.exists(os.path.join(root, "setup.cfg")):
        return True
    try:
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            text = f.read()
    except OSError:
        return False
    return b"\n[project]" in b"\n" + text or b"[tool.poetry]" in text
