"""Where dense work runs: the GPU Spark assigned to the task, else the CPU.

Spark's stage-level scheduling gives a task the addresses of the resources it asked for
(``TaskContext.resources()["gpu"].addresses``, which the Spark engine hands to the runtime:
:func:`lotan.runtime.task.assign_gpus`); a dense stage moves its inputs and the
weights to that GPU, runs there, and brings the results back. Without an assigned GPU — a
CPU-only executor, the local engine, or a GPU that this process cannot use — it runs on the
CPU. ``LOTAN_DENSE_DEVICE`` overrides the choice: ``auto`` (default, as above), ``cpu``, or
``cuda`` / ``cuda:N`` (e.g. the local engine on a machine with a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lotan.errors import EngineError

__all__ = ["DEVICE_ENV", "select_device", "task_device", "to_device", "to_host"]

DEVICE_ENV = "LOTAN_DENSE_DEVICE"


def select_device(setting: str, gpu_addresses: Sequence[str], cuda_available: bool) -> torch.device:
    """The device for ``setting`` (``auto``/``cpu``/``cuda[:N]``) given the GPU addresses
    assigned to the task and whether CUDA works in this process."""
    setting = setting.strip().lower()
    if setting == "cpu":
        return torch.device("cpu")
    if setting.startswith("cuda"):
        if not cuda_available:
            raise EngineError(
                f"{DEVICE_ENV}={setting} but CUDA is not available to this process (torch "
                f"{torch.__version__}); install a CUDA build of torch or use {DEVICE_ENV}=auto"
            )
        return torch.device(setting)
    if setting != "auto":
        raise EngineError(f"{DEVICE_ENV}={setting!r} is not one of auto, cpu, cuda, cuda:N")
    if gpu_addresses and cuda_available:
        return torch.device(f"cuda:{int(gpu_addresses[0])}")
    return torch.device("cpu")


def task_device(gpus: Sequence[str] = ()) -> torch.device:
    """The device the dense work of a task given the GPUs ``gpus`` runs on (see the module
    docstring)."""
    return select_device(os.environ.get(DEVICE_ENV, "auto"), gpus, torch.cuda.is_available())


#: Tensors at least this large go to the GPU through pinned (page-locked) memory: the copy
#: into it is one memcpy, and the transfers then run asynchronously, side by side; smaller
#: ones are not worth the pinned allocation.
PIN_BYTES = 1 << 20


def to_device(tensors: Mapping[Any, torch.Tensor], device: torch.device) -> dict[Any, torch.Tensor]:
    """``tensors`` on ``device`` (a CUDA device: large ones through pinned memory, all copies
    issued without waiting; CUDA orders them before any kernel that reads them)."""
    out = {}
    for k, v in tensors.items():
        if v.device.type == "cpu" and v.numel() * v.element_size() >= PIN_BYTES:
            v = v.pin_memory()
        out[k] = v.to(device, non_blocking=True)
    return out


def to_host(tensors: Mapping[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
    """``tensors`` back on the CPU: each copied into pinned memory without waiting, then one
    synchronization for all of them."""
    out = {}
    devices = set()
    for k, v in tensors.items():
        if v.device.type == "cpu":
            out[k] = v
            continue
        host = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
        host.copy_(v, non_blocking=True)
        out[k] = host
        devices.add(v.device)
    for d in devices:
        torch.cuda.synchronize(d)
    return out
