"""Cost of the runtime's safety against what users would otherwise run.

- checkpoint_barrier (a timed all_gather on a gloo group, plus an arrival mark in the store)
  against a plain dist.barrier(), on real gloo groups of 2 and 4 ranks;
- atomic_save against torch.save to the final path (plain, and followed by fsync: the durable
  baseline) for a 1 MB and a 200 MB state dict.

Each pair runs in alternating blocks (A B A B ...) so drift on a shared machine hits both alike;
the figures are medians per call and the ratio of the medians.

    python bench/runtime_bench.py [--rounds 7] [--barriers 200] [--sizes-mb 1 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _barrier_rank(rank: int, world: int, port: int, rounds: int, per_round: int, queue: object) -> None:
    import torch.distributed as dist

    from ckptfix.runtime import checkpoint_barrier, init_sync

    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    init_sync()
    plain: list[float] = []
    ours: list[float] = []
    for _ in range(per_round):  # warm-up: connections, first-call costs
        dist.barrier()
        checkpoint_barrier()
    for _ in range(rounds):
        for fn, sink in ((dist.barrier, plain), (checkpoint_barrier, ours)):
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            sink.append((time.perf_counter() - started) / per_round)
    if rank == 0:
        queue.put((plain, ours))  # type: ignore[attr-defined]
    dist.barrier()
    dist.destroy_process_group()


def bench_barriers(world: int, rounds: int, per_round: int) -> tuple[list[float], list[float]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_barrier_rank, args=(r, world, port, rounds, per_round, queue)) for r in range(world)
    ]
    for proc in procs:
        proc.start()
    result = queue.get(timeout=600)
    for proc in procs:
        proc.join(60)
    return result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--barriers", type=int, default=200, help="barriers per round")
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    os.environ.setdefault("CKPTFIX_LOG_LEVEL", "WARNING")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, medians of {args.rounds} rounds")
    print("\n| barrier (gloo) | ranks | dist.barrier() | checkpoint_barrier() | ratio |")
    print("|---|---|---|---|---|")
    for world in args.worlds:
        plain, ours = bench_barriers(world, args.rounds, args.barriers)
        ratio = statistics.median(ours) / statistics.median(plain)
        print(f"| per call | {world} | {_spread(plain, 1e3, 'ms')} | {_spread(ours, 1e3, 'ms')} | {ratio:.2f}x |")
    print("\n| save | size | torch.save | torch.save+fsync | atomic_save | atomic / durable |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes_mb:
        times = bench_saves(size, args.rounds)
        ratio = statistics.median(times["atomic_save"]) / statistics.median(times["torch.save+fsync"])
        cells = " | ".join(_spread(times[name], 1.0, "s") for name in times)
        print(f"| per save | {size} MB | {cells} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
