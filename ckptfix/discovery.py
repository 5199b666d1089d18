"""Which files a run looks at: Python files under the given paths, minus excludes and .gitignore'd ones.

Conventions follow ruff: a path named on the command line is always checked unless --force-exclude
(which pre-commit needs, because it names every staged file); inside a directory, excluded and
git-ignored entries are skipped and symlinked directories are not followed (no loops, no escaping
the tree). Anything that cannot be a file to check is reported as a per-path error, never a crash.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class PathError:
    """A path that was asked for (or found) but cannot be processed."""

    path: str
    message: str


@dataclass
class Discovered:
    files: list[str]
    errors: list[PathError]


def display_path(path: str) -> str:
    """Paths as users typed them, relative to the working directory where that is shorter."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute == cwd or absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return os.path.normpath(path)


class _Ignorer:
    """Exclude patterns plus every .gitignore met on the way down, each anchored at its own directory."""

    def __init__(self, exclude: Iterable[str], root: Path, respect_gitignore: bool) -> None:
        import pathspec  # not needed (and not imported) for a run on explicitly named files

        self.exclude = pathspec.GitIgnoreSpec.from_lines(list(exclude))
        self.root = root.resolve()
        self.respect_gitignore = respect_gitignore
        self._gitignores: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _gitignore(self, directory: Path) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._gitignores:
            import pathspec

            spec = None
            try:
                lines = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
                spec = pathspec.GitIgnoreSpec.from_lines(lines)
            except OSError:
                pass
            self._gitignores[directory] = spec
        return self._gitignores[directory]

    @staticmethod
    def _relative(path: Path, anchor: Path, is_dir: bool) -> str | None:
        try:
            rel = path.relative_to(anchor).as_posix()
        except ValueError:
            return None
        return rel + "/" if is_dir else rel

    def _ancestor_gitignores(self, start: Path) -> list[Path]:
        """Directories above `start`, up to the enclosing git checkout, whose .gitignore applies."""
        chain = []
        for directory in start.parents:
            chain.append(directory)
            if (directory / ".git").exists():
                return chain
        return []  # not in a git checkout: only .gitignore files inside the walked tree count

    def anchors_for(self, walk_root: Path) -> tuple[Path, list[Path]]:
        """Where exclude patterns and outer .gitignore files are anchored for a walk from `walk_root`.

        When the user names a directory that the patterns would exclude as a whole (a package in
        .venv, a build output), the patterns restart below it: asking for it explicitly wins, and
        `__pycache__` and friends inside it are still skipped.
        """
        anchor = self.root
        rel = self._relative(walk_root, anchor, True)
        if rel is None or self.exclude.match_file(rel):
            anchor = walk_root
        outer = []
        if self.respect_gitignore:
            for directory in self._ancestor_gitignores(walk_root):
                spec = self._gitignore(directory)
                rel_root = self._relative(walk_root, directory, True)
                if spec is not None and rel_root is not None and not spec.match_file(rel_root):
                    outer.append(directory)
        return anchor, outer

    def ignored(self, path: Path, is_dir: bool, anchor: Path, gitignore_dirs: Iterable[Path]) -> bool:
        rel = self._relative(path, anchor, is_dir)
        if rel is not None and self.exclude.match_file(rel):
            return True
        if not self.respect_gitignore:
            return False
        for directory in gitignore_dirs:
            spec = self._gitignore(directory)
            rel = self._relative(path, directory, is_dir)
            if spec is not None and rel is not None and spec.match_file(rel):
                return True
        return False

    def force_excluded(self, path: Path, is_dir: bool) -> bool:
        """--force-exclude: an explicitly named path is judged like one met while walking the project."""
        anchor = self.root
        gitignore_dirs = self._ancestor_gitignores(path) if self.respect_gitignore else []
        return self.ignored(path, is_dir, anchor, gitignore_dirs)


def _broken_link_error(path: str) -> PathError:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return PathError(path, "symbolic link loop")
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return PathError(path, f"broken symbolic link (points to {os.readlink(path)!r})")
        return PathError(path, f"cannot access: {exc.strerror}")
    return PathError(path, "cannot access")


def _walk(root: Path, shown_root: str, ignorer: _Ignorer, out: Discovered) -> Iterator[str]:
    anchor, outer = ignorer.anchors_for(root.absolute())
    stack: list[tuple[Path, str, list[Path]]] = [(root.absolute(), shown_root, outer)]
    while stack:
        directory, shown, gitignore_dirs = stack.pop()
        if ignorer.respect_gitignore and ignorer._gitignore(directory) is not None:
            gitignore_dirs = [*gitignore_dirs, directory]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            out.errors.append(PathError(shown, f"cannot list directory: {exc.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            path = directory / entry.name
            shown_entry = os.path.join(shown, entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if ignorer.ignored(path, is_dir, anchor, gitignore_dirs):
                continue
            if is_dir:
                subdirs.append((path, shown_entry, gitignore_dirs))
            elif entry.name.endswith(PYTHON_SUFFIXES):
                if entry.is_symlink() and not os.path.exists(path):
                    out.errors.append(_broken_link_error(shown_entry))
                elif entry.is_file():
                    yield shown_entry
        stack.extend(reversed(subdirs))


def discover(
    paths: Iterable[str],
    exclude: Iterable[str],
    root: Path,
    force_exclude: bool = False,
    respect_gitignore: bool = True,
) -> Discovered:
    """Expand `paths` into the Python files to process, each once, in a stable order."""
    exclude = tuple(exclude)
    ignorers: list[_Ignorer] = []

    def ignorer() -> _Ignorer:
        if not ignorers:
            ignorers.append(_Ignorer(exclude, root, respect_gitignore))
        return ignorers[0]

    out = Discovered([], [])
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.files.append(display_path(path))

    for given in paths:
        if not os.path.exists(given):
            if os.path.islink(given):
                out.errors.append(_broken_link_error(given))
            else:
                out.errors.append(PathError(given, "no such file or directory"))
            continue
        is_dir = os.path.isdir(given)
        if force_exclude and ignorer().force_excluded(Path(given).absolute(), is_dir):
            continue
        if is_dir:
            for found in _walk(Path(given), given, ignorer(), out):
                add(found)
        elif os.path.isfile(given):
            add(given)
        else:
            out.errors.append(PathError(given, "not a regular file"))
    return out


def is_excluded(path: str, exclude: Iterable[str], root: Path, respect_gitignore: bool = True) -> bool:
    """--force-exclude for a path that is not walked (`--stdin-filename`)."""
    return _Ignorer(exclude, root, respect_gitignore).force_excluded(Path(path).absolute(), False)
