"""Adaptation runs kept in the session's runs folder: reused when finished, continued when cut short.

Chapter 5's run (:func:`.stages.run_adaptation`) and every (method, seed) run of chapter 6's
comparison (:func:`.comparison.compare`) is one *unit*. Its **fingerprint**
(:func:`adaptation_fingerprint`) holds what its result depends on: the method or variant, its
settings (the device aside: the same run on any device), a hash of the package source
(:func:`~emseg_tutorial._source.source_hash`), the source model's own fingerprint (M3's, from :func:`.stages.get_stage`) and a digest of every volume the
run reads. A short hash of it names the unit's files, kept under ``<runs>/<preset>/adapt/``
(:func:`unit_path`):

``<name>-seed<seed>-<key>.state.pt``
    The resumable state of a trained method (:mod:`emseg_tutorial.adapt.state`), written after
    every epoch. A later call with the same fingerprint continues from it, so a dropped session
    loses at most the epoch in progress; once it holds the last epoch, the run is finished and
    is read back instead of trained again (chapter 5 keeps this file: it is the adapted model).
``<name>-seed<seed>-<key>.run.pt``
    The record of a finished comparison unit (:func:`save_run`): its per-epoch reports, its
    last epoch's snapshot and seconds, without weights (the tables and figures need no more:
    at the ``gpu`` preset every epoch's 1024 x 1024 snapshot would make 0.4 GB of records).
    It replaces the unit's state.

Any change of settings, package source, data or source model gives another key, hence a fresh
run; every reuse or continuation says so in one line (what, and the file it came from); ``make book`` and ``make test`` start from an empty runs folder.

Examples
--------
>>> import numpy as np
>>> fp = adaptation_fingerprint("paper", {"epochs": 4, "device": "cuda"}, model="m3-fp",
...                             volumes={"target": np.zeros((1, 2, 2), np.uint8)})
>>> fp["config"], fp["name"]
({'epochs': 4}, 'paper')
>>> fingerprint_key(fp) == fingerprint_key(adaptation_fingerprint(
...     "paper", {"epochs": 4, "device": "cpu"}, model="m3-fp", volumes={"target": np.zeros((1, 2, 2), np.uint8)}))
True
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import _source
from ..adapt.methods import MethodRun
from ..adapt.state import load_adaptation_state
from ..data.volume import Volume
from ..progress import note
from ..session import Session
from ..store import atomic_write, load_state, plain_data

RUN_KIND = "adaptation-run"


def digest(*arrays: np.ndarray) -> str:
    """A 16-byte BLAKE2b hex digest of the arrays' bytes, in order.

    Examples
    --------
    >>> a = np.arange(4, dtype=np.uint8)
    >>> digest(a) == digest(a.copy()) != digest(a[::-1])
    True
    """
    h = hashlib.blake2b(np.ascontiguousarray(arrays[0]).tobytes(), digest_size=16)
    for a in arrays[1:]:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _volume_digest(volume: Volume | np.ndarray | None, labels: bool) -> str | None:
    if volume is None:
        return None
    if isinstance(volume, Volume):
        return f"{volume.name}{tuple(volume.shape)}:" + (digest(volume.image, volume.labels) if labels
                                                         else digest(volume.image))
    return f"array{tuple(volume.shape)}:{digest(volume)}"


def volume_digests(volumes: dict[str, Volume | np.ndarray | None]) -> dict[str, str | None]:
    """The digest of every volume a run reads, by role (see :func:`adaptation_fingerprint`);
    compute them once for many runs over the same volumes."""
    return {k: _volume_digest(v, labels=k != "target") for k, v in volumes.items()}


def adaptation_fingerprint(name: str, config: dict, *, model: object,
                           volumes: dict[str, Volume | np.ndarray | None] | None = None,
                           digests: dict[str, str | None] | None = None, extra: dict | None = None) -> dict:
    """What a saved adaptation unit must match to be reused or continued.

    Parameters
    ----------
    name : str
        Method or variant name (``"paper"``, ``"conditional-raw"``, ...).
    config : dict
        The run's settings (:class:`~emseg_tutorial.adapt.AdaptConfig` as a dict, or the one-shot
        methods' few settings); ``device`` is left out.
    model : object
        The source model's fingerprint (a stage's ``history["fingerprint"]``).
    volumes : dict
        Every volume the run reads, by role. A :class:`~emseg_tutorial.data.volume.Volume` counts
        with its labels, except under the key ``"target"`` (the unlabelled target: only its image
        is read); a bare array counts as it is.
    digests : dict, optional
        :func:`volume_digests` of the volumes, computed beforehand, in place of ``volumes``.
    extra : dict, optional
        Anything else the result depends on (the snapshot slice, say).
    """
    fp = {"name": name, "config": {k: v for k, v in config.items() if k != "device"}, "source": _source.source_hash(),
          "model": model, "data": digests if digests is not None else volume_digests(volumes or {}),
          "extra": extra or {}}
    return json.loads(json.dumps(fp, default=str, sort_keys=True))


def fingerprint_key(fingerprint: dict) -> str:
    """Twelve hex digits naming a fingerprint's files."""
    return hashlib.blake2b(json.dumps(fingerprint, sort_keys=True).encode(), digest_size=6).hexdigest()


def unit_path(session: Session, name: str, seed: int | None, fingerprint: dict, suffix: str) -> Path:
    """``<runs>/<preset>/adapt/<name>-seed<seed>-<key>.<suffix>`` (no ``-seed`` part for a one-shot run)."""
    seed_part = "" if seed is None else f"-seed{seed}"
    return Path(session.runs) / session.preset.name / "adapt" / f"{name}{seed_part}-{fingerprint_key(fingerprint)}.{suffix}"


def saved_state(path: str | os.PathLike, what: str = "adaptation", *, epochs: int | None = None) -> dict | None:
    """The adaptation state at ``path`` to continue from, or None when there is none.

    A state found is announced in one line (:func:`~emseg_tutorial.progress.note`): "reused
    WHAT from PATH" when it holds the last of ``epochs`` (the run is read
    back, not trained), else "continuing WHAT from PATH (epoch e of n)". A file that does not
    read as a state (cut off by a full disk, say) is reported with a ``RuntimeWarning`` and
    ignored: the unit then runs from the start and overwrites it.
    """
    if not Path(path).is_file():
        return None
    try:
        state = load_adaptation_state(path)
    except ValueError as err:
        warnings.warn(f"{err}; the run starts again", RuntimeWarning, stacklevel=2)
        return None
    done = int(state["epoch"])
    if epochs is not None and done >= epochs:
        note(f"reused {what} from {path}")
    else:
        note(f"continuing {what} from {path} (epoch {done}{'' if epochs is None else f' of {epochs}'})")
    return state


def save_run(path: str | os.PathLike, run: MethodRun, fingerprint: dict) -> None:
    """Write a finished unit's reports, snapshots and seconds (no weights), atomically."""
    payload = {"kind": RUN_KIND, "fingerprint": fingerprint, "name": run.name, "seed": run.seed,
               "epochs": plain_data(run.epochs), "seconds": float(run.seconds),
               "snapshots": [torch.from_numpy(np.ascontiguousarray(s)) for s in run.snapshots]}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_run(path: str | os.PathLike, fingerprint: dict) -> MethodRun | None:
    """The :class:`~emseg_tutorial.adapt.MethodRun` saved at ``path`` when it has ``fingerprint``, else None.

    A run read back says so in one line ("reused paper (seed 0) from PATH").
    An unreadable file is reported with a ``RuntimeWarning`` and ignored, like :func:`saved_state`.
    """
    if not Path(path).is_file():
        return None
    try:
        saved = load_state(path, RUN_KIND, keys=("fingerprint", "epochs", "snapshots"))
    except ValueError as err:
        warnings.warn(f"{err}; the run starts again", RuntimeWarning, stacklevel=2)
        return None
    if saved["fingerprint"] != fingerprint:
        return None
    seed = "" if saved["seed"] is None else f" (seed {saved['seed']})"
    note(f"reused {saved['name']}{seed} from {path}")
    return MethodRun(saved["name"], saved["seed"], saved["epochs"], [s.numpy() for s in saved["snapshots"]],
                     saved["seconds"])
