"""Resumable adaptation: everything an adaptation run needs to continue after its last epoch.

After every epoch :func:`~.loop.adapt` can write the run's state (the U-Net, the discriminator
and the mean teacher, both optimisers and gradient scalers, every random stream, the history
and the snapshots) atomically; a run given that state continues with the next epoch, and gives
the same result as a run that was never interrupted (bit for bit on the CPU). It loads with
``torch.load(..., weights_only=True)``, and it is also a checkpoint of the adapted U-Net
(:func:`emseg_tutorial.store.load_checkpoint` reads it, e.g. to predict with a run cut short).
The random streams resume on a device of the kind they were drawn on (CPU and CUDA generator
states do not fit each other); a state saved on CUDA is refused on a CPU in one line naming
the device it was saved on. The state also records fingerprints of the run's inputs (the
starting model, the source labels, the target image and, where read, the source image:
:func:`adaptation_inputs`); a resumption on other data is refused in one line naming the
argument (:func:`check_resumption`).

Examples
--------
>>> import os, tempfile
>>> load_adaptation_state(os.path.join(tempfile.mkdtemp(), "none.pt"))
Traceback (most recent call last):
...
ValueError: ...none.pt: no adaptation state to resume from (no such file)
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..devices import restore_generator
from ..models import arch_of
from ..store import (atomic_write, check_inputs, check_resumable, input_fingerprints, load_state, plain_data,
                     with_defaults)
from .steps import StepContext

KIND = "adaptation-state"
#: Settings that may differ between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "device")


def save_adaptation_state(path: str | os.PathLike, ctx: StepContext, *, epoch: int, step: int, history: dict,
                          snapshots: list[np.ndarray], inputs: dict | None = None, kept: dict | None = None) -> None:
    """Write the state of a run after ``epoch`` (see the module docstring), atomically.

    ``kept`` is the epoch a ``keep="label-free"`` run would return and its weights
    (``{"epoch": int, "state": state_dict}``), so a resumed run returns the same.
    ``inputs`` are the fingerprints of the run's inputs (:func:`adaptation_inputs`), checked
    when it resumes (:func:`check_resumption`).
    """
    def weights(net):
        return None if net is None else {k: v.detach().cpu() for k, v in net.state_dict().items()}

    def optim(opt):
        return None if opt is None else opt.state_dict()

    def scaler(s):
        return s.state_dict() if s is not None and s.is_enabled() else {}

    payload = {"kind": KIND, "epoch": int(epoch), "step": int(step), "config": plain_data(ctx.config.to_dict()),
               # the U-Net as a checkpoint holds it, so load_checkpoint reads this file as well
               "arch": arch_of(ctx.model), "model": plain_data(ctx.model.init_kwargs), "state": weights(ctx.model),
               "history": plain_data(history), "snapshots": [torch.from_numpy(np.asarray(s)) for s in snapshots],
               "nets": {"disc": weights(ctx.disc), "teacher": weights(ctx.teacher)},
               "optimizers": {"g": optim(ctx.opt_g), "d": optim(ctx.opt_d)},
               "scalers": {"g": scaler(ctx.scaler_g), "d": scaler(ctx.scaler_d)},
               "rng": {"device": ctx.device.type, "source": ctx.source.state(), "target": ctx.target.state(),
                       "jitter": ctx.rng.get_state(), "torch": torch.get_rng_state()},
               "inputs": plain_data(inputs), "kept": kept}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def adaptation_inputs(model: torch.nn.Module, source_labels: np.ndarray, target_image: np.ndarray,
                      source_image: np.ndarray | None) -> dict:
    """Fingerprints of what an adaptation reads (:mod:`emseg_tutorial.store.fingerprints`): the
    model it starts from, the source labels, the target image and the source image (None
    where the method does not read it), by :func:`~.loop.adapt`'s argument names."""
    return input_fingerprints({"model": model, "source_labels": source_labels, "target_image": target_image,
                               "source_image": source_image})


def check_resumption(state: dict, config, inputs: dict) -> dict:
    """Raise ValueError unless ``state`` continues a run with ``config`` (only the number of
    epochs and the device may change) on the same ``inputs`` (:func:`adaptation_inputs`;
    :class:`~emseg_tutorial.store.InputChanged` names the argument that differs). A state
    saved before inputs were fingerprinted is accepted with a warning. Returns the fingerprints
    to save with the continued run (:func:`~emseg_tutorial.store.check_inputs`).
    """
    check_resumable(with_defaults(state["config"], type(config)), config.to_dict(), RESUMABLE_CHANGES,
                    f"epoch {state['epoch']}")
    return check_inputs(state, inputs, verb="ran on")


def load_adaptation_state(path: str | os.PathLike) -> dict:
    """Read a state written by :func:`save_adaptation_state`; one-line ValueError naming the file."""
    return load_state(path, KIND, keys=("epoch", "step", "config", "state", "nets"))


def restore(ctx: StepContext, state: dict) -> tuple[int, int, dict, list[np.ndarray]]:
    """Load ``state`` into a freshly built run; returns ``(epoch, step, history, snapshots)``.

    Its settings and inputs were checked before the run was built (:func:`check_resumption`).

    Raises
    ------
    ValueError
        The state is past the run's last epoch, or its random streams were drawn on a device of
        another kind, whose generator states do not fit this one's
        (:func:`~emseg_tutorial.devices.restore_generator`).
    """
    if state["epoch"] > ctx.config.epochs:
        raise ValueError(f"cannot resume: the saved adaptation is at epoch {state['epoch']}, "
                         f"past epochs={ctx.config.epochs}")
    ctx.model.load_state_dict(state["state"])
    for name, net in (("disc", ctx.disc), ("teacher", ctx.teacher)):
        if net is not None:
            net.load_state_dict(state["nets"][name])
    for key, opt in (("g", ctx.opt_g), ("d", ctx.opt_d)):
        if opt is not None:
            opt.load_state_dict(state["optimizers"][key])
    for key, scaler in (("g", ctx.scaler_g), ("d", ctx.scaler_d)):
        if scaler is not None and state["scalers"][key]:
            scaler.load_state_dict(state["scalers"][key])
    saved_on = state["rng"].get("device")
    ctx.source.set_state(state["rng"]["source"], saved_on)
    ctx.target.set_state(state["rng"]["target"], saved_on)
    restore_generator(ctx.rng, state["rng"]["jitter"], saved_on, "jitter stream")
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["epoch"]), int(state["step"]), state["history"], [s.numpy() for s in state["snapshots"]]
