"""What the project model costs a pre-commit run: `ckptfix check` of one changed file in a large project.

Builds a synthetic project of N files (default 2,000: a package of model, data and utility modules
that import each other, some of them with checkpoint, rank and collective code, a checkpoint helper
and a few training scripts that call it under a guard), then times, as pre-commit would run them:

  cold        check train.py with an empty cache (every summary computed)
  warm        check train.py again, nothing changed
  changed     one line appended to train.py, then check train.py (its summary and findings recomputed)
  helper      one line appended to the checkpoint helper, then check it
  no-project  check train.py with --no-project, warm (the per-file analysis alone, for comparison)

Each figure is the median wall time of `--rounds` runs and the peak RSS of the process.

    python bench/project_bench.py [--files 2000] [--rounds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = '''"""Module {i}: data and model utilities with no checkpoint in them."""

import json
import math

from pkg import mod{j} as other


def scale_{i}(values, factor=2.0):
    return [v * factor for v in values]


def describe_{i}(config):
    text = json.dumps(config, sort_keys=True)
    return {{"length": len(text), "log": math.log(len(text) + 1)}}


class Block{i}:
    def __init__(self, width):
        self.width = width

    def forward(self, x):
        return other.scale_{j}(x, self.width)

    def summary(self):
        return describe_{i}({{"width": self.width}})
'''

MARKED = '''"""Module {i}: training utilities that touch ranks and state dicts."""

import torch
import torch.distributed as dist

from pkg import mod{j} as other


def get_rank_{i}():
    return dist.get_rank() if dist.is_initialized() else 0


def reduce_{i}(tensor):
    dist.all_reduce(tensor)
    return tensor


def export_state_{i}(model):
    return {{k: v.cpu() for k, v in model.state_dict().items()}}


def maybe_log_{i}(message):
    if get_rank_{i}() == 0:
        print(message, other.describe_{j}({{}}))
'''

HELPER = '''"""The project's checkpoint helper: its callers decide on which rank it runs."""

import torch
import torch.distributed as dist


def is_leader():
    return dist.get_rank() == 0


def save_checkpoint(state, path):
    torch.save(state, path)
'''

SCRIPT = '''"""Training script {i}."""

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from pkg import ckpt
from pkg import mod{j} as block


def main():
    dist.init_process_group("gloo")
    model = DDP(torch.nn.Linear(8, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(100):
        loss = model(torch.randn(4, 8)).sum()
        loss.backward()
        opt.step()
        if step % 10 == 0 and ckpt.is_leader():
            ckpt.save_checkpoint({{"model": model.module.state_dict(), "step": step}}, "last.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''


def build(root: Path, files: int) -> None:
    (root / "pyproject.toml").write_text("[tool.ckptfix]\n")
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ckpt.py").write_text(HELPER)
    scripts = 10
    modules = files - scripts - 2
    for i in range(modules):
        j = (i * 7 + 3) % modules
        template = MARKED if i % 3 == 0 else PLAIN
        (package / f"mod{i}.py").write_text(template.format(i=i, j=j))
    (root / "scripts").mkdir()
    (root / "train.py").write_text(SCRIPT.format(i=0, j=1))
    for i in range(1, scripts):
        (root / "scripts" / f"train{i}.py").write_text(SCRIPT.format(i=i, j=i * 3))


def run(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB), exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", default=None, help="build the project here and leave it")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ckptfix-project-bench-"))
    root = base / "project"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    build(root, args.files)
    check = [sys.executable, "-m", "ckptfix", "check", "-j1"]
    cache = root / ".ckptfix_cache"
    results: dict[str, list[tuple[float, float, int]]] = {}

    def measure(name: str, argv: list[str], before: object = None) -> None:
        for _ in range(args.rounds):
            if callable(before):
                before()
            results.setdefault(name, []).append(run(argv, root))

    def clear() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    counter = iter(range(10**6))

    def touch(path: Path) -> object:
        def change() -> None:
            with open(path, "a") as f:
                f.write(f"# edit {next(counter)}\n")

        return change

    measure("cold", [*check, "train.py"], clear)
    measure("warm", [*check, "train.py"])
    measure("changed", [*check, "train.py"], touch(root / "train.py"))
    measure("helper", [*check, "pkg/ckpt.py"], touch(root / "pkg" / "ckpt.py"))
    measure("no-project", [*check, "--no-project", "train.py"])
    print(f"project: {args.files} files under {root}")
    print(f"{'run':<12} {'median s':>9} {'spread s':>9} {'peak MB':>8}  exit codes")
    for name, rows in results.items():
        walls = [r[0] for r in rows]
        spread = max(walls) - min(walls)
        peak = max(r[1] for r in rows)
        codes = sorted({r[2] for r in rows})
        print(f"{name:<12} {statistics.median(walls):>9.3f} {spread:>9.3f} {peak:>8.1f}  {codes}")
    if not args.keep:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
