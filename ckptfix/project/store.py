"""Summaries cached by file content, one pack per project next to the findings cache.

Why one pack and not one file per summary: a warm run links every summary of the project, and one
read of one JSON file costs a fraction of opening two thousand small ones. Entries are keyed by a
digest of the file's bytes (under a key that covers ckptfix's own code and the summary layout), so a
changed file is a miss and its stale summary is never used; the pack is rewritten, atomically, only
when a run computed a summary it did not have, and then holds the current files' entries only.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from ckptfix.cache import code_key
from ckptfix.project.summary import VERSION, Summary

try:
    from _blake2 import blake2b
except ImportError:  # not CPython
    from hashlib import blake2b


def content_key(data: bytes) -> str:
    """The key of one file's bytes."""
    return blake2b(data, digest_size=16, key=_run_key()).hexdigest()


_RUN_KEY: bytes | None = None


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
            self.path = os.path.join(directory, f"project-{name}.json")
        self.entries: dict[str, Summary] = self._read()
        self.used: dict[str, Summary] = {}
        self.added = 0

    def _read(self) -> dict[str, Summary]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as f:
                data: Any = json.load(f)
        except (OSError, ValueError):
            return {}  # no pack yet, or a broken one: every summary is a miss
        if not isinstance(data, dict) or data.get("key") != _run_key().hex():
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

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
        if self.path is None or not self.added:
            return None
        content = json.dumps({"key": _run_key().hex(), "entries": self.used}, separators=(",", ":")).encode()
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
