"""Run a training script under torchrun on 2 CPU/gloo ranks with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def torchrun(script: str, work: Path, timeout: float = 60) -> Path:
    """Write `script` to `work`, run it as `train.py CKPT_DIR LOG_DIR` on 2 ranks; return LOG_DIR."""
    ckpt, logs = work / "ckpt", work / "logs"
    ckpt.mkdir(parents=True)
    logs.mkdir()
    (work / "train.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(work / "train.py"), str(ckpt), str(logs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return logs
