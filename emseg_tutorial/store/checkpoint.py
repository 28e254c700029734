"""Checkpoints: the model's constructor arguments, its weights, the run's config and history.

A checkpoint is a plain dictionary saved with :func:`torch.save`::

    {"arch": model.arch, "model": model.init_kwargs, "state": state_dict,
     "config": {...}, "history": {...}}

It holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs), and the network is rebuilt from
its kind and keyword arguments (:func:`emseg_tutorial.models.build`) rather than from a pickled
class: U-Nets and discriminators alike. Checkpoints written before the ``arch`` key existed are
U-Nets.

Examples
--------
>>> import tempfile, os
>>> from emseg_tutorial.models import UNet2d
>>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
>>> save_checkpoint(path, UNet2d(out_channels=2, depth=2, base_width=4), config={"task": "boundary"})
>>> model, ckpt = load_checkpoint(path)
>>> ckpt["config"]["task"], model.init_kwargs["out_channels"]
('boundary', 2)
"""

from __future__ import annotations

import dataclasses

import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from .._validate import InputError
from ..labels import TASKS
from ..models import arch_of, build
from ..models.build import check_kwargs, meta_network
from .atomic import atomic_write


def plain_data(value):
    """``value`` made JSON- and weights_only-safe: tuples to lists, arrays and numpy scalars to
    numbers, NaN to None (what checkpoints and resumable states store)."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_data(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return plain_data(value.item())
    return value


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, config: dict | None = None,
                    history: dict | None = None) -> None:
    """Write ``model`` (constructor kwargs and weights), ``config`` and ``history`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"arch": arch_of(model), "model": plain_data(model.init_kwargs), "state": state,
               "config": plain_data(config or {}), "history": plain_data(history or {})}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint; returns ``(model, checkpoint dict)``.

    The model remembers its file as ``model.checkpoint``, so later checks name it.

    Raises
    ------
    ValueError
        If the file is missing, empty, cut short or damaged, is not a checkpoint or does not match
        its model (naming the file), or ``device`` is none this machine has (naming the device,
        before the file is read).
    """
    path = Path(path)
    device = _load_device(device, path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file" if not path.exists() else
                         f"{path}: is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        magic = f.read(4)
    _check_whole(path, "checkpoint")
    if not zipfile.is_zipfile(path) and magic[:1] != b"\x80":  # torch.save: a zip (or, before 1.6, a pickle)
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither the zip nor the pickle format "
                         f"torch.save writes)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "unsupported global" in str(err).lower():
            raise ValueError(f"{path}: holds objects other than tensors and plain data, refused by "
                             f"torch.load(weights_only=True); only load checkpoints you trust") from None
        raise ValueError(_unreadable(path, "checkpoint", err)) from None
    except Exception as err:
        raise ValueError(_unreadable(path, "checkpoint", err)) from None
    if not isinstance(ckpt, dict) or not {"model", "state"} <= set(ckpt):
        raise ValueError(f"{path}: not an emseg-tutorial checkpoint (expected keys 'model' and 'state')")
    return restore_model(ckpt, path).to(device), ckpt


def checkpoint_task(ckpt: dict) -> str:
    """The task the model of a checkpoint was trained for (``"boundary"``, ``"mitochondria"``, ...).

    ``train`` records it in ``config["task"]``; ``adapt`` keeps the adaptation's settings
    (``config["adapt"]["task"]``) and the model it started from (``config["source"]``), read in
    that order. A checkpoint that records none (written before one-vs-rest tasks existed) is
    read by its head: 4 classes ``multiclass``, 2 ``boundary`` (the only two-class task then).

    Examples
    --------
    >>> checkpoint_task({"config": {"adapt": {"method": "adabn"}, "source": {"task": "mitochondria"}}})
    'mitochondria'
    >>> checkpoint_task({"model": {"out_channels": 4}, "config": {}})
    'multiclass'
    """
    return recorded_task(ckpt) or ("multiclass" if (ckpt.get("model") or {}).get("out_channels") == 4 else "boundary")


def recorded_task(ckpt: dict) -> str | None:
    """The task a checkpoint records (read as :func:`checkpoint_task` reads it), None where it
    records none.

    Examples
    --------
    >>> recorded_task({"config": {"task": "mitochondria"}}), recorded_task({"model": {"out_channels": 2}})
    ('mitochondria', None)
    """
    config = ckpt.get("config")
    while isinstance(config, dict):
        for task in (config.get("task"), (config.get("adapt") or {}).get("task")):
            if task in TASKS:
                return task
        config = config.get("source")
    return None


def check_task(ckpt: dict, task: str | None, name: str = "model") -> str:
    """The checkpoint's task (:func:`checkpoint_task`), after checking it is ``task`` when one is given.

    Raises
    ------
    InputError
        One line naming ``name``, the task the model was trained for and the one asked for.

    Examples
    --------
    >>> check_task({"config": {"task": "boundary"}}, "mitochondria", "m3.pt")
    Traceback (most recent call last):
    ...
    emseg_tutorial._validate.InputError: m3.pt: the model was trained for the boundary task, not mitochondria (its checkpoint records task 'boundary'); use a model trained with --task mitochondria
    """
    found = checkpoint_task(ckpt)
    if task is not None and task != found:
        raise InputError(f"{name}: the model was trained for the {found} task, not {task} (its checkpoint records "
                         f"task {found!r}); use a model trained with --task {task}")
    return found


#: Keys of a resumable training state (see :func:`save_training_state`).
STATE_KEYS = ("kind", "arch", "model", "state", "optimizer", "scaler", "rng", "step", "history", "config")


def save_training_state(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler | None, rng: dict, step: int, history: dict,
                        config: dict, inputs: dict | None = None, extra: dict | None = None) -> None:
    """Write everything a run needs to continue bit for bit, atomically.

    The state holds the model (as :func:`save_checkpoint` does), the optimiser's and the
    gradient scaler's state, the random streams (``rng``: plain data, e.g. a NumPy
    generator's ``bit_generator.state`` and ``torch.get_rng_state()``), the number of steps
    done, the history so far, the run's config and the fingerprints of its inputs (``inputs``:
    :func:`~.fingerprints.input_fingerprints`, checked on resumption by
    :func:`~.fingerprints.check_inputs`), and ``extra``: what else the trainer keeps (its
    stopping record, learning-rate schedule and best weights: tensors and plain values). It
    loads with ``weights_only=True``.
    """
    payload = {"kind": "training-state", "arch": arch_of(model), "model": plain_data(model.init_kwargs),
               "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": optimizer.state_dict(),
               "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
               "rng": rng, "step": int(step), "history": plain_data(history), "config": plain_data(config),
               "inputs": plain_data(inputs), "extra": extra or {}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_state(path: str | os.PathLike, kind: str = "training-state", keys=STATE_KEYS) -> dict:
    """Read a resumable state of ``kind`` (``weights_only=True``): a training state written by
    :func:`save_training_state`, or an adaptation state (:mod:`emseg_tutorial.adapt.state`).

    The state notes its file as ``state["file"]``, so the checks of the resumed run name it.

    Raises
    ------
    ValueError
        Missing or unreadable file, or not a state of that kind; one line naming the file.
    """
    path, what = Path(path), kind.replace("-", " ")
    if not path.is_file():
        raise ValueError(f"{path}: no {what} to resume from (no such file)")
    _check_whole(path, what)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(_unreadable(path, what, err)) from None
    if not isinstance(state, dict) or state.get("kind") != kind or not set(keys) <= set(state):
        raise ValueError(f"{path}: not a{'n' if what[0] in 'aeiou' else ''} {what} written by emseg-tutorial")
    state["file"] = str(path)  # named by the checks of the resumed run (fingerprints.check_inputs)
    return state


def load_training_state(path: str | os.PathLike) -> dict:
    """Read a state written by :func:`save_training_state` (see :func:`load_state`)."""
    return load_state(path)


def with_defaults(saved: dict, config_type: type) -> dict:
    """A saved config with the fields ``config_type`` (a dataclass) gained since it was saved, at
    their defaults (which is what that run did), so a state of an older version still resumes.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     steps: int
    ...     patience: int | None = None
    >>> with_defaults({"steps": 3}, Config)
    {'patience': None, 'steps': 3}
    """
    defaults = {f.name: f.default for f in dataclasses.fields(config_type) if f.default is not dataclasses.MISSING}
    return {**{k: v for k, v in defaults.items() if k not in saved}, **saved}


def check_resumable(saved: dict, config: dict, changeable: tuple[str, ...], position: str) -> None:
    """Raise ValueError unless a saved run's ``config`` equals ``config`` but for ``changeable``.

    ``position`` names where the saved run stands, for the message (``"step 3"``).
    """
    plain = plain_data(config)
    before = {k: v for k, v in saved.items() if k not in changeable}
    now = {k: v for k, v in plain.items() if k not in changeable}
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise ValueError(f"cannot resume: the saved run (at {position}) has other settings ({', '.join(changed)}); "
                         f"only {' and '.join(changeable)} may change")


def restore_model(ckpt: dict, path: str | os.PathLike = "checkpoint") -> torch.nn.Module:
    """The network of a checkpoint or training state, rebuilt from its kind and weights.

    The model remembers its file as ``model.checkpoint``, so later checks name it, and the task
    its checkpoint records (:func:`recorded_task`) as ``model.task``, so adaptation can check it.
    """
    arch = ckpt.get("arch", "unet2d")
    check_kwargs(arch, ckpt["model"], str(path))  # sizes bounded before anything is allocated
    try:
        shapes = meta_network(arch, ckpt["model"]).state_dict()  # shapes only, no memory
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: checkpoint does not rebuild its model ({_first_line(err)})") from None
    if not isinstance(ckpt["state"], dict):
        raise ValueError(f"{path}: not an emseg-tutorial checkpoint ('state' is not a dict of tensors)")
    mismatch = _state_mismatch(shapes, ckpt["state"])
    if mismatch:  # before the network is built: its size is then that of the stored weights
        raise ValueError(f"{path}: its weights do not fit the network its settings describe "
                         f"({ckpt['model']}): {mismatch}")
    try:
        model = build(arch, ckpt["model"], str(path))
        model.load_state_dict(ckpt["state"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: checkpoint does not rebuild its model ({_first_line(err)})") from None
    model.checkpoint = str(path)  # named by the checks that use the model (models.check_model)
    task = recorded_task(ckpt)
    if task is not None:
        model.task = task  # checked against the task it is adapted for (adapt.loop.check_boundary_model)
    return model


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else err.__class__.__name__


#: the first bytes of a zip file: what torch.save writes (since PyTorch 1.6)
ZIP_MAGIC = b"PK\x03\x04"
#: words of torch.load's errors on a file cut short or damaged (zip directory or records missing)
_DAMAGE = ("central directory", "zip archive", "crc", "ran out of input", "unexpected eof", "truncated",
           "file size", "invalid header")


def _check_whole(path: Path, what: str) -> None:
    """One-line ValueError for a file that is empty, or a zip (torch.save's format) cut short."""
    with open(path, "rb") as f:
        magic = f.read(4)
    a = "an" if what[0] in "aeiou" else "a"
    if not magic:
        raise ValueError(f"{path}: is empty (0 bytes), not {a} {what}; copy or save it again")
    if magic == ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: file is cut short or damaged: it starts as {a} {what} (a zip, as torch.save writes) "
                         f"but its end is missing; copy or save it again")


def _unreadable(path: Path, what: str, err: Exception) -> str:
    """The one line of a file ``torch.load`` could not read: cut short or damaged where its error says so."""
    reason = f"{err.__class__.__name__}: {_first_line(err)}"
    if isinstance(err, EOFError) or any(word in str(err).lower() for word in _DAMAGE):
        return f"{path}: file is cut short or damaged, not a readable {what} ({reason}); copy or save it again"
    return f"{path}: not a readable {what} ({reason})"


def _load_device(device: str | torch.device, path: Path) -> torch.device:
    """``device`` as a torch.device this machine has, else a one-line ValueError naming it (not the file)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device {device!r}: not a device ({_first_line(err)}); {path} was not read") from None
    kinds = {"cuda": ("CUDA", torch.cuda.is_available, torch.cuda.device_count),
             "mps": ("MPS", torch.backends.mps.is_available, lambda: 1)}
    if device.type in kinds:
        name, available, count = kinds[device.type]
        if not available():
            raise ValueError(f"device {str(device)!r}: {name} is not available on this machine, so {path} cannot be "
                             f"loaded onto it; load it with device='cpu'")
        if device.index is not None and device.index >= count():
            raise ValueError(f"device {str(device)!r}: this machine has {count()} {name} device(s), so {path} "
                             f"cannot be loaded onto it")
    return device


def _state_mismatch(expected: dict, stored: dict) -> str:
    """One line on how ``stored`` weights differ from a network's ``expected`` ones ('' if they fit)."""
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    shapes = [k for k in expected if k in stored and hasattr(stored[k], "shape")
              and tuple(stored[k].shape) != tuple(expected[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensors of other shapes (first {k}: {tuple(stored[k].shape)} stored, "
                     f"{tuple(expected[k].shape)} expected)")
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first {extra[0]})")
    return "; ".join(parts)


def save_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (NaN becomes null)."""
    text = json.dumps(plain_data(data), indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
