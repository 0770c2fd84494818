"""Explicit randomness: derived seeds and a context that seeds torch without leaking state."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any printable parts (independent of Python's hash salt)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's global RNG inside the block and restore the caller's state afterwards.

    Module initialization draws from the global RNG; this keeps it reproducible without
    mutating the caller's random state.
    """
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)
