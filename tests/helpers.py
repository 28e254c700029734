"""What many test files build the same way: the ci session, its adaptation configs, a tiny U-Net.

Fixtures live in ``conftest.py``; these are plain values and functions, importable where a
fixture cannot reach (``pytest.mark.parametrize`` arguments, module constants).
"""

from __future__ import annotations

import signal

import torch

from emseg_tutorial.adapt import AdaptConfig
from emseg_tutorial.models import UNet2d
from emseg_tutorial.paper.stages import adapt_config
from emseg_tutorial.presets import get_preset
from emseg_tutorial.session import Session

#: The ci preset on the CPU, without progress bars: every config here is built by the library's
#: preset builders, as in the book.
CI = Session(preset=get_preset("ci"), device=torch.device("cpu"), progress=False)


def ci_config(method: str = "paper", **fields) -> AdaptConfig:
    """A ci-sized :class:`AdaptConfig` of ``method`` on the CPU (``fields`` replace any setting)."""
    return adapt_config(CI, method, **fields)


def tiny_unet(out_channels: int = 2, seed: int = 0, **kwargs) -> UNet2d:
    """A two-level, four-channel U-Net (a step takes milliseconds), its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return UNet2d(out_channels=out_channels, depth=2, base_width=4, **kwargs)


def signal_at(monkeypatch, owner, name: str, nth: int, sig=signal.SIGTERM, after: bool = False) -> list:
    """Replace ``owner.name`` by itself sending ``sig`` to this process at its ``nth`` call (before
    the call, or right after it returned with ``after``): an interruption from inside the work,
    never a timer racing it. Returns the list of calls made."""
    real = getattr(owner, name)
    calls = []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth and not after:
            signal.raise_signal(sig)
        result = real(*args, **kwargs)
        if len(calls) == nth and after:
            signal.raise_signal(sig)
        return result

    monkeypatch.setattr(owner, name, signalling)
    return calls
