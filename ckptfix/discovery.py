"""Which files a run looks at: Python files under the given paths, minus excludes and .gitignore'd ones.

Conventions follow ruff: a path named on the command line is always checked unless --force-exclude
(which pre-commit needs, because it names every staged file); inside a directory, excluded and
git-ignored entries are skipped and symlinked directories are not followed (no loops, no escaping
the tree). Anything that cannot be a file to check is reported as a per-path error, never a crash.

Patterns are gitignore patterns, matched entry by entry while walking (an excluded directory is not
entered), so a directory the user names explicitly is walked even when it lies inside an excluded one.
Paths are plain strings here: on a tree of thousands of files, pathlib's objects cost more than the walk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

PYTHON_SUFFIXES = (".py", ".pyi")
_GLOB_CHARS = frozenset("*?[]!\\/")


@dataclass(frozen=True)
class PathError:
    """A path that was asked for (or found) but cannot be processed."""

    path: str
    message: str


@dataclass
class Discovered:
    files: list[str]
    errors: list[PathError]


def display_path(path: str, cwd: str | None = None) -> str:
    """Paths as users typed them, relative to the working directory where that is shorter."""
    absolute = os.path.abspath(path)
    cwd = cwd or os.getcwd()
    if absolute == cwd or absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return os.path.normpath(path)


class Patterns:
    """Gitignore-style patterns anchored at one directory.

    Plain names (`build`, `.venv`, the whole default list) are a set lookup on the entry's name; only
    patterns with globs or slashes go through pathspec. With a negation (`!keep.py`) order matters,
    so then everything goes through pathspec.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        import pathspec  # not needed, and not imported, for a run on explicitly named files

        lines = [line.rstrip("\n") for line in lines]
        lines = [line for line in lines if line.strip() and not line.startswith("#")]
        plain, dir_only, rest = set(), set(), []
        negated = any(line.startswith("!") for line in lines)
        for line in lines:
            if not negated and not _GLOB_CHARS & set(line):
                plain.add(line)
            elif not negated and line.endswith("/") and not _GLOB_CHARS & set(line[:-1]):
                dir_only.add(line[:-1])
            else:
                rest.append(line)
        self.names = frozenset(plain)
        self.dir_names = frozenset(dir_only)
        self.spec: pathspec.GitIgnoreSpec | None = pathspec.GitIgnoreSpec.from_lines(rest) if rest else None

    def matches(self, rel: str, is_dir: bool) -> bool:
        """Whether the entry at `rel` (posix, relative to the anchor) is itself excluded."""
        name = rel.rsplit("/", 1)[-1]
        if name in self.names or (is_dir and name in self.dir_names):
            return True
        return self.spec is not None and self.spec.match_file(rel + "/" if is_dir else rel)

    def covers(self, rel: str, is_dir: bool) -> bool:
        """Whether `rel` or any directory on the way to it is excluded (for paths not met by walking)."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self.matches("/".join(parts[:i]), True):
                return True
        return self.matches(rel, is_dir)


def _relative(path: str, anchor: str) -> str | None:
    """`path` relative to `anchor` in posix form, or None when it is not below it."""
    if not path.startswith(anchor.rstrip(os.sep) + os.sep):
        return None
    rel = path[len(anchor.rstrip(os.sep)) + 1 :]
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


class _Ignorer:
    """Exclude patterns plus every .gitignore met on the way, each anchored at its own directory."""

    def __init__(self, exclude: Iterable[str], root: str | os.PathLike[str], respect_gitignore: bool) -> None:
        self.exclude = Patterns(exclude)
        self.root = os.path.abspath(root)
        self.respect_gitignore = respect_gitignore
        self._gitignores: dict[str, Patterns | None] = {}

    def gitignore(self, directory: str) -> Patterns | None:
        if directory not in self._gitignores:
            try:
                with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as f:
                    self._gitignores[directory] = Patterns(f)
            except OSError:
                self._gitignores[directory] = None
        return self._gitignores[directory]

    def _outer_dirs(self, path: str) -> list[str]:
        """Directories above `path`, up to the enclosing git checkout, whose .gitignore applies to it.

        Outside a git checkout only .gitignore files inside the walked tree count.
        """
        if not self.respect_gitignore:
            return []
        chain = []
        directory = os.path.dirname(path)
        while True:
            chain.append(directory)
            if os.path.exists(os.path.join(directory, ".git")):
                return chain
            parent = os.path.dirname(directory)
            if parent == directory:
                return []
            directory = parent

    def _git_ignores(self, directory: str, path: str, is_dir: bool) -> bool:
        patterns = self.gitignore(directory)
        rel = _relative(path, directory)
        return patterns is not None and rel is not None and patterns.covers(rel, is_dir)

    def walk_context(self, walk_root: str) -> tuple[str, list[str]]:
        """Anchor for exclude patterns, and the outer .gitignore dirs, for a walk from `walk_root`.

        A directory the user names is walked even when the patterns exclude it (a package inside
        .venv, a build output): the exclude patterns restart at it, so `__pycache__` and friends
        inside are still skipped, and .gitignore files that ignore it as a whole are not applied.
        """
        anchor = self.root
        rel = _relative(walk_root, anchor)
        if rel is None or self.exclude.covers(rel, True):
            anchor = walk_root
        outer = [
            directory
            for directory in self._outer_dirs(walk_root)
            if self.gitignore(directory) is not None and not self._git_ignores(directory, walk_root, True)
        ]
        return anchor, outer

    def ignored(self, path: str, is_dir: bool, anchor: str, gitignore_dirs: Iterable[str]) -> bool:
        """While walking: whether this entry (its ancestors were already let through) is skipped."""
        rel = _relative(path, anchor)
        if rel is not None and self.exclude.matches(rel, is_dir):
            return True
        for directory in gitignore_dirs:
            patterns = self.gitignore(directory)
            rel = _relative(path, directory)
            if patterns is not None and rel is not None and patterns.matches(rel, is_dir):
                return True
        return False

    def force_excluded(self, path: str, is_dir: bool) -> bool:
        """--force-exclude: a named path is judged as if the walk from the project root had met it."""
        rel = _relative(path, self.root)
        if rel is not None and self.exclude.covers(rel, is_dir):
            return True
        return any(self._git_ignores(directory, path, is_dir) for directory in self._outer_dirs(path))


def _unusable_link(path: str) -> PathError:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return PathError(path, "symbolic link loop")
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return PathError(path, f"broken symbolic link (points to {os.readlink(path)!r})")
        return PathError(path, f"cannot access: {exc.strerror}")
    return PathError(path, "cannot access")


def _walk(root: str, shown_root: str, ignorer: _Ignorer, out: Discovered) -> Iterator[tuple[str, str]]:
    """(shown path, real path) of each file to check under `root`.

    Symlinked directories are not entered, so below the real path of `root` a file's real path is
    a plain join; only a symlinked file needs os.path.realpath (one lstat per path component).
    """
    anchor, outer = ignorer.walk_context(root)
    stack: list[tuple[str, str, str, list[str]]] = [(root, shown_root, os.path.realpath(root), outer)]
    while stack:
        directory, shown, real, gitignore_dirs = stack.pop()
        if ignorer.respect_gitignore and ignorer.gitignore(directory) is not None:
            gitignore_dirs = [*gitignore_dirs, directory]
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.errors.append(PathError(shown, f"cannot list directory: {exc.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir and not entry.name.endswith(PYTHON_SUFFIXES):
                continue
            if ignorer.ignored(entry.path, is_dir, anchor, gitignore_dirs):
                continue
            shown_entry = os.path.join(shown, entry.name)
            real_entry = os.path.join(real, entry.name)
            if is_dir:
                subdirs.append((entry.path, shown_entry, real_entry, gitignore_dirs))
                continue
            try:
                is_file = entry.is_file()  # follows a symlinked file
            except OSError:
                is_file = False
            if is_file:
                yield shown_entry, os.path.realpath(real_entry) if entry.is_symlink() else real_entry
            elif entry.is_symlink() and not os.path.isdir(entry.path):
                out.errors.append(_unusable_link(shown_entry))
        stack.extend(reversed(subdirs))


def discover(
    paths: Iterable[str],
    exclude: Iterable[str],
    root: str | os.PathLike[str],
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
    cwd = os.getcwd()

    def add(path: str, real: str) -> None:
        if real not in seen:
            seen.add(real)
            out.files.append(display_path(path, cwd))

    for given in paths:
        if not os.path.exists(given):
            if os.path.islink(given):
                out.errors.append(_unusable_link(given))
            else:
                out.errors.append(PathError(given, "no such file or directory"))
            continue
        is_dir = os.path.isdir(given)
        if force_exclude and ignorer().force_excluded(os.path.abspath(given), is_dir):
            continue
        if is_dir:
            for found, real in _walk(os.path.abspath(given), given, ignorer(), out):
                add(found, real)
        elif os.path.isfile(given):
            add(given, os.path.realpath(given))
        else:
            out.errors.append(PathError(given, "not a regular file"))
    return out


def project_files(
    directory: str,
    exclude: Iterable[str],
    root: str | os.PathLike[str],
    respect_gitignore: bool = True,
    limit: int | None = None,
) -> list[str] | None:
    """The absolute paths of the Python files under `directory`, excludes and .gitignore applied as
    for a walked directory (the project model reads them; unreadable directories are skipped, as
    they hold no fact a run can use); None when there are more than `limit`."""
    top = os.path.abspath(directory)
    out = Discovered([], [])
    found: list[str] = []
    for path, _ in _walk(top, top, _Ignorer(tuple(exclude), root, respect_gitignore), out):
        found.append(path)
        if limit is not None and len(found) > limit:
            return None
    return found


def is_excluded(
    path: str, exclude: Iterable[str], root: str | os.PathLike[str], respect_gitignore: bool = True
) -> bool:
    """--force-exclude for a path that is not walked (`--stdin-filename`)."""
    return _Ignorer(exclude, root, respect_gitignore).force_excluded(os.path.abspath(path), False)
