"""The summary's layout: its type and version, apart from the code that computes it.

Why a module of its own: a warm run reads summaries from the store and links them without computing
any, so it must not import what computes them (the analysis, tens of milliseconds of imports).
"""

from __future__ import annotations

from typing import Any

# Bumped when the layout of a summary changes (the store keys summaries by it too).
VERSION = 3

Summary = dict[str, Any]
