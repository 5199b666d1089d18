"""Which collective backend a device uses, and how a barrier can get a timeout that really fires.

Pure functions of strings and versions so that CUDA/XPU/old-torch decisions are testable on a CPU box.
`get_backend()` can say 'undefined' or 'cpu:gloo'; `get_backend_config()` is the reliable source.
"""

from __future__ import annotations

import re
from typing import Literal

# The first torch releases with each capability (checked against torch's release notes and sources):
XCCL_MIN_VERSION = (2, 8)  # torch.distributed ships the 'xccl' backend for Intel XPU
BARRIER_TIMEOUT_MIN_VERSION = (2, 12)  # dist.barrier(timeout=timedelta) exists

SyncPath = Literal["side_group", "default_group", "default_barrier", "async_barrier"]


def torch_version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.13.0+cpu' or '2.8.0a0+git1234'."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"unrecognised torch version {version!r}")
    return int(match.group(1)), int(match.group(2))


def backend_for_device(device_type: str, torch_version: str) -> str:
    """The process-group backend for a device: cpu->gloo, cuda->nccl, xpu->xccl (or oneCCL's 'ccl')."""
    if device_type == "cpu":
        return "gloo"
    if device_type == "cuda":
        return "nccl"
    if device_type == "xpu":
        return "xccl" if torch_version_tuple(torch_version) >= XCCL_MIN_VERSION else "ccl"
    raise ValueError(f"no known process-group backend for device type {device_type!r}")


def parse_backend_config(config: str) -> dict[str, str]:
    """'cpu:gloo,cuda:nccl' -> {'cpu': 'gloo', 'cuda': 'nccl'}; a bare 'gloo' serves the CPU."""
    devices: dict[str, str] = {}
    for part in config.lower().split(","):
        part = part.strip()
        if not part:
            continue
        device, sep, backend = part.partition(":")
        if sep:
            devices[device.strip()] = backend.strip()
        elif part == "gloo":
            devices["cpu"] = "gloo"
        else:
            devices.setdefault("default", part)
    return devices


def default_group_carries_cpu(config: str) -> bool:
    """Whether CPU-tensor collectives on the default group run on gloo (which honours per-call timeouts)."""
    return parse_backend_config(config).get("cpu") == "gloo"


def choose_sync_path(
    *, config: str, gloo_available: bool, has_side_group: bool, torch_version: str
) -> SyncPath:
    """How a checkpoint barrier with a real timeout is made for this process group.

    A gloo group is preferred because its timeouts fire on every waiting rank, also when rank 0 is
    the late one; nccl/xccl barriers block in the device runtime and need the fallbacks.
    """
    if has_side_group:
        return "side_group"
    if default_group_carries_cpu(config):
        return "default_group"
    if gloo_available:
        return "side_group"
    if torch_version_tuple(torch_version) >= BARRIER_TIMEOUT_MIN_VERSION:
        return "default_barrier"
    return "async_barrier"
