"""Backend choice for every device and torch version, testable without the devices."""

from __future__ import annotations

import pytest

from ckptfix.runtime.backend import (
    backend_for_device,
    choose_sync_path,
    default_group_carries_cpu,
    parse_backend_config,
    torch_version_tuple,
)


@pytest.mark.parametrize(
    ("device", "version", "backend"),
    [
        ("cpu", "2.2.0", "gloo"),
        ("cuda", "2.13.0+cu128", "nccl"),
        ("xpu", "2.8.0+xpu", "xccl"),
        ("xpu", "2.13.0", "xccl"),
        ("xpu", "2.7.1+xpu", "ccl"),
        ("xpu", "2.2.0", "ccl"),
    ],
)
def test_backend_for_device(device, version, backend):
    assert backend_for_device(device, version) == backend


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device type 'tpu'"):
        backend_for_device("tpu", "2.13.0")


@pytest.mark.parametrize(
    ("version", "parsed"),
    [("2.13.0+cpu", (2, 13)), ("2.8.0a0+git1234", (2, 8)), ("10.1", (10, 1))],
)
def test_torch_version_tuple(version, parsed):
    assert torch_version_tuple(version) == parsed


@pytest.mark.parametrize(
    ("config", "parsed", "cpu"),
    [
        ("cpu:gloo,cuda:gloo", {"cpu": "gloo", "cuda": "gloo"}, True),
        ("cpu:gloo,cuda:nccl", {"cpu": "gloo", "cuda": "nccl"}, True),
        ("cuda:nccl", {"cuda": "nccl"}, False),
        ("xpu:xccl", {"xpu": "xccl"}, False),
        ("gloo", {"cpu": "gloo"}, True),
        ("nccl", {"default": "nccl"}, False),
        ("CPU:GLOO, XPU:XCCL", {"cpu": "gloo", "xpu": "xccl"}, True),
    ],
)
def test_parse_backend_config(config, parsed, cpu):
    assert parse_backend_config(config) == parsed
    assert default_group_carries_cpu(config) is cpu


@pytest.mark.parametrize(
    ("config", "gloo", "side", "version", "path"),
    [
        ("cuda:nccl", True, True, "2.13.0", "side_group"),
        ("cpu:gloo,cuda:nccl", True, False, "2.13.0", "default_group"),
        ("cpu:gloo", True, False, "2.2.0", "default_group"),
        ("cuda:nccl", True, False, "2.4.0", "side_group"),
        ("xpu:xccl", False, False, "2.13.0", "default_barrier"),
        ("xpu:xccl", False, False, "2.12.0", "default_barrier"),
        ("xpu:ccl", False, False, "2.5.1", "async_barrier"),
        ("cuda:nccl", False, False, "2.11.0", "async_barrier"),
    ],
)
def test_choose_sync_path(config, gloo, side, version, path):
    assert (
        choose_sync_path(config=config, gloo_available=gloo, has_side_group=side, torch_version=version)
        == path
    )
