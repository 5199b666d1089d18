"""Run a function on N real gloo ranks in fresh processes, with a hard deadline and no leftovers.

Every rank's outcome (return value or exception) and log are written to files the test reads, and
processes still alive at the deadline are killed and reported as hung, so a hang fails a test instead
of the CI run.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


@dataclass
class RankOutcome:
    """What one rank did: returned `value`, raised `error_type`/`error`, died, or hung."""

    rank: int
    exitcode: int | None
    hung: bool
    seconds: float | None = None
    value: Any = None
    error_type: str | None = None
    error: str | None = None
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.exitcode == 0 and self.error_type is None and not self.hung


def _rank_main(
    worker: Callable[..., Any],
    rank: int,
    world: int,
    port: int,
    out_dir: str,
    args: tuple[Any, ...],
    env: dict[str, str],
    backend: str,
    pg_timeout: float,
) -> None:
    os.environ.update(env)
    logging.basicConfig(
        filename=os.path.join(out_dir, f"rank{rank}.log"),
        level=logging.DEBUG,
        format="%(levelname)s %(name)s %(message)s",
    )
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timedelta(seconds=60))
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world, timeout=timedelta(seconds=pg_timeout)
    )
    started = time.monotonic()
    record: dict[str, Any] = {}
    try:
        record["value"] = worker(rank, world, *args)
    except BaseException as exc:
        record["error_type"] = type(exc).__name__
        record["error"] = str(exc)
        logging.getLogger("test").error("%s", traceback.format_exc())
    record["seconds"] = time.monotonic() - started
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    logging.shutdown()
    # A group broken by a timeout can hang in teardown; the test only needs this rank's record.
    os._exit(0)


def run_ranks(
    worker: Callable[..., Any],
    world: int,
    out_dir: Path,
    *,
    deadline: float,
    args: tuple[Any, ...] = (),
    env: dict[str, str] | None = None,
    backend: str = "gloo",
    pg_timeout: float = 60.0,
) -> list[RankOutcome]:
    """Run `worker(rank, world, *args)` on `world` gloo ranks; kill whatever is alive after `deadline` s.

    `pg_timeout` is the default group's own timeout (init_process_group's), which a busy rank 0 gets.
    The rendezvous store lives in this process, as torchrun's lives in its agent, so it outlives
    any rank that dies or gives up.
    """
    import torch.distributed as dist

    ctx = multiprocessing.get_context("spawn")
    store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False)
    port = store.port
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = [
        ctx.Process(
            target=_rank_main,
            args=(worker, rank, world, port, str(out_dir), args, dict(env or {}), backend, pg_timeout),
            daemon=True,
        )
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    end = time.monotonic() + deadline
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
    outcomes = []
    for rank, proc in enumerate(procs):
        hung = proc.is_alive()
        if hung:
            proc.kill()
            proc.join(10)
        outcome = RankOutcome(rank=rank, exitcode=proc.exitcode, hung=hung)
        record_path = out_dir / f"rank{rank}.json"
        if record_path.exists():
            record = json.loads(record_path.read_text())
            outcome.value = record.get("value")
            outcome.error_type = record.get("error_type")
            outcome.error = record.get("error")
            outcome.seconds = record.get("seconds")
        log_path = out_dir / f"rank{rank}.log"
        outcome.log = log_path.read_text() if log_path.exists() else ""
        outcomes.append(outcome)
    del store
    return outcomes
