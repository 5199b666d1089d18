"""Building the project model for a run: find the root, read the files, summarise the few that matter.

Why not summarise every file: most files of a project (and nearly all of a library like torch) can
carry no fact a checkpoint rule needs. A file is summarised when its bytes could define one (a save,
a collective, a barrier, a rank or main-process test) or could call a function that has one (its
bytes spell that function's name: every static call or import of a function spells it). The second
set grows as facts are found (a helper that calls a saving helper saves too), so it is worked out in
rounds until no new file joins.

A file whose stat the summary store vouches for is not read at all (ckptfix.project.store); the others
are read once, and the marker-less ones are kept (up to 32 MB, else read again) for the rounds.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import os
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ckptfix import packages, testfiles
from ckptfix.discovery import project_files
from ckptfix.project.layout import Summary
from ckptfix.project.link import Project
from ckptfix.project.modules import ModuleIndex
from ckptfix.project.root import common_directory, find_root, is_distribution
from ckptfix.project.store import SummaryStore, content_key
from ckptfix.sourcefile import FileError, decode, read_bytes

# Bytes one of which a file must hold to define a fact (lower-cased comparison for the guard words).
_FACT_MARKERS = (
    b"save",
    b"barrier",
    b"checkpoint",
    b"all_reduce",
    b"all_gather",
    b"broadcast",
    b"gather",
    b"scatter",
    b"new_group",
    b"state_dict",
    b"wait_for_everyone",
    b"synchronize",
    b"rank",
    b"master",
    b"primary",
    b"chief",
    b"main_process",
    b"is_main",
    b"rank_zero",
    b"process_index",
    b"ordinal",
)


def _may_define_facts(data: bytes) -> bool:
    lowered = data.lower()
    return any(marker in lowered for marker in _FACT_MARKERS)


def _fact_names(summaries: dict[str, Summary]) -> set[str]:
    """Names of the project's functions and flags that may have a fact another file could use: a
    direct one, or a call of a function whose name has one (by name alone, which can only add
    names: more files summarised, never fewer)."""
    names: set[str] = set()
    calls: dict[str, set[str]] = {}  # function name -> names it calls
    for summary in summaries.values():
        names.update(summary["flags"])
        for qual, function in summary["functions"].items():
            if (
                function["predicate"]
                or function["rank"]
                or function["wraps"]
                or function["barrier"]
                or function["save"]
                or function["collective"]
            ):
                names.add(qual.rsplit(".", 1)[-1])
        for site in summary["sites"]:
            if site["call"] and site["in"] not in ("", "?"):
                to = site["to"]
                callee = (to["local"] if "local" in to else to["name"]).rsplit(".", 1)[-1]
                calls.setdefault(site["in"].rsplit(".", 1)[-1], set()).add(callee)
    changed = True
    while changed:
        changed = False
        for caller, callees in calls.items():
            if caller not in names and callees & names:
                names.add(caller)
                changed = True
    return names


def _names_pattern(names: set[str]) -> re.Pattern[bytes]:
    """A regex that finds any of `names` as a whole word, built as a trie (`get_(?:rank|state)`):
    a flat alternation of a thousand names takes a hundred times longer to search a file."""
    trie: dict[str, Any] = {}
    for name in names:
        node = trie
        for char in name:
            node = node.setdefault(char, {})
        node[""] = {}

    def alternatives(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + alternatives(rest) for char, rest in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return re.compile(rb"\b(?:" + alternatives(trie).encode() + rb")\b")


def load_project(
    paths: Iterable[str],
    exclude: Iterable[str],
    respect_gitignore: bool,
    cache_dir: str | None,
    warn: Callable[[str], None],
    root: str | None = None,
) -> Project:
    """The linked model of the project the paths belong to (under `root`, else the nearest marked
    directory above them)."""
    # Summaries are tens of thousands of small containers in no reference cycle: the cyclic collector
    # would only walk them again and again while they are read (most of a warm run's time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(list(paths), exclude, respect_gitignore, cache_dir, warn, root)
    finally:
        if was_enabled:
            gc.enable()


def _load(
    paths: list[str],
    exclude: Iterable[str],
    respect_gitignore: bool,
    cache_dir: str | None,
    warn: Callable[[str], None],
    root: str | None,
) -> Project:
    exclude = tuple(exclude)
    marked = True
    if root is None:
        root, marked = find_root(paths)
    found = project_files(
        root, exclude, root, respect_gitignore, limit=_MAX_FILES if marked else _UNMARKED_FILES
    )
    if found is None and not marked:
        # No project marker above a large tree: an installed package or a directory of unrelated
        # code, analysed file by file (summarising a library of thousands of files would cost more
        # than checking it).
        return Project(
            ModuleIndex(root, []), {}, note=f"no project marker above {root}: files analysed alone"
        )
    if found is None:  # a marker far above (a home directory under git): the named paths' own tree
        common = common_directory(paths)
        warn(f"{root} holds more than {_MAX_FILES} Python files: facts cross files only under {common}")
        root, found = common, project_files(common, exclude, common, respect_gitignore) or []
    for path in paths:  # a named directory is read even where the excludes would skip it
        if os.path.isdir(path):
            found += project_files(path, exclude, root, respect_gitignore) or []
        elif path.endswith(".py") and os.path.isfile(path):
            found.append(os.path.abspath(path))
    files = list(dict.fromkeys(f for f in found if f.endswith(".py")))
    index = ModuleIndex(root, files)
    store = SummaryStore(cache_dir, root)
    summaries: dict[str, Summary] = {}
    opaque: dict[str, frozenset[str]] = {}
    # Files with no marker, kept (up to a budget) for the rounds below instead of being read again.
    pending: dict[str, bytes | None] = {}
    kept = 0
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:
            continue  # the run reports unreadable files it was asked for; others just add no fact
        known = store.known(path, stat)
        if known is not None:  # unchanged since a run that read it
            key, kind = known
            summary = store.get(key) if kind == _FACTS and key else None
            if summary is not None or kind != _FACTS:
                if summary is not None:
                    summaries[path] = summary
                elif kind == _PENDING:
                    pending[path] = None
                store.record(path, stat, key, kind)
                continue
        try:
            data = read_bytes(path)
        except FileError:
            continue
        if _may_define_facts(data):
            kind, key = _FACTS, _add(path, data, store, summaries, opaque, warn) or ""
        elif b"import" in data and b"(" in data:  # to call another file's function, a file imports it
            kind, key = _PENDING, ""
            keep = kept + len(data) <= _PENDING_BUDGET
            kept += len(data) if keep else 0
            pending[path] = data if keep else None
        else:
            kind, key = _NOTHING, ""
        store.record(path, stat, key, kind)
    while pending:  # until no file joins: a chain of helpers with no marker grows one file per round
        names = _fact_names(summaries)
        if not names:
            break
        pattern = _names_pattern(names)
        joined = []
        for path, held in pending.items():
            try:
                data = held if held is not None else read_bytes(path)
            except FileError:
                continue
            if pattern.search(data):
                added = _add(path, data, store, summaries, opaque, warn)
                joined.append(path)
                with contextlib.suppress(OSError):  # gone since: the next run reads it again
                    store.record(path, os.stat(path), added or "", _FACTS)
        if not joined:
            break
        for path in joined:
            del pending[path]
    project = Project(index, summaries, _library_files(root, summaries), opaque)
    problem = store.save()
    if problem is not None:
        warn(problem)
    return project


# How a file was triaged: it may define facts (summarised), it may call functions of others (read
# when their names are known), or neither.
_NOTHING, _FACTS, _PENDING = 0, 1, 2
# Past this many Python files under the root, the root is not the project (a home directory).
_MAX_FILES = 20_000
# Without a marker, a tree this large is taken for an installed package, not a project.
_UNMARKED_FILES = 500
_PENDING_BUDGET = 32 << 20  # bytes of marker-less files held between rounds
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def _add(
    path: str,
    data: bytes,
    store: SummaryStore,
    summaries: dict[str, Summary],
    opaque: dict[str, frozenset[str]],
    warn: Callable[[str], None],
) -> str | None:
    """Summarise one file (or take its summary from the store); its content key, None when it could
    not be summarised (it is then opaque)."""
    key = content_key(data)
    summary = store.get(key)
    if summary is None:
        try:
            summary = _summarize(path, data)
        except Exception as exc:  # a bug of ours: this file's facts become unknown, the run goes on
            warn(f"{path}: cannot summarise for cross-file facts ({type(exc).__name__}: {exc})")
            summary = None
        if summary is None:
            # Not Python we can read: any function it names may be called there, on any ranks.
            opaque[path] = frozenset(name.decode() for name in _IDENTIFIER.findall(data))
            return None
        store.put(key, summary)
    summaries[path] = summary
    return key


def _summarize(path: str, data: bytes) -> Summary | None:
    """The summary of one file's bytes; None when they are not Python this run can parse (the run
    reports that for the files it was asked to check)."""
    from ckptfix.project.summary import summarize  # the analysis, only when a summary is missing

    try:
        source = decode(path, data).text
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = ast.parse(source, filename=path)
    except (FileError, SyntaxError, ValueError, UnicodeError, MemoryError, RecursionError):
        return None
    return summarize(source.removeprefix("\ufeff"), module)


def _library_files(root: str, summaries: dict[str, Summary]) -> frozenset[str]:
    """Modules of a packaged library (a module of a package its project installs, no `__main__`
    block, not a test): code outside the project may call their public functions."""
    if not is_distribution(root):
        return frozenset()
    return frozenset(
        path
        for path, summary in summaries.items()
        if not summary["main"]
        and not testfiles.is_test_file(os.path.relpath(path, root))
        and packages.installed_package(path) is not None
    )
