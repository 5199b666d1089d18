"""The runtime under the launcher users run: torchrun, whose agent hosts the rendezvous store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "stalling_writer.py"
ROOT = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, env: dict[str, str], deadline: float) -> tuple[int, str, float]:
    """Run the script under torchrun; kill the whole process group if it outlives `deadline`."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(SCRIPT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env},
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun job hung past {deadline} s:\n{output}")
    return proc.returncode, output, time.monotonic() - started


@pytest.mark.timeout(120)
def test_job_finishes_when_every_rank_is_on_time():
    code, output, _ = torchrun(2, {}, deadline=90)
    assert code == 0, output
    assert "training finished" in output
    assert "[rank 1] Final synchronization completed" in output


@pytest.mark.timeout(120)
def test_stalled_rank_zero_fails_the_job_fast_with_its_name(tmp_path):
    # The code says 120 s; the operator's variable makes it 3 s. Rank 0's write stops half-way for 60 s.
    code, output, seconds = torchrun(2, {"STALL_RANK": "0", "CKPTFIX_BARRIER_TIMEOUT": "3"}, deadline=90)
    assert code != 0
    assert seconds < 45, f"the job took {seconds:.0f} s to fail; the barrier timeout is 3 s"
    assert "CheckpointSyncError" in output
    assert "checkpoint barrier 'checkpoint' (#1) failed on rank 1" in output
    # Half of the 401.6 kB file; the slack in the size is the zip layout's.
    assert re.search(
        r"rank 0 has written 20\d\.\d kB of checkpoint\.pt and made no progress for \d+ s", output
    )
