"""A findings cache for repeated `ckptfix check` runs (pre-commit, CI), like ruff's `.ruff_cache`.

Parsing and analysing the files the byte prefilter lets through is nearly all a check costs, and a
repeated run sees the same bytes again. So the findings of each analysed file are stored under a key
that covers everything they depend on: the file's bytes, every field of the resolved Options, and
ckptfix's own code (its .py files' contents, and the Python version whose `ast` parses the files; the
package version alone does not change while ckptfix is developed). The analysis never looks at the
path, so an entry holds findings without it and a hit re-attaches the path asked for: a file that is
moved or copied still hits. What the other files of the project say of a file (ckptfix.project) is part
of the key too (its digest): when another file changes a fact this file's findings rest on, the entry
is a miss.

Storage is one small JSON file per entry, `<dir>/<2 hex>/<38 hex>.json`, written to a temporary name
and renamed into place: concurrent `-j` workers and concurrent ckptfix processes can only ever see a
whole entry or none, and two writers of one entry write the same bytes. An entry that cannot be read
or does not have the expected shape is a miss, and the next analysis of that file rewrites it. A cache
directory that cannot be created or written makes the run go on without the cache, after one warning.

Entries are content-addressed: a changed file, option or ckptfix version adds entries and never
rewrites old ones, so the directory only grows (about 100 bytes per analysed file version);
`rm -rf .ckptfix_cache` empties it at any time, also during a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

from ckptfix import packages, testfiles
from ckptfix.findings import Finding
from ckptfix.options import Options

try:  # hashlib's own blake2b, without hashlib's OpenSSL import (10 ms of a 70 ms one-file run)
    from _blake2 import blake2b
except ImportError:  # not CPython
    from hashlib import blake2b

# Bumped when an entry's layout changes: old entries then simply stop matching.
_FORMAT = b"ckptfix-cache-2"
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by ckptfix.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_Row = tuple[int, int, str, str, bool, bool]


@cache
def code_key() -> bytes:
    """A digest of ckptfix's own source and the running Python's version, computed once per process.

    Any edit to any .py file of the package (an analysis rule, a message, the prefilter's catalog)
    makes every entry a miss; reading the package's ~300 kB costs about a millisecond.
    """
    return source_digest(os.path.dirname(os.path.abspath(__file__)))


def source_digest(package: str) -> bytes:
    """A digest of the .py files under `package` (names and contents) and of the Python version."""
    digest = blake2b(_FORMAT, digest_size=20)
    digest.update(sys.version.encode())
    paths: list[str] = []
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        paths.extend(os.path.join(directory, name) for name in files if name.endswith(".py"))
    for path in sorted(paths):
        with open(path, "rb") as f:
            content = f.read()
        digest.update(f"\0{os.path.relpath(path, package)}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.digest()


def path_context(path: str) -> str:
    """What a file's place says about its findings, beside its bytes: a test file's and an installable
    package's fixes are unsafe, so the same bytes elsewhere are another entry."""
    if testfiles.is_test_file(path):
        return "test"
    package = packages.installable_package(path)
    return "" if package is None else f"package:{package[1]}"


def options_key(options: Options) -> bytes:
    """Every field of `options`, in a stable spelling (a field added later is covered unasked)."""

    def stable(value: object) -> object:
        return sorted(value) if isinstance(value, frozenset | set) else value

    fields = {f.name: stable(getattr(options, f.name)) for f in dataclasses.fields(options)}
    return json.dumps(fields, sort_keys=True).encode()


@dataclass(frozen=True)
class Cache:
    """Findings by file content, for one run's options and code. Picklable, for the worker processes.

    Nothing here raises: a failed read is a miss, a failed write is skipped (the directory was found
    writable when the run started; a later failure, like a full disk, only costs speed).
    """

    directory: str
    run_key: bytes  # digest of options_key and code_key

    def _entry(self, path: str, data: bytes, facts: bytes = b"") -> str:
        digest = blake2b(data, digest_size=20, key=self.run_key)
        digest.update(b"\0" + path_context(path).encode())
        if facts:  # what the project's other files say of this one (ProjectView.digest)
            digest.update(b"\0project\0" + facts)
        name = digest.hexdigest()
        return os.path.join(self.directory, name[:2], name[2:] + ".json")

    def load(self, path: str, data: bytes, facts: bytes = b"") -> tuple[Finding, ...] | None:
        """The findings stored for these bytes (and these facts of the other files of the project),
        reported at `path`; None on a miss or a bad entry."""
        try:
            with open(self._entry(path, data, facts), "rb") as f:
                rows = json.load(f)
            return tuple(Finding(path, *_row(row)) for row in rows)
        except (OSError, ValueError, TypeError):
            return None

    def store(self, path: str, data: bytes, findings: Iterable[Finding], facts: bytes = b"") -> None:
        """Record the findings of these bytes under these facts (their path is left out, but not what
        it says about them)."""
        rows = [[f.line, f.col, f.code, f.message, f.fixable, f.unsafe] for f in findings]
        content = json.dumps(rows).encode()
        entry = self._entry(path, data, facts)
        try:
            try:
                _replace(entry, content)
            except FileNotFoundError:  # the first entry of its shard, or the cache was removed
                os.makedirs(os.path.dirname(entry), exist_ok=True)
                _replace(entry, content)
        except OSError:
            pass


def _row(row: object) -> _Row:
    """One stored finding, checked: anything of another shape raises TypeError (a miss)."""
    if not (isinstance(row, list) and len(row) == 6):
        raise TypeError("not a finding")
    line, col, code, message, fixable, unsafe = row
    if not (
        type(line) is int
        and type(col) is int
        and isinstance(code, str)
        and isinstance(message, str)
        and type(fixable) is bool
        and type(unsafe) is bool
    ):
        raise TypeError("not a finding")
    return line, col, code, message, fixable, unsafe


def _replace(path: str, content: bytes) -> None:
    """Write `path` atomically: readers see the old file or the whole new one, never a part."""
    temporary = f"{path}.{os.getpid()}.tmp"  # one writer per process at a time
    try:
        with open(temporary, "wb") as f:
            f.write(content)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_cache(directory: str, options: Options, warn: Callable[[str], None]) -> Cache | None:
    """The cache in `directory`, created with a CACHEDIR.TAG and a `.gitignore` of `*` (backup tools
    and git then leave it alone); None, after one `warn`, when it cannot be created or written (a
    directory this call created is then removed again: a full disk gets no debris)."""
    created = not os.path.isdir(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        for name, content in (("CACHEDIR.TAG", _CACHEDIR_TAG), (".gitignore", "*\n")):
            marker = os.path.join(directory, name)
            if not os.path.exists(marker):
                _replace(marker, content.encode())
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("permission denied")
    except OSError as exc:
        if created:
            import shutil  # only on this rare path

            shutil.rmtree(directory, ignore_errors=True)
        warn(f"cache directory {directory} is not usable ({exc.strerror or exc}); running without the cache")
        return None
    run_key = blake2b(options_key(options) + b"\0" + code_key(), digest_size=32).digest()
    return Cache(os.path.abspath(directory), run_key)
