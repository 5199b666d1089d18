"""ckptfix.runtime: what code rewritten by ckptfix imports.

Main-process test, barriers whose timeouts really fire on gloo, nccl and xccl, atomic checkpoint
writes, agreement of every rank on the writer's outcome, a final sync. torch is imported lazily, so
importing this module is cheap and safe where torch.distributed is unavailable.
"""

from ckptfix.runtime.atomic import atomic_save
from ckptfix.runtime.backend import backend_for_device
from ckptfix.runtime.errors import CheckpointSaveError, CheckpointSyncError
from ckptfix.runtime.ranks import is_main_process
from ckptfix.runtime.sync import checkpoint_barrier, final_sync, init_sync, report_save_failure

__all__ = [
    "CheckpointSaveError",
    "CheckpointSyncError",
    "atomic_save",
    "backend_for_device",
    "checkpoint_barrier",
    "final_sync",
    "init_sync",
    "is_main_process",
    "report_save_failure",
]
