"""Devices: what ``device=...`` means, checked against what the machine has."""

from __future__ import annotations

import platform

import torch

#: What ``device`` accepts besides explicit torch device strings.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(requested: str | torch.device, *, slot: int = 0) -> torch.device:
    """The torch device ``requested`` names, refused with a clear message when the machine lacks it.

    Args:
        requested: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        slot: which GPU ``auto`` picks among the visible ones (``slot % count``): a job's number
            or a torchrun rank, so parallel jobs spread over the GPUs.

    Raises:
        ValueError: an unknown device string, CUDA asked for where it is not available, or a GPU
            index beyond the visible ones.
    """
    text = str(requested)
    if text == "auto":
        return torch.device(auto_device(slot))
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {text!r}; valid devices: {', '.join(DEVICE_CHOICES)}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {text!r} was asked for but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use device=cpu or device=auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            shown = f"cuda:0..{count - 1}" if count else "none"
            raise ValueError(f"device {text!r} was asked for but this machine shows {count} GPU(s): {shown}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {text!r} was asked for but MPS is not available on this machine; use device=cpu")
    elif device.type != "cpu":
        raise ValueError(f"device {text!r} is not supported; valid devices: {', '.join(DEVICE_CHOICES)}")
    return device


def auto_device(slot: int = 0, *, cuda_devices: int | None = None) -> str:
    """What ``auto`` means: the CPU without CUDA, else GPU ``slot % count`` of the visible ones.

    Args:
        slot: a job's number or a torchrun rank, so parallel jobs spread over the GPUs.
        cuda_devices: visible CUDA devices (default: what torch sees).
    """
    if cuda_devices is None:
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{slot % cuda_devices}" if cuda_devices else "cpu"


def describe_device(device: torch.device) -> str:
    """``cpu (N threads, arch)`` or the CUDA device name."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"
