"""Running the analysis and the rewrite over many files: per-file pipeline and parallel jobs.

Per file: read bytes -> byte prefilter (most files cannot contain a save and are never decoded or
parsed) -> findings cache (`ckptfix.cache`, when the run has one) -> decode -> api. Every failure
becomes a one-line per-file error so one bad file never stops the run. `ckptfix.api` (and with it
libcst) is imported only when a file needs it, which keeps `ckptfix check` on a file without saves
close to the cost of starting Python and click.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from ckptfix.findings import Finding
from ckptfix.options import Options
from ckptfix.prefilter import might_need_work
from ckptfix.sourcefile import FileError, SourceFile, decode, read_bytes, unified_diff, write_back

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

    from ckptfix.cache import Cache
    from ckptfix.project.view import ProjectView

Mode = Literal["check", "fix", "diff"]

# A tree this large is triaged by the workers (the parent alone takes ~0.3 s for 2,300 files), in
# chunks of files that make each hand-over negligible.
_FILES_FOR_SHARED_TRIAGE = 500
_TRIAGE_CHUNK = 32
# Source bytes that justify one more worker process: checking 200 kB takes about 50 ms, about what
# forking, feeding and joining a worker costs.
_BYTES_PER_WORKER = 200_000


@dataclass(frozen=True)
class FileResult:
    """What happened to one file. `findings` are what remains: after the rewrite, in fix mode."""

    path: str
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    traceback: str | None = None  # internal errors only, shown with -v
    fixed: int = 0  # findings the rewrite removed (fix and diff modes)
    diff: str = ""
    new_text: str | None = None  # the rewritten source, when there is one
    parsed: bool = False  # False when the prefilter ruled the file out
    cached: bool = False  # the findings came from the cache


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_source(
    source: SourceFile, options: Options, mode: Mode, project: ProjectView | None = None
) -> FileResult:
    """Check or rewrite already decoded source (a file's, or stdin's); `project`: the facts of the
    other files of its project."""
    from ckptfix import api

    path = source.path
    try:
        if mode == "check":
            findings = api.check_source(source.text, path, options, project)
            return FileResult(path, tuple(sorted(findings)), parsed=True)
        # fix_source analyses once and loads libcst only when something is fixable, so `apply` on a
        # large tree costs what the files that need a rewrite cost.
        result = api.fix_source(source.text, path, options, project)
        new_text = result.new_source
        if new_text is None or new_text == source.text:
            return FileResult(path, tuple(sorted(result.findings)), parsed=True)
    except api.SourceError as exc:
        return FileResult(path, error=f"cannot parse: {exc}", parsed=True)
    # Re-check the rewrite: what is left is what the user still has to fix by hand, and a rewrite
    # that does not even parse (a bug of ours) must never reach the disk or a reviewer. fix_source,
    # not check_source: a guard `apply` refused to lift is then reported with the reason.
    try:
        remaining = tuple(sorted(api.fix_source(new_text, path, options, project).findings))
    except api.SourceError as exc:
        return FileResult(path, error=f"internal error: the rewrite does not parse ({exc}); left unchanged")
    fixed = max(len(result.findings) - len(remaining), 0)
    if mode == "diff":
        diff = unified_diff(path, source.text, new_text)
        return FileResult(path, remaining, fixed=fixed, diff=diff, new_text=new_text, parsed=True)
    return FileResult(path, remaining, fixed=fixed, new_text=new_text, parsed=True)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """One file's analysis allocates hundreds of thousands of `ast` nodes and frees them all at the
    end, in no reference cycle: the cyclic collector would only walk them again and again (10% of a
    check). It runs as usual between files."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def process_data(
    path: str, data: bytes, options: Options, mode: Mode, project: ProjectView | None = None
) -> FileResult:
    """Decode, check or rewrite, and write back one file whose bytes passed the prefilter; never raises."""
    with _collector_paused():
        return _process_data(path, data, options, mode, project)


def _process_data(
    path: str, data: bytes, options: Options, mode: Mode, project: ProjectView | None
) -> FileResult:
    try:
        source = decode(path, data)
        result = process_source(source, options, mode, project)
        if mode == "fix" and result.new_text is not None:
            write_back(source, result.new_text)
        return result
    except FileError as exc:
        return FileResult(path, error=str(exc))
    except Exception as exc:  # a bug of ours must not stop the other files
        return FileResult(
            path, error=f"internal error: {type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )


def process_file(
    path: str,
    options: Options,
    mode: Mode,
    cache: Cache | None = None,
    project: ProjectView | None = None,
) -> FileResult:
    """process_data for a file that passed `triage`: reads it again (from the page cache), which
    costs less than keeping or shipping the bytes. Stores the findings of the bytes it analysed."""
    try:
        data = read_bytes(path)
    except FileError as exc:
        return FileResult(path, error=str(exc))
    result = process_data(path, data, options, mode, project)
    if cache is not None and result.error is None and _cacheable(result, mode):
        cache.store(path, data, result.findings, project.digest if project is not None else b"")
    return result


Task = tuple[str, "ProjectView | None"]  # a path and the facts of its project's other files


def _process_task(task: Task, options: Options, mode: Mode, cache: Cache | None) -> FileResult:
    return process_file(task[0], options, mode, cache, task[1])


def _triage_task(task: Task, options: Options, mode: Mode, cache: Cache | None) -> Triaged:
    return triage(task[0], options, mode, cache, task[1])


def _cacheable(result: FileResult, mode: Mode) -> bool:
    """What the cache holds is `check`'s findings. apply's analysis gives the same answer when it
    found nothing (no issue means nothing to fix), and only then."""
    return mode == "check" or (not result.findings and result.new_text is None)


Triaged = tuple[str, int, FileResult | None]


def triage(
    path: str,
    options: Options,
    mode: Mode = "check",
    cache: Cache | None = None,
    project: ProjectView | None = None,
) -> Triaged:
    """Read one file, run the byte prefilter, then look in the cache: (path, size, None) when it needs
    a parse, else (path, 0, its final result: nothing to find, the cached findings, or why it could
    not be read)."""
    try:
        data = read_bytes(path)
    except FileError as exc:
        return path, 0, FileResult(path, error=str(exc))
    if not might_need_work(data, options) and not (project is not None and project.distributed):
        return path, 0, FileResult(path)
    if cache is not None:
        findings = cache.load(path, data, project.digest if project is not None else b"")
        # apply needs the analysis itself for a file with findings; one without has nothing to rewrite.
        if findings is not None and (mode == "check" or not findings):
            return path, 0, FileResult(path, findings, parsed=True, cached=True)
    return path, len(data), None


def _pool(workers: int, preload: bool = True) -> Pool:
    """Worker processes; `preload`: import the analysis once here, for every forked worker to inherit
    (without it, each worker imports it with its first file to analyse, if any)."""
    import multiprocessing

    if preload:
        from ckptfix import api  # noqa: F401

    # fork starts workers in milliseconds and inherits the already imported modules; elsewhere
    # (macOS, Windows) fork is unsafe or missing and spawn is the only sound choice.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers)


def run(
    paths: Sequence[str],
    options: Options,
    mode: Mode,
    jobs: int,
    on_result: Callable[[FileResult], None] | None = None,
    cache: Cache | None = None,
    views: Callable[[str], ProjectView] | None = None,
) -> list[FileResult]:
    """Process `paths` on up to `jobs` processes; results come back in the order of `paths`.

    Two steps. Triage reads every file and rules nearly all of them out by their bytes, in
    microseconds each, and takes the findings of the rest from `cache` where it has them: on a large
    tree the workers share it, in chunks, on a small one the parent does it alone. Then the
    candidates, which need a parse, go to the workers one by one, largest first, so that no worker is
    left with a big file at the end while the others sit idle. `views` gives each file the facts of
    the other files of its project (ckptfix.project), worked out here and handed to the workers.
    """
    results: dict[str, FileResult] = {}

    def view(path: str) -> ProjectView | None:
        return views(path) if views is not None else None

    candidates: list[tuple[int, str]] = []

    def done(result: FileResult) -> None:
        results[result.path] = result
        if on_result:
            on_result(result)

    def sort_out(triaged: Iterable[Triaged]) -> None:
        for path, size, result in triaged:
            if result is None:
                candidates.append((size, path))
            else:
                done(result)

    def analyse(pool: Pool) -> None:
        task = partial(_process_task, options=options, mode=mode, cache=cache)
        ordered = [(path, view(path)) for _, path in sorted(candidates, reverse=True)]
        for result in pool.imap_unordered(task, ordered):
            done(result)

    if jobs > 1 and len(paths) >= _FILES_FOR_SHARED_TRIAGE:
        # With a cache, the files to analyse may be none at all: a run of cache hits needs no analysis.
        with _pool(jobs, preload=cache is None) as pool:
            triage_one = partial(_triage_task, options=options, mode=mode, cache=cache)
            sort_out(pool.imap_unordered(triage_one, [(p, view(p)) for p in paths], _TRIAGE_CHUNK))
            analyse(pool)
    else:
        sort_out(triage(path, options, mode, cache, view(path)) for path in paths)
        # Starting workers costs about as much as checking a mid-sized file: not worth it for a few.
        total = sum(size for size, _ in candidates)
        workers = min(jobs, len(candidates), 1 + total // _BYTES_PER_WORKER)
        if workers > 1:
            with _pool(workers) as pool:
                analyse(pool)
        else:
            for _, path in sorted(candidates, reverse=True):
                done(process_file(path, options, mode, cache, view(path)))
    return [results[p] for p in paths]
