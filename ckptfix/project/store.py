"""Summaries cached by file content, one pack per project next to the findings cache.

Why one pack and not one file per summary: a warm run links every summary of the project, and one
read of one file costs a fraction of opening two thousand small ones. The pack is `marshal` data (plain
dicts, lists, strings and numbers: read five times faster than JSON, and unlike pickle it runs no code
from the file); anything that does not load, or loads as something else, is an empty pack. Entries
are keyed by a digest of the file's bytes (under a key that covers ckptfix's own code and the summary
layout), so a changed file is a miss and its stale summary is never used; the pack is rewritten,
atomically, only when a run computed a summary it did not have (or saw a file change), and then holds
the current files' entries only.

So that a warm run need not read and hash every file of the project, the pack also remembers each
file's (mtime, size, inode) with the key of the content read then, as git's index does: a file whose
stat is unchanged has the same content. Like git, it does not trust a stat taken within two seconds
of the file's last change (a second change in the same clock tick would keep the stat): such a file
is read again next time.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import time
from typing import Any

from ckptfix.cache import code_key
from ckptfix.project.layout import VERSION, Summary

try:
    from _blake2 import blake2b
except ImportError:  # not CPython
    from hashlib import blake2b


def content_key(data: bytes) -> str:
    """The key of one file's bytes."""
    return blake2b(data, digest_size=16, key=_run_key()).hexdigest()


_RUN_KEY: bytes | None = None
_RACY_NS = 2_000_000_000


def _run_key() -> bytes:
    global _RUN_KEY
    if _RUN_KEY is None:
        _RUN_KEY = blake2b(code_key() + f"summary-{VERSION}".encode(), digest_size=32).digest()
    return _RUN_KEY


class SummaryStore:
    """The pack of one project root in `directory`, the findings cache's (which the run has already
    created and found writable; None: nothing is read or written)."""

    def __init__(self, directory: str | None, root: str) -> None:
        self.path = None
        if directory is not None:
            name = blake2b(os.path.abspath(root).encode(), digest_size=8).hexdigest()
            self.path = os.path.join(directory, f"project-{name}.marshal")
        self.entries: dict[str, Summary] = {}
        self.stats: dict[str, list[Any]] = {}
        self._read()
        self.used: dict[str, Summary] = {}
        self.seen: dict[str, list[Any]] = {}
        self.added = 0
        self._trusted_before = time.time_ns() - _RACY_NS

    def _read(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                data: Any = marshal.loads(f.read())  # marshal.load(f) reads in small pieces
        except (OSError, ValueError, EOFError, TypeError):
            return  # no pack yet, or a broken one: every summary is a miss
        if not isinstance(data, dict) or data.get("key") != _run_key().hex():
            return
        entries, stats = data.get("entries"), data.get("stats")
        if isinstance(entries, dict) and isinstance(stats, dict):
            self.entries, self.stats = entries, stats

    def known(self, path: str, stat: os.stat_result) -> tuple[str, int] | None:
        """(content key, kind) recorded for the file when its stat was the same; None: read it."""
        found = self.stats.get(path)
        if (
            isinstance(found, list)
            and len(found) == 5
            and found[:3] == [stat.st_mtime_ns, stat.st_size, stat.st_ino]
            and isinstance(found[3], str)
            and isinstance(found[4], int)
        ):
            return found[3], found[4]
        return None

    def record(self, path: str, stat: os.stat_result, key: str, kind: int) -> None:
        """What a file held at this stat (`kind`: the build's triage), unless the stat is too fresh to
        be trusted."""
        if stat.st_mtime_ns < self._trusted_before:
            self.seen[path] = [stat.st_mtime_ns, stat.st_size, stat.st_ino, key, kind]

    def get(self, key: str) -> Summary | None:
        found = self.entries.get(key)
        if isinstance(found, dict) and found.get("v") == VERSION:
            self.used[key] = found
            return found
        return None

    def put(self, key: str, summary: Summary) -> None:
        self.used[key] = summary
        self.added += 1

    def save(self) -> str | None:
        """Write the pack when something was added; why it could not be written, if it could not
        (the run goes on: an unwritable directory only costs the next run's speed)."""
        if self.path is None or not (self.added or self.seen != self.stats):
            return None
        content = marshal.dumps({"key": _run_key().hex(), "entries": self.used, "stats": self.seen})
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as f:
                f.write(content)
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return f"cannot write the project summaries to {self.path}: {exc.strerror or exc}"
        return None
