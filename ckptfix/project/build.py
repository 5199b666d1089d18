"""Building the project model for a run: find the root, read the files, summarise the few that matter.

Why not summarise every file: most files of a project (and nearly all of a library like torch) can
carry no fact a checkpoint rule needs. A file is summarised when its bytes could define one (a save,
a collective, a barrier, a rank or main-process test) or could call a function that has one (its
bytes spell that function's name: every static call or import of a function spells it). The second
set grows as facts are found (a helper that calls a saving helper saves too), so it is worked out in
rounds until no new file joins.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from collections.abc import Callable, Iterable

from ckptfix.discovery import discover
from ckptfix.project.link import Project
from ckptfix.project.modules import ModuleIndex
from ckptfix.project.root import find_root, is_distribution
from ckptfix.project.store import SummaryStore, content_key
from ckptfix.project.summary import Summary, summarize
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
)
_MAX_ROUNDS = 4


def _may_define_facts(data: bytes) -> bool:
    lowered = data.lower()
    return any(marker in lowered for marker in _FACT_MARKERS)


def _fact_names(project: Project) -> set[str]:
    """Names of the project's functions and flags that have a fact another file could use."""
    names: set[str] = set()
    for path, summary in project.summaries.items():
        names.update(summary["flags"])
        for qual, function in summary["functions"].items():
            key = (path, qual)
            if (
                function["predicate"]
                or function["rank"]
                or function["wraps"]
                or function["barrier"]
                or project.saves(key)
                or project.collective(key)
            ):
                names.add(qual.rsplit(".", 1)[-1])
    return names


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
    paths = list(paths)
    if root is None:
        root, _ = find_root(paths)
    found = discover([root], exclude, root, False, respect_gitignore)
    files = [os.path.abspath(f) for f in found.files if f.endswith(".py")]
    files.extend(os.path.abspath(p) for p in paths if p.endswith(".py") and os.path.isfile(p))
    files = list(dict.fromkeys(files))
    index = ModuleIndex(root, files)
    store = SummaryStore(cache_dir, root)
    summaries: dict[str, Summary] = {}
    opaque: dict[str, frozenset[str]] = {}
    keys: dict[str, str] = {}
    pending: list[str] = []
    for path in files:
        try:
            data = read_bytes(path)
        except FileError:
            continue  # the run reports unreadable files it was asked for; others just add no fact
        keys[path] = content_key(data)
        if _may_define_facts(data):
            _add(path, data, keys[path], store, summaries, opaque, warn)
        else:
            pending.append(path)
    project = Project(index, summaries, _library_files(root, files, summaries), opaque)
    for _ in range(_MAX_ROUNDS):
        names = _fact_names(project)
        if not pending or not names:
            break
        pattern = re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in sorted(names)) + rb")\b")
        joined = []
        for path in pending:
            try:
                data = read_bytes(path)
            except FileError:
                continue
            if pattern.search(data) and content_key(data) == keys[path]:
                _add(path, data, keys[path], store, summaries, opaque, warn)
                joined.append(path)
        if not joined:
            break
        pending = [p for p in pending if p not in set(joined)]
        project = Project(index, summaries, _library_files(root, files, summaries), opaque)
    problem = store.save()
    if problem is not None:
        warn(problem)
    return project


_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def _add(
    path: str,
    data: bytes,
    key: str,
    store: SummaryStore,
    summaries: dict[str, Summary],
    opaque: dict[str, frozenset[str]],
    warn: Callable[[str], None],
) -> None:
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
            return
        store.put(key, summary)
    summaries[path] = summary


def _summarize(path: str, data: bytes) -> Summary | None:
    """The summary of one file's bytes; None when they are not Python this run can parse (the run
    reports that for the files it was asked to check)."""
    try:
        source = decode(path, data).text
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = ast.parse(source, filename=path)
    except (FileError, SyntaxError, ValueError, UnicodeError, MemoryError, RecursionError):
        return None
    return summarize(source.removeprefix("\ufeff"), module)


def _library_files(root: str, files: list[str], summaries: dict[str, Summary]) -> frozenset[str]:
    """Modules of a packaged library (inside a package, no `__main__` block, in a project others
    install): code outside the project may call their public functions."""
    if not is_distribution(root):
        return frozenset()
    present = set(files)
    return frozenset(
        path
        for path, summary in summaries.items()
        if not summary["main"]
        and os.path.join(os.path.dirname(path), "__init__.py") in present
        and "test" not in os.path.relpath(path, root).lower()
    )
