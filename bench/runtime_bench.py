"""Cost of the runtime's safety against what users would otherwise run.

- checkpoint_barrier (an all_reduce of two integers on a gloo group, waited for in slices; no store
  traffic unless it waits longer than one progress interval) against a plain dist.barrier() and
  against checkpoint_barrier as it was before issue 14 (its sync.py read from git at
  BEFORE_REVISION: a store mark per rank, then the same all_reduce), on real gloo groups of 2, 4, 8
  and 16 ranks, with the store operations each made (counted on every
  rank's client: the server serves exactly these);
- a slow barrier (rank 0 busy for --slow-seconds before it): the store operations it costs, split
  into the waiting ranks' and rank 0's progress publisher's;
- atomic_save on rank 0 of a 2-rank group with progress publication on (the publisher thread, the
  chunking file wrapper) against the same save with it off (the code path before issue 14);
- atomic_save against torch.save to the final path (plain, and followed by fsync: the durable
  baseline) for a 1 MB and a 200 MB state dict.

Each pair runs in alternating blocks (A B A B ...) so drift on a shared machine hits both alike;
the figures are medians per call and the ratio of the medians.

    python bench/runtime_bench.py [--rounds 7] [--barriers 200] [--worlds 2 4 8 16] [--sizes-mb 1 200]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


class _CountingStore:
    """A store proxy that counts the operations this process sends to the store server."""

    def __init__(self, store: Any, counts: Counter[str], who: str) -> None:
        self._store, self._counts, self._who = store, counts, who

    def clone(self) -> _CountingStore:
        return _CountingStore(self._store.clone(), self._counts, "publisher")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[self._who] += 1
            return method(*args, **kwargs)

        return counted


def _count_store_ops(counts: Counter[str]) -> None:
    from ckptfix.runtime import sync

    real = sync._store
    sync._store = lambda dist: _CountingStore(real(dist), counts, "barrier")  # type: ignore[assignment]


BEFORE_REVISION = "9865ee1"  # the last commit before issue 14's branch


def _load_sync_before(source: str) -> Any:
    """ckptfix.runtime.sync as it was at BEFORE_REVISION (its source, read by the parent with git)."""
    import types

    module = types.ModuleType("ckptfix.runtime._sync_before_issue_14")
    module.__file__ = f"<{BEFORE_REVISION}:ckptfix/runtime/sync.py>"
    sys.modules[module.__name__] = module  # dataclasses look their module up while building
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def _sync_source_before() -> str | None:
    import subprocess

    try:
        return subprocess.run(
            ["git", "show", f"{BEFORE_REVISION}:ckptfix/runtime/sync.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _barrier_rank(
    rank: int,
    world: int,
    port: int,
    rounds: int,
    per_round: int,
    slow: float,
    before_source: str | None,
    queue: Any,
) -> None:
    import torch.distributed as dist

    from ckptfix.runtime import checkpoint_barrier, init_sync

    counts: Counter[str] = Counter()
    _count_store_ops(counts)
    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    init_sync()
    plain: list[float] = []
    ours: list[float] = []
    before: list[float] = []
    if before_source is not None:
        old = _load_sync_before(before_source)
        old.init_sync()  # its own side group: a collective, every rank makes it here
        previous = old.checkpoint_barrier
    else:
        previous = dist.barrier
    for _ in range(per_round):  # warm-up: connections, first-call costs
        dist.barrier()
        checkpoint_barrier()
        previous()
    counts.clear()
    for _ in range(rounds):
        # The earlier module has its own _store (not the counting proxy): the counts are ours only.
        for fn, sink in ((dist.barrier, plain), (checkpoint_barrier, ours), (previous, before)):
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            sink.append((time.perf_counter() - started) / per_round)
    fast_ops = counts["barrier"] / (rounds * per_round)
    # Slow barriers: rank 0 is busy (no write) for `slow` s before each; count what that costs.
    slow_rounds = 2
    dist.barrier()
    counts.clear()
    for _ in range(slow_rounds):
        if rank == 0:
            time.sleep(slow)
        checkpoint_barrier()
    slow_ops = counts["barrier"] / slow_rounds
    publisher_ops = counts["publisher"] / slow_rounds
    queue.put((rank, plain, ours, fast_ops, slow_ops, publisher_ops, before))
    dist.barrier()
    dist.destroy_process_group()


def bench_barriers(world: int, rounds: int, per_round: int, slow: float) -> dict[str, Any]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_barrier_rank,
            args=(r, world, port, rounds, per_round, slow, _sync_source_before(), queue),
        )
        for r in range(world)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(60)
    by_rank = {r[0]: r for r in results}
    return {
        "before": by_rank[0][6],
        "plain": by_rank[0][1],
        "ours": by_rank[0][2],
        "fast_ops": sum(r[3] for r in results),
        "slow_ops": sum(r[4] for r in results),
        "publisher_ops": sum(r[5] for r in results),
    }


def _save_rank(rank: int, world: int, port: int, size_mb: int, rounds: int, queue: Any) -> None:
    """Rank 0 times atomic_save with progress on and off, alternating; the other rank just waits."""
    import torch
    import torch.distributed as dist

    from ckptfix.runtime import atomic_save, init_sync, progress

    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    init_sync()
    times: dict[str, list[float]] = {"on": [], "off": [], "cpu_on": [], "cpu_off": []}
    if rank == 0:
        state = {f"layer{i}.weight": torch.randn(size_mb * 1_000_000 // 4 // 4) for i in range(4)}
        real_writing = progress.writing

        @contextlib.contextmanager
        def untracked(path: str, handle: Any) -> Iterator[Any]:
            yield handle  # the code path before issue 14: torch.save straight into the temp file

        with tempfile.TemporaryDirectory(dir=ROOT) as directory:
            path = os.path.join(directory, "checkpoint.pt")
            atomic_save(state, path)  # warm-up
            for index in range(rounds):
                # ABBA order: neither variant always runs right after the other's file was replaced.
                for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                    if mode == "on":
                        progress.writing = real_writing  # type: ignore[assignment]
                        from ckptfix.runtime.sync import ensure_progress_publisher

                        ensure_progress_publisher()
                    else:
                        progress.writing = untracked  # type: ignore[assignment]
                        progress.stop()
                    # Let a restarted publisher connect (its clone of the store) and a stopped one
                    # leave before the clock starts: in a job it runs all along.
                    time.sleep(0.3)
                    started, cpu = time.perf_counter(), time.process_time()
                    atomic_save(state, path)
                    times[mode].append(time.perf_counter() - started)
                    # CPU time of this process (the publisher thread included): what the feature
                    # itself costs, without the disk's and the other tenants' noise in wall time.
                    times[f"cpu_{mode}"].append(time.process_time() - cpu)
        queue.put(times)
    dist.barrier()
    dist.destroy_process_group()


def bench_progress_save(size_mb: int, rounds: int) -> dict[str, list[float]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_save_rank, args=(r, 2, port, size_mb, rounds, queue)) for r in range(2)]
    for proc in procs:
        proc.start()
    result: dict[str, list[float]] = queue.get(timeout=900)
    for proc in procs:
        proc.join(60)
    return result


def bench_progress_in_memory(size_mb: int, rounds: int) -> dict[str, list[float]]:
    """The same on/off pair in this process, written to /dev/shm (memory): no disk, no second rank,
    the publisher on a local HashStore. What remains is the feature's own cost."""
    import torch
    import torch.distributed as dist

    from ckptfix.runtime import atomic_save, progress

    state = {f"layer{i}.weight": torch.randn(size_mb * 1_000_000 // 4 // 4) for i in range(4)}
    real_writing = progress.writing

    @contextlib.contextmanager
    def untracked(path: str, handle: Any) -> Iterator[Any]:
        yield handle

    times: dict[str, list[float]] = {"on": [], "off": [], "cpu_on": [], "cpu_off": []}
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as directory:
        path = os.path.join(directory, "checkpoint.pt")
        atomic_save(state, path)
        for index in range(rounds):
            for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                if mode == "on":
                    progress.writing = real_writing  # type: ignore[assignment]
                    progress.start(dist.HashStore(), 1.0, lambda: True)
                else:
                    progress.writing = untracked  # type: ignore[assignment]
                    progress.stop()
                time.sleep(0.1)
                started, cpu = time.perf_counter(), time.process_time()
                atomic_save(state, path)
                times[mode].append(time.perf_counter() - started)
                times[f"cpu_{mode}"].append(time.process_time() - cpu)
    progress.writing = real_writing  # type: ignore[assignment]
    progress.stop()
    return times


def _torch_save(obj: object, path: str) -> None:
    import torch

    torch.save(obj, path)


def _torch_save_fsync(obj: object, path: str) -> None:
    import torch

    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_save(obj: object, path: str) -> None:
    from ckptfix.runtime import atomic_save

    atomic_save(obj, path)


def bench_saves(size_mb: int, rounds: int) -> dict[str, list[float]]:
    import torch

    state = {f"layer{i}.weight": torch.randn(size_mb * 1_000_000 // 4 // 4) for i in range(4)}
    variants: dict[str, Callable[[object, str], None]] = {
        "torch.save": _torch_save,
        "torch.save+fsync": _torch_save_fsync,
        "atomic_save": _atomic_save,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(dir=ROOT) as directory:
        path = os.path.join(directory, "checkpoint.pt")
        for fn in variants.values():  # warm-up: page cache, first-call imports
            fn(state, path)
        for _ in range(rounds):
            for name, fn in variants.items():
                started = time.perf_counter()
                fn(state, path)
                times[name].append(time.perf_counter() - started)
    return times


def _spread(values: list[float], scale: float, unit: str) -> str:
    return (
        f"{statistics.median(values) * scale:8.3f} {unit} "
        f"(min {min(values) * scale:.3f}, max {max(values) * scale:.3f})"
    )


def _barrier_table(args: argparse.Namespace) -> None:
    print(
        "\n| barrier (gloo) | ranks | dist.barrier() | checkpoint_barrier() | ratio "
        "| before issue 14 | ratio | store ops per barrier, all ranks | per slow barrier: waiters "
        "| rank 0's publisher |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for world in args.worlds:
        per_round = max(10, args.barriers * 2 // world)
        figures = bench_barriers(world, args.rounds, per_round, args.slow_seconds)
        plain, ours = figures["plain"], figures["ours"]
        ratio = statistics.median(ours) / statistics.median(plain)
        before = statistics.median(figures["before"]) / statistics.median(plain)
        cells = f"{_spread(plain, 1e3, 'ms')} | {_spread(ours, 1e3, 'ms')}"
        print(
            f"| per call | {world} | {cells} | {ratio:.2f}x | {_spread(figures['before'], 1e3, 'ms')} "
            f"| {before:.2f}x | {figures['fast_ops']:.2f} "
            f"| {figures['slow_ops']:.0f} | {figures['publisher_ops']:.0f} |"
        )
    print(
        f"\n(slow barrier: rank 0 busy {args.slow_seconds:g} s before it; the publisher writes once and "
        "checks for an abandonment once per second, whatever the world size)"
    )


def _progress_table(args: argparse.Namespace) -> None:
    print(
        "\n| atomic_save | size | progress off (before issue 14) | progress on "
        "| on / off (medians) | on / off (minima) | on / off (median of paired rounds) "
        "| CPU time on / off (paired) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes_mb:
        if size < 100:
            continue
        for where, times in (
            ("rank 0 of 2, disk", bench_progress_save(size, args.progress_rounds)),
            ("1 process, /dev/shm", bench_progress_in_memory(size, args.progress_rounds)),
        ):
            _progress_row(where, size, times)


def _progress_row(where: str, size: int, times: dict[str, list[float]]) -> None:
    ratio = statistics.median(times["on"]) / statistics.median(times["off"])
    cells = f"{_spread(times['off'], 1.0, 's')} | {_spread(times['on'], 1.0, 's')}"
    low = min(times["on"]) / min(times["off"])
    paired = statistics.median(on / off for on, off in zip(times["on"], times["off"], strict=True))
    cpu = statistics.median(on / off for on, off in zip(times["cpu_on"], times["cpu_off"], strict=True))
    print(f"| {where} | {size} MB | {cells} | {ratio:.3f}x | {low:.3f}x | {paired:.3f}x | {cpu:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--barriers", type=int, default=200, help="barriers per round")
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=["barriers", "progress", "saves"],
        default=["barriers", "progress", "saves"],
    )
    parser.add_argument("--progress-rounds", type=int, default=15, help="rounds of the progress on/off pair")
    parser.add_argument(
        "--slow-seconds", type=float, default=3.0, help="rank 0's busy time before a slow barrier"
    )
    args = parser.parse_args()
    os.environ.setdefault("CKPTFIX_LOG_LEVEL", "WARNING")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, medians of {args.rounds} rounds")
    if "barriers" in args.tables:
        _barrier_table(args)
    if "progress" in args.tables:
        _progress_table(args)
    if "saves" not in args.tables:
        return
    print("\n| save | size | torch.save | torch.save+fsync | atomic_save | atomic / durable |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes_mb:
        times = bench_saves(size, args.rounds)
        ratio = statistics.median(times["atomic_save"]) / statistics.median(times["torch.save+fsync"])
        cells = " | ".join(_spread(times[name], 1.0, "s") for name in times)
        print(f"| per save | {size} MB | {cells} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
