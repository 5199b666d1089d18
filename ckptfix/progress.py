"""A one-line progress bar on stderr, for runs long enough to need one and only on a terminal.

Piped or captured stderr (CI logs, pre-commit, editors) never sees it: carriage-return redraws
would turn into thousands of lines there.
"""

from __future__ import annotations

import time
from typing import TextIO

# Below this many files a run takes well under a second and a bar would only flicker.
MIN_FILES = 50


class Progress:
    """Counts finished files; draws at most ten times a second."""

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total >= MIN_FILES and stream.isatty()
        self.done = 0
        self._last_draw = 0.0

    def _draw(self) -> None:
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} files")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= 0.1 or self.done == self.total:
            self._last_draw = now
            self._draw()

    def echo(self, message: str) -> None:
        """A line of its own on stderr, with the bar (if any) redrawn below it."""
        if self.enabled and self._last_draw:
            self.stream.write("\r\033[K" + message + "\n")
            self._draw()
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Erase the bar so the summary starts on a clean line."""
        if self.enabled and self._last_draw:
            self.stream.write("\r\033[K")
            self.stream.flush()
