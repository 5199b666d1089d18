"""The Finding record every analysis produces and every output format consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at one place. `line` and `col` are 1-based, as editors and ruff print them."""

    path: str
    line: int
    col: int
    code: str
    message: str
    fixable: bool = False  # `apply` rewrites it (with --unsafe-fixes, where `unsafe`)
    unsafe: bool = False  # the fix rests on an assumption the analysis cannot prove
