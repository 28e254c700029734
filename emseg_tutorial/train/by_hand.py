"""Helpers for chapter 3's "one training step by hand": run the library's step beside the reader's.

The chapter writes one optimiser step out (patch sampler, weight map, weighted cross-entropy,
Adam) and compares it with :func:`~emseg_tutorial.train.supervised.training_step`, the step
:func:`~emseg_tutorial.train.supervised.train_supervised` repeats. These two functions do the
library's side of that comparison; they add no logic of their own.

Examples
--------
>>> import torch
>>> net = torch.nn.Conv2d(1, 2, kernel_size=1)
>>> batch = {"image": torch.ones(1, 1, 4, 4), "target": torch.zeros(1, 4, 4, dtype=torch.long),
...          "weight": torch.ones(1, 4, 4)}
>>> stepped, loss = library_step(net, batch, lr=0.1)
>>> parameter_difference(net, stepped) > 0   # the copy moved, ``net`` did not
True
"""

from __future__ import annotations

import copy

import torch

from ..devices import adam, precision
from .supervised import training_step

__all__ = ["library_step", "parameter_difference"]


def library_step(model: torch.nn.Module, batch: dict, lr: float, *, seed: int = 0,
                 loss: str = "ce") -> tuple[torch.nn.Module, float]:
    """A copy of ``model`` after one :func:`training_step` with a fresh ``Adam(lr)`` on ``batch``.

    Parameters
    ----------
    model : torch.nn.Module
        The network before the step; left untouched.
    batch : dict
        ``image`` (B, 1, P, P), ``target`` (B, P, P) class indices (-1 ignored) and ``weight``
        (B, P, P), as arrays or CPU tensors (a :class:`~emseg_tutorial.data.patches.PatchSampler`
        batch).
    lr : float
        Adam's learning rate.
    seed : int, optional
        ``torch.manual_seed`` before the step (dropout draws), inside a forked random state so the
        caller's stream is left alone; seed the by-hand step the same way.
    loss : str, optional
        The trainer's loss setting (``"ce"``: weighted cross-entropy).

    Returns
    -------
    (torch.nn.Module, float)
        The stepped copy (on the CPU) and the loss of the step.
    """
    copy_ = copy.deepcopy(model).cpu()
    tensors = {k: torch.as_tensor(batch[k]) for k in ("image", "target", "weight") if k in batch}
    optimizer = adam(copy_.parameters(), lr, "cpu")
    amp = precision("cpu", "float32")  # the by-hand step is plain float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        value = training_step(copy_, tensors, optimizer, amp.grad_scaler(), amp, loss)
    return copy_, float(value)


def parameter_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest absolute difference between matching parameters of two same-shaped networks.

    Raises
    ------
    ValueError
        When the two networks do not have the same parameter shapes.
    """
    pa, pb = list(a.parameters()), list(b.parameters())
    if [p.shape for p in pa] != [p.shape for p in pb]:
        raise ValueError("the two networks have different parameter shapes")
    with torch.no_grad():
        return max((float((p.detach().cpu() - q.detach().cpu()).abs().max()) for p, q in zip(pa, pb)),
                   default=0.0)
