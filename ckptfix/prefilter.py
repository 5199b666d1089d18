"""Which files can have findings, judged from their bytes before they are decoded or parsed.

Parsing is most of what a check costs, so nearly every file of a real tree must be ruled out here.
Every test below is a necessary condition of some finding: a file it rules out has none.

Why spelling is enough: the analysis resolves a call through imports and simple aliases
(`analysis.names.Names`), and every part of the name it resolves to is written somewhere in the file,
in the call's attribute chain, in an import or in an alias's right-hand side. So `torch.save` needs
the identifier `save` in the file, and `torch.distributed.init_process_group` needs
`init_process_group`.

Two stages. Substrings first, on every file (`in` runs at memory speed): a distributed marker, then a
write, barrier or process-group marker, or a collective with a main-process guard marker. Then, on the
few files left, the names the analysis matches exactly, as whole identifiers: `save` (not the
`save_for_backward` all over autograd code), `init_process_group` (not a `process_group=` argument),
the collectives' own names (not `reduce` in `reduced`), each outside comments (see below: every name
the analysis matches is one the code itself spells). A file must pass both, so stage two can only rule
out more than stage one did.

Stage two's distributed test (analysis.distributed.is_distributed) is tighter still. A module name
starting with a DISTRIBUTED_MODULE_PREFIXES entry has, as its component where the prefix's last one
is, an identifier that begins with that last component (`distributed`, `DistributedDataParallel`,
`pytorch_lightning`, ...): the file spells it at the start of an identifier, and not in a comment (a
line whose text before the word has a `#` but no quote or `{` is a comment there, or a string the
line started in: no quote closes it, no `{` opens an f-string field). A launcher variable is a string
constant equal to its name: its spelling ends a string piece, so a quote, `{` (an f-string field
follows) or a backslash (the string goes on on the next line) comes right after it.
"""

from __future__ import annotations

import re

from ckptfix.analysis import catalog
from ckptfix.options import Options

# Bytes that can continue an identifier: ASCII letters, digits, `_`, and any byte of a non-ASCII
# character (a word glued to one is a different identifier).
_IDENTIFIER_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") | frozenset(
    range(0x80, 0x100)
)


def _last_part(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


# The module is distributed code (analysis.distributed.is_distributed): an import or attribute chain
# under a DISTRIBUTED_MODULE_PREFIXES entry (an identifier starting with the prefix's last part), or
# a launcher variable (the end of a string constant).
DISTRIBUTED_STARTS = tuple(sorted({_last_part(prefix) for prefix in catalog.DISTRIBUTED_MODULE_PREFIXES}))
LAUNCHER_CONSTANT = re.compile(
    b"(?:" + b"|".join(re.escape(v.encode()) for v in sorted(catalog.LAUNCHER_ENV_VARS)) + rb")[\"'{\\]"
)

# Calls the analysis treats as checkpoint writes (analysis.saves.SaveFinder.target_of), and the
# process-group calls CKP004 looks for.
SAVE_NAMES = tuple(
    sorted(
        {_last_part(n) for n in (catalog.TORCH_SAVE, *catalog.SAFETENSORS_SAVES, *catalog.RUNTIME_SAVES)}
        | {catalog.HF_SAVE_PRETRAINED, *catalog.DELEGATED_MAIN_SAVES}
    )
)
PROCESS_GROUP_NAMES = (_last_part(catalog.INIT_PROCESS_GROUP), _last_part(catalog.DESTROY_PROCESS_GROUP))
# CKP006 needs a call every rank makes under a main-process guard: a collective itself, or a loop
# that syncs (collectives, barrier-like helpers, DDP's backward) left by a `break` or a `while` flag.
COLLECTIVE_NAMES = tuple(
    sorted(
        {_last_part(n) for n in catalog.COLLECTIVES}
        | catalog.COLLECTIVE_METHODS
        | set(catalog.RECEIVER_COLLECTIVES)
    )
)
LOOP_SYNC_NAMES = tuple(sorted(catalog.BARRIER_LIKE_NAMES | {"backward"}))
LOOP_EXITS = (b"break", b"while")
# How a main-process guard is spelled (analysis.guards), looked for in the lower-cased text (the
# analysis lower-cases rank names too): rank numbers (any name containing "rank", the other rank
# names, launcher variables) as substrings, predicates and decorators as whole identifiers.
GUARD_SUBSTRINGS = tuple(
    hint.lower().encode()
    for hint in ("rank", *catalog.LOCAL_RANK_HINTS, *catalog.GLOBAL_RANK_ENV, *catalog.LOCAL_RANK_ENV)
)
GUARD_NAMES = tuple(
    sorted(
        name.lower()
        for name in catalog.MAIN_PREDICATES
        | catalog.LOCAL_MAIN_PREDICATES
        | catalog.MAIN_ONLY_DECORATORS
        | catalog.LOCAL_ONLY_DECORATORS
        | catalog.LOCAL_RANK_CALLS
        | catalog.LOCAL_RANK_NAMES
        | catalog.GLOBAL_RANK_NAMES
    )
)


def might_need_work(data: bytes, options: Options) -> bool:
    """False means the file cannot have findings, so it need not be decoded or parsed."""
    return _has_markers(data, options) and _has_identifiers(data, options)


def _has_markers(data: bytes, options: Options) -> bool:
    """Stage one, substrings: distributed code, and either a write, a barrier or a process group, or
    a collective under a main-process guard (catalog.*_MARKERS; tests keep them in step)."""
    if not (options.assume_distributed or any(m in data for m in catalog.DISTRIBUTED_MARKERS)):
        return False
    extra = [_last(name) for name in options.extra_save_functions]
    if any(marker in data for marker in (*catalog.WRITE_MARKERS, *extra)):
        return True
    guards = [_last(name) for name in options.extra_main_predicates]
    if not any(m in data for m in catalog.COLLECTIVE_MARKERS):
        return False
    lowered = data.lower()
    return any(m in lowered for m in catalog.GUARD_MARKERS) or any(g in data for g in guards)


def _has_identifiers(data: bytes, options: Options) -> bool:
    """Stage two, on what stage one let through: the names the analysis matches, spelled out."""
    if not (options.assume_distributed or _distributed(data)):
        return False
    if any(_last(name) in data for name in options.extra_save_functions):
        return True
    if b"barrier" in data:  # torch's barriers; any barrier-like name also syncs a loop (CKP006)
        return True
    if any(_has_identifier(data, name) for name in (*SAVE_NAMES, *PROCESS_GROUP_NAMES)):
        return True
    return _guarded_sync(data, options)


def _distributed(data: bytes) -> bool:
    """Code that can be distributed: a prefix's last part starting an identifier outside a comment,
    or a launcher variable's name ending a string."""
    return any(_starts_identifier(data, word) for word in DISTRIBUTED_STARTS) or (
        LAUNCHER_CONSTANT.search(data) is not None
    )


def _starts_identifier(data: bytes, word: str) -> bool:
    """`word` begins an identifier in `data` somewhere outside a comment."""
    encoded = word.encode()
    start = data.find(encoded)
    while start >= 0:
        if (start == 0 or data[start - 1] not in _IDENTIFIER_BYTES) and not _in_comment(data, start):
            return True
        start = data.find(encoded, start + 1)
    return False


def _in_comment(data: bytes, at: int) -> bool:
    """The line holds a `#` before `at` and no quote or `{`: `at` is in a comment, or in a string
    the line started in (no quote closes it, no `{` opens an f-string field). Python ends a line at
    LF, CR or CRLF."""
    line = data[max(data.rfind(b"\n", 0, at), data.rfind(b"\r", 0, at)) + 1 : at]
    return b"#" in line and b'"' not in line and b"'" not in line and b"{" not in line


def _guarded_sync(data: bytes, options: Options) -> bool:
    """A call every rank makes, and a main-process guard (CKP006)."""
    syncs = any(_has_identifier(data, name) for name in COLLECTIVE_NAMES) or (
        any(word in data for word in LOOP_EXITS) and any(_has_identifier(data, n) for n in LOOP_SYNC_NAMES)
    )
    if not syncs:
        return False
    if any(_last(name) in data for name in options.extra_main_predicates):
        return True
    lowered = data.lower()
    return any(hint in lowered for hint in GUARD_SUBSTRINGS) or any(
        _has_identifier(lowered, name) for name in GUARD_NAMES
    )


def _last(dotted: str) -> bytes:
    return _last_part(dotted).encode()


def _has_identifier(data: bytes, name: str) -> bool:
    """`name` occurs in `data` as a whole identifier (not inside a longer one), outside a comment."""
    word = name.encode()
    size = len(data)
    start = data.find(word)
    while start >= 0:
        end = start + len(word)
        if (
            (start == 0 or data[start - 1] not in _IDENTIFIER_BYTES)
            and (end == size or data[end] not in _IDENTIFIER_BYTES)
            and not _in_comment(data, start)
        ):
            return True
        start = data.find(word, end)
    return False
