"""End to end: the seed-style trainer is rewritten by fix_source and run on 2 gloo ranks (CPU) under
torchrun; afterwards only rank 0 writes checkpoint files, and they load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckptfix.api import check_source, fix_source

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SEED = (HERE / "seed_trainer.py").read_text()

pytest.importorskip("torch.distributed.run")


def _run(script: str, tmp_path: Path, name: str) -> dict[int, list[str]]:
    work = tmp_path / name
    ckpt, logs = work / "ckpt", work / "logs"
    ckpt.mkdir(parents=True)
    logs.mkdir()
    (work / "train.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CKPTFIX_BARRIER_TIMEOUT="30")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(work / "train.py"), str(ckpt), str(logs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {rank: json.loads((logs / f"writes_{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.timeout(150)
def test_seed_trainer_rewritten_writes_on_rank_zero_only(tmp_path: Path) -> None:
    codes = {f.code for f in check_source(SEED)}
    assert {"CKP001", "CKP002", "CKP004", "CKP005"} <= codes
    result = fix_source(SEED)
    assert result.new_source is not None
    assert fix_source(result.new_source).new_source is None

    before = _run(SEED, tmp_path, "before")
    assert before[1], "the original trainer should write from rank 1 too (else this test proves nothing)"

    after = _run(result.new_source, tmp_path, "after")
    assert after[1] == []
    written = {Path(p).name for p in after[0]}
    assert {"checkpoint_step_4.pt", "checkpoint_step_12.pt", "best_model.pt", "final_model.pt"} <= written

    import torch

    files = sorted((tmp_path / "after" / "ckpt").iterdir())
    assert {f.name for f in files} >= {"checkpoint_step_4.pt", "checkpoint_step_8.pt", "final_model.pt"}
    assert all(not f.name.endswith(".tmp") for f in files)
    state = torch.load(tmp_path / "after" / "ckpt" / "checkpoint_step_12.pt", weights_only=False)
    assert state["step"] == 12
