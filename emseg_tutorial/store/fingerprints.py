"""Fingerprints of a run's inputs, so that a resumed run continues on the data it started on.

A resumable state (:func:`~emseg_tutorial.store.save_training_state`,
:func:`~emseg_tutorial.adapt.state.save_adaptation_state`) records, for every input array or
network it was given, a small dictionary: its shape, its dtype and a **BLAKE2b digest of all its
bytes** (16 bytes; for a network: its parameter count and the digest of its weights and buffers
in state-dict order). The whole content is hashed, not a strided subsample: a subsample misses
an edit between its samples (a relabelled region, a re-aligned slice), and hashing is cheap
beside training: BLAKE2b reads about 1 GB/s on one core, so the paper's 200 x 500 x 500 uint8
source takes about 50 ms, once per run (the arrays are hashed slice by slice, so a view is
never copied whole). Only runs that keep a state (``checkpoint=``) or resume one pay it.

:func:`check_inputs` compares a saved state's fingerprints with the inputs given now and
raises :class:`InputChanged` (an :class:`~emseg_tutorial._validate.InputError`) naming the
argument; the command line rewords it with its flag (:meth:`InputChanged.named`). A state
written before fingerprints were recorded is accepted with a warning (its data cannot be
checked): refusing it would throw away a run that cannot be continued any other way, and such
runs were never checked before either.

Examples
--------
>>> import numpy as np
>>> a = np.arange(12, dtype=np.uint8).reshape(3, 4)
>>> fp = fingerprint(a)
>>> fp["shape"], fp["dtype"], fp == fingerprint(a.copy()), fp == fingerprint(a[::-1])
([3, 4], 'uint8', True, False)
>>> state = {"inputs": input_fingerprints({"image": a}), "file": "run/state.pt"}
>>> check_inputs(state, {"image": fingerprint(a + 1)})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
emseg_tutorial.store.fingerprints.InputChanged: image: is not the volume the saved run in run/state.pt trained on (saved: shape 3x4 uint8, BLAKE2b ..., given: shape 3x4 uint8, BLAKE2b ...); give the same image, or start a new run without resume
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

from .._validate import InputError

#: bytes of a BLAKE2b digest in a fingerprint (hex: twice as many characters)
DIGEST_SIZE = 16


def fingerprint(value: np.ndarray | torch.nn.Module | None) -> dict | None:
    """Shape, dtype and BLAKE2b digest of an array's bytes (see the module docstring); of a
    network: its parameter count and the digest of its weights and buffers. None stays None."""
    if value is None:
        return None
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    if isinstance(value, torch.nn.Module):
        n = 0
        for key, tensor in value.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(key.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            n += t.numel() if t.is_floating_point() else 0
        return {"kind": "network", "parameters": int(n), "blake2b": h.hexdigest()}
    array = np.asarray(value)
    rows = array.reshape(1, -1) if array.ndim < 2 else array
    for row in rows:  # one slice at a time: a strided view is never copied whole
        h.update(np.ascontiguousarray(row).tobytes())
    return {"kind": "array", "shape": [int(s) for s in array.shape], "dtype": str(array.dtype),
            "blake2b": h.hexdigest()}


def input_fingerprints(inputs: dict) -> dict:
    """:func:`fingerprint` of every input, by argument name (what a state records as ``inputs``)."""
    return {name: fingerprint(value) for name, value in inputs.items()}


def describe(fp: dict | None) -> str:
    """``"shape 6x48x48 uint8, BLAKE2b 1a2b3c4d5e6f"``: a fingerprint in a message."""
    if fp is None:
        return "none"
    short = fp["blake2b"][:12]
    if fp.get("kind") == "network":
        return f"{fp['parameters']} weights, BLAKE2b {short}"
    return f"shape {'x'.join(str(s) for s in fp['shape'])} {fp['dtype']}, BLAKE2b {short}"


class InputChanged(InputError):
    """A resumed run was given other data than its saved state records.

    ``argument`` is the library's name of the input (``"image"``, ``"target_image"``, ...);
    :meth:`named` rewords the message for a caller that knows the input by a flag.
    """

    def __init__(self, argument: str, saved: dict | None, given: dict | None, where: str | None,
                 verb: str = "trained on"):
        self.argument, self.saved, self.given, self.where, self.verb = argument, saved, given, where, verb
        super().__init__(self.named(argument, None, "resume", where))

    def named(self, flag: str, value: str | None = None, resume: str = "--resume", where: str | None = None) -> str:
        """The message with the input called ``flag`` (and its ``value``, a file), the resume
        option ``resume`` and the saved run's place ``where`` (default: its state file)."""
        where = where or self.where
        run = f"the saved run in {where}" if where else "the saved run"
        subject = f"{flag} {value}" if value else flag
        network = (self.saved or self.given or {}).get("kind") == "network"
        thing, verb = ("network", "started from") if network else ("volume", self.verb)
        fresh = f"start a new run without {resume}"
        if self.given is None:
            return (f"{flag}: {run} {verb} one ({describe(self.saved)}) and none is given; give the same "
                    f"{flag}, or {fresh}")
        if self.saved is None:
            return f"{subject}: {run} {verb} none; leave {flag} out, or {fresh}"
        return (f"{subject}: is not the {thing} {run} {verb} (saved: {describe(self.saved)}, given: "
                f"{describe(self.given)}); give the same {flag}, or {fresh}")


def check_inputs(state: dict, given: dict, *, verb: str = "trained on", optional: tuple[str, ...] = ()) -> dict:
    """Raise :class:`InputChanged` unless ``given`` (argument -> :func:`input_fingerprints` entry)
    matches the fingerprints ``state`` recorded.

    ``optional`` names inputs that may be left out when resuming (their saved value is then not
    needed: e.g. the ``init`` model of a training, whose weights the state holds). Returns the
    fingerprints to save with the continued run: ``given``, with the saved ones of the optional
    inputs left out (so a later resumption still checks them). A state
    without fingerprints (written before they were recorded) is accepted with a
    ``RuntimeWarning`` naming its file. Arguments are checked in ``given``'s order; the first
    that differs is reported.
    """
    where = state.get("file")
    saved = state.get("inputs")
    if saved is None:
        warnings.warn(f"{where or 'the saved run'}: saved before input fingerprints were recorded; its data "
                      f"cannot be checked, so the run continues on the data given", RuntimeWarning, stacklevel=3)
        return dict(given)
    kept = dict(given)
    for name, fp in given.items():
        before = saved.get(name)
        if fp is None and name in optional:
            kept[name] = before
            continue
        if _key(before) != _key(fp):
            raise InputChanged(name, before, fp, where, verb)
    return kept


def _key(fp: dict | None):
    """What two fingerprints must share to be the same input."""
    if fp is None:
        return None
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in fp.items()))
