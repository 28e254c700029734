"""Picking the compute device and deciding when mixed precision is used.

Everything runs on the CPU; CUDA (and Apple's MPS) are used when present. Mixed precision is
switched on only on CUDA, where it is fast and well supported.

Examples
--------
>>> pick_device("cpu").type
'cpu'
>>> use_amp(pick_device("cpu"))
False
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

DEVICES = ("cpu", "cuda", "mps")


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """Return ``preference`` if given, else cuda, then mps, then cpu.

    Raises
    ------
    ValueError
        If the requested device is unknown or not available on this machine.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    if preference is None or preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {preference!r}; expected one of {DEVICES} or 'auto'") from None
    if device.type not in DEVICES:
        raise ValueError(f"unknown device {preference!r}; expected one of {DEVICES} or 'auto'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {preference!r} requested but MPS is not available on this machine")
    return device


def use_amp(device: torch.device) -> bool:
    """Mixed precision (float16 autocast + gradient scaling) only on CUDA."""
    return torch.device(device).type == "cuda"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def on_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules
