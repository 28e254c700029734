"""What the library keeps on disk besides volumes: atomic writes, checkpoints, resumable states.

====================  ===============================================================
module                owns
====================  ===============================================================
:mod:`.atomic`        :func:`atomic_write` (a temporary file renamed into place), :class:`WriteError`
:mod:`.checkpoint`    checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`, the task a model
                      was trained for: :func:`checkpoint_task`, :func:`check_task`), resumable
                      training states, :func:`plain_data`, :func:`check_resumable`, :func:`save_json`
:mod:`.fingerprints`  what a resumable state records of its inputs, and the check of a resumed
                      run against them (:func:`check_inputs`, :class:`InputChanged`)
====================  ===============================================================

It sits below the trainers, the adaptation loop and the predictors (which all read or write
checkpoints) and imports only the core and the networks (:mod:`emseg_tutorial.models`).
"""

from .atomic import WriteError, atomic_write
from .checkpoint import (check_resumable, check_task, checkpoint_task, load_checkpoint, load_state, load_training_state, plain_data,
                         restore_model, save_checkpoint, save_json, save_training_state, with_defaults)
from .fingerprints import InputChanged, check_inputs, fingerprint, input_fingerprints

__all__ = ["atomic_write", "WriteError", "save_checkpoint", "load_checkpoint", "checkpoint_task", "check_task", "save_training_state",
           "load_training_state", "load_state", "check_resumable", "restore_model", "plain_data", "save_json", "with_defaults",
           "fingerprint", "input_fingerprints", "check_inputs", "InputChanged"]
