"""Who am I in the job: lazy, torch-optional answers that are safe before and without init."""

from __future__ import annotations

from types import ModuleType


def distributed() -> ModuleType | None:
    """torch.distributed when it is available and initialized, else None (single process)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def global_rank() -> int:
    """This process's global rank; 0 when not running distributed."""
    dist = distributed()
    return dist.get_rank() if dist is not None else 0


def world_size() -> int:
    """The number of ranks in the default group; 1 when not running distributed."""
    dist = distributed()
    return dist.get_world_size() if dist is not None else 1


def is_main_process() -> bool:
    """True on global rank 0, and in any process where torch.distributed is unavailable or not initialized."""
    return global_rank() == 0
