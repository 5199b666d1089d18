"""What the rest of the project says about one file: the only input of its analysis from other files.

Why a separate, small object: the analysis of a file must depend on nothing else from the project, so
that its findings can be cached by the file's bytes plus this view's digest (a changed fact changes
the digest, and a stale finding is never served), and so that worker processes get only this.
Every fact names where it comes from (`file:line`), for the findings' messages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

try:  # hashlib's own blake2b, without hashlib's OpenSSL import (as ckptfix.cache)
    from _blake2 import blake2b
except ImportError:  # not CPython
    from hashlib import blake2b


@dataclass(frozen=True)
class ImportedFact:
    """A project function (or flag) this file names through an import. Kinds are guards.Kind values
    (0: no such fact)."""

    where: str  # "utils.py:9": where it is defined
    saves: str | None = None  # "utils.py:10": where it writes a checkpoint, through helpers at any depth
    dest: tuple[str, ...] = ()  # the arguments (position, keyword) that name the path it writes
    collective: str | None = None  # "torch.distributed.all_gather (utils.py:22)"
    syncs: str | None = None  # where it meets a barrier every rank of its caller reaches
    predicate: int = 0  # it returns (or is) a main-process test
    rank: bool = False  # it returns a rank or a text built from one
    decorator: int = 0  # a decorator that runs what it decorates on the main process only


@dataclass(frozen=True)
class ExternalSite:
    """A call of (or reference to) one of this file's functions from another file of the project."""

    where: str  # "train.py:17"
    call: bool  # False: passed as a value (a hook, a callback): where it runs is not seen
    guard: int  # the main-process guard that call runs under (its own, or its caller's), 0: none
    rank_args: tuple[str, ...] = ()  # arguments (position or keyword) that carry a rank
    param_args: tuple[str, ...] = ()  # arguments that come from the calling function's parameters
    # Every rank makes this call, as far as the project shows: no branch, loop or handler around it
    # in its function, and the same of every call of that function, up to module-level code.
    alike: bool = False


@dataclass(frozen=True)
class ProjectView:
    """Facts of other files, by the name this file's analysis asks for: `imported` by the dotted name
    `Names.resolve` gives an imported expression, `callers` by the qualified name of a function of
    this file (`f`, `Class.m`). `library`: public functions of a packaged library module, which code
    outside the project may call on any ranks."""

    imported: dict[str, ImportedFact] = field(default_factory=dict)
    callers: dict[str, tuple[ExternalSite, ...]] = field(default_factory=dict)
    library: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.imported or self.callers or self.library)

    @cached_property
    def digest(self) -> bytes:
        """A digest of every fact (empty for an empty view: the findings of a file no other file
        touches are cached as before)."""
        if not self:
            return b""
        data = {
            "imported": {k: asdict(v) for k, v in self.imported.items()},
            "callers": {k: [asdict(s) for s in v] for k, v in self.callers.items()},
            "library": sorted(self.library),
        }
        return blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=20).digest()

    @property
    def distributed(self) -> str | None:
        """Where the main-process predicate or flag of another file is that this file uses
        (`comm.leader()`): it is then analysed even when its own imports and bytes do not say it is
        distributed code. (Calling a function that runs a collective somewhere is not enough: test
        files and tools do that on one process.)"""
        return next((f"`{name}` ({f.where})" for name, f in self.imported.items() if f.predicate), None)

    def fact(self, resolved: str | None) -> ImportedFact | None:
        return self.imported.get(resolved) if resolved is not None else None


EMPTY = ProjectView()
