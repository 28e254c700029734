"""Command line: ``python -m emseg_tutorial COMMAND ...`` (``--help`` on each command).

Each command is a pair of functions registered in :data:`COMMANDS`: one adds its arguments
to a sub-parser, one runs it. Every command checks its outputs first
(:func:`~emseg_tutorial.data.outputs.check_outputs`, or
:func:`~emseg_tutorial.data.outputs.check_output_folder` for ``train``/``adapt``), before
reading, training or predicting. Bad arguments or input exit with status 2 and one line on
stderr that names the argument or file and the problem; success exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .adapt import get_method, method_names, run_method
from .adapt.diagnostics import kept_summary
from .adapt.loop import KEEP, check_boundary_model
from .adapt.registry import DISCRIMINATOR_FILE, MODEL_FILES, STATE_FILE as ADAPT_STATE_FILE
from .adapt.state import load_adaptation_state
from .data.errors import VolumeError
from ._validate import check_pair
from .data.outputs import check_output_folder, check_outputs
from .data.readers import open_volume, read_image, read_labels, read_probabilities, read_volume
from .data.normalize import streaming_stats
from .data.writers import write_volume, write_volumes
from .data.sources import DATA_SOURCES, DataSourceError
from .data.specs import split_spec
from .data.zarr_format import begun as zarr_begun, is_zarr
from .data.augment import AUGMENTS
from .data.synthetic import DOMAINS, make_volume
from .data.synthetic.blocks import check_memory
from .devices import PRECISIONS, make_reproducible, precision
from .interrupt import exit_status, handle_signals, signal_name
from .data.volume import Volume
from .labels import FOREGROUND_TASKS, TASKS, check_task_labels, is_foreground_task, prediction_codes
from .losses import Diverged
from .metrics import MAX_TOLERANCE, check_tolerance, evaluate
from .models import check_model
from .paper.mito_benchmark import DEFAULT_METHODS, PAIR, benchmark_json, benchmark_text
from .paper.mito_benchmark import run_benchmark as run_mito_benchmark
from .paper.stages import method_settings, train_config
from .predict import predict_file
from .predict.tiled import MIN_TILE
from .presets import PRESETS
from .session import Session, from_env, preset_from_env
from .store import (InputChanged, atomic_write, check_task, load_checkpoint, load_training_state, save_checkpoint,
                    save_json)
from .train import CONVERGE, TrainConfig, converge_config, stop_reason_text, train_supervised, with_budget
from .train.supervised import LOSSES
from .weight_schemes import parse_weight_scheme

PROG = "python -m emseg_tutorial"
#: The resumable states ``train`` and ``adapt`` keep in their output folders.
STATE_FILE = "state.pt"
#: What ``benchmark vnc-lucchi`` writes in its ``--out`` folder.
BENCHMARK_FILES = ("vnc-lucchi.json", "vnc-lucchi.png")
#: Files whose presence means a folder holds a run of ``train`` or ``adapt`` (refused without --overwrite).
RUN_FILES = tuple(dict.fromkeys((*MODEL_FILES, STATE_FILE, ADAPT_STATE_FILE, DISCRIMINATOR_FILE,
                                 *(f for name in method_names() for f in get_method(name).outputs))))


class UsageError(Exception):
    """Bad arguments or input: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):  # NaN and infinity are no settings: refused here, not at NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _whole(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1, "a positive integer (a whole number >= 1)")


def _path(text: str) -> str:
    """A path flag's value: refused when empty or only spaces (an unset shell variable, say).

    An empty string is never "the current folder": ``--resume ''`` would otherwise start a fresh
    run there and ``--init ''`` would mean no initial model.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"is empty ({text!r}); give a file or folder (an unset shell variable?)")
    return text


def _tile(text: str) -> int:
    value = _positive(text)
    if value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"must be an integer >= {MIN_TILE} (the largest slice side predicted "
                                         f"at once), got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1}, got {text}")
    return value


def _tolerance(text: str) -> float:
    try:
        return check_tolerance(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("tolerance must", "must")) from None


# --------------------------------------------------------------------------- synth


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic FIBSEM-like or SNEMI3D-like volume and its labels",
                       description="Generate a labelled synthetic EM volume (the book's twins) as tif stacks.")
    p.add_argument("--domain", choices=DOMAINS, required=True,
                   help="fibsem: isotropic source, codes 1-4; snemi: anisotropic target, codes 1-3")
    p.add_argument("--shape", type=_positive, nargs=3, metavar=("Z", "Y", "X"), required=True,
                   help="volume shape in voxels (Y and X at least 16)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--image", type=_path, required=True, help="output image (.tif, FILE.h5:dataset or .npy)")
    p.add_argument("--labels", type=_path, required=True, help="output labels, codes 1-4 (same formats)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth(args) -> None:
    z, y, x = args.shape
    if min(y, x) < MIN_TILE:
        raise UsageError(f"--shape {z} {y} {x}: slices must be at least {MIN_TILE} x {MIN_TILE} pixels, got {y} x {x}")
    check_outputs({"--image": args.image, "--labels": args.labels})
    check_memory(args.domain, args.shape, "--shape")  # before anything is allocated
    vol = make_volume(args.domain, tuple(args.shape), seed=args.seed, progress=not args.quiet)
    write_volumes([(args.image, vol.image), (args.labels, vol.labels)], vol.voxel_size)  # both or neither
    print(f"wrote {args.image} and {args.labels}: {args.domain} twin, shape {vol.shape}, "
          f"voxel {vol.voxel_size} nm, seed {args.seed}")


# --------------------------------------------------------------------------- train

TASK_HELP = ("multiclass: codes 1-4; boundary: code 1 vs the rest; " + ", ".join(FOREGROUND_TASKS)
             + ": that class vs the rest (its code becomes 1, the other labelled codes 2)")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train the 2D U-Net on a labelled volume (Experiments 1 and 2)",
                       description="Supervised training with the paper's per-pixel loss weights. Writes "
                                   "DIR/model.pt (weights, config, history) and DIR/history.json, and keeps "
                                   "DIR/state.pt (everything needed to continue: --resume DIR).")
    p.add_argument("--image", type=_path, required=True,
                   help="image volume (tif, FILE.h5:dataset, folder of slices, .npy)")
    p.add_argument("--labels", type=_path, required=True, help="label volume, codes 0-4 (0 ignored)")
    p.add_argument("--task", choices=TASKS, required=True, help=TASK_HELP)
    p.add_argument("--weights", required=True, metavar="{entropy,distance,distance:R,ratio:R,border,none}",
                   help="per-pixel loss weights; ratio:R and distance:R give boundary R times the mean "
                        "weight of the rest")
    p.add_argument("--loss", choices=LOSSES, default="ce",
                   help="ce: weighted cross-entropy (the paper's, default); dice: soft Dice; ce+dice: their sum; "
                        "focal: focal loss (gamma 2) weighted by --weights")
    p.add_argument("--init", type=_path, metavar="CKPT",
                   help="start from this checkpoint (head replaced if the class count differs)")
    p.add_argument("--jitter", action="store_true", help="random intensity jitter (the paper's M2 -> M3 step)")
    p.add_argument("--augment", choices=list(AUGMENTS),
                   help="augmentation of every training patch: flips (random flips and quarter turns, the "
                        "default with --steps or a preset), flips+intensity (also a mild random gain, offset, gamma "
                        "and noise of the image; the default when training to convergence), flips+elastic (also a "
                        "smooth random deformation of image, labels and weights alike), all (both), none (not even "
                        "the flips); benchmarks/results/ablation.txt says what each gained")
    cpu, gpu = CONVERGE["cpu"], CONVERGE["gpu"]
    p.add_argument("--budget", type=_positive_float, metavar="MINUTES",
                   help="train until the validation score stops improving (--patience) or MINUTES have passed, "
                        "the learning rate halving on plateaus, and keep the best validation's weights. This is "
                        f"the default when neither --steps, --preset nor EMSEG_PRESET is given: {cpu.budget:g} min "
                        f"on a CPU ({cpu.patch}x{cpu.patch} patches, batch {cpu.batch_size}), {gpu.budget:g} min on "
                        f"a GPU ({gpu.patch}x{gpu.patch}, batch {gpu.batch_size})")
    p.add_argument("--patience", type=_positive, metavar="N",
                   help=f"stop after N validations without gain (default with a budget: {cpu.patience} on a CPU, "
                        f"{gpu.patience} on a GPU)")
    p.add_argument("--val-image", type=_path, metavar="FILE",
                   help="validate on this volume (with --val-labels) instead of the last 15%% of --image's slices")
    p.add_argument("--val-labels", type=_path, metavar="FILE", help="labels of --val-image")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="the book's sizes and fixed step counts (default: EMSEG_PRESET; without either, train "
                        "to convergence, see --budget)")
    p.add_argument("--steps", type=_positive,
                   help="optimiser steps (default: from the preset); with --budget, a cap")
    p.add_argument("--seed", type=_seed, help="random seed (default: the session's, 0)")
    p.add_argument("--device", help="cpu, cuda or mps (default: best available)")
    _add_precision(p)
    p.add_argument("--out", type=_path, help="output folder (default: the --resume folder)")
    p.add_argument("--resume", type=_path, metavar="DIR",
                   help="continue the run in DIR (its state.pt, written every validation interval) up to "
                        "--steps or --budget; the other settings must be the same")
    _add_overwrite(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_overwrite(p) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run an --out folder already holds (" + ", ".join(RUN_FILES[:4]) + ", ...); "
                        "without it such a folder is refused (--resume DIR continues the run in DIR)")


def _run_overwrite(args) -> bool:
    """Whether the run folder may already hold a run: ``--overwrite``, or ``--resume`` continuing its own."""
    if args.overwrite:
        return True
    return bool(args.resume) and (args.out is None or Path(args.out).resolve() == Path(args.resume).resolve())


def _add_precision(p) -> None:
    p.add_argument("--precision", choices=PRECISIONS,
                   help="autocast dtype (default: EMSEG_PRECISION, else auto: bfloat16 on recent GPUs and on "
                        "CPUs with native bfloat16, float16 on older GPUs, else float32)")


def _session(args) -> Session:
    """The run's settings: the flags, else the ``EMSEG_*`` variables (read in one place).

    A flag left out (None) is the session's value: ``--seed`` its seed, ``--precision``
    ``EMSEG_PRECISION``, ``--device`` ``EMSEG_DEVICE``, ``--preset`` ``EMSEG_PRESET``.
    """
    seed = getattr(args, "seed", None)
    session = from_env(0 if seed is None else seed, getattr(args, "preset", None), getattr(args, "data", None),
                       device=getattr(args, "device", None),
                       names={"device": "--device", "preset": "--preset", "data": "--data"})
    if getattr(args, "precision", None) is not None:
        try:
            precision(session.device, args.precision)  # float16 needs CUDA: say so before any work
        except ValueError as err:
            raise UsageError(f"--precision {args.precision}: {err}") from None
        session = session.replace(precision=args.precision)
    make_reproducible(session.seed, session.threads, session.device)  # as the chapters' setup()
    return session


#: the library's names of train's and adapt's inputs -> their flags (messages of a resumed run on other data)
TRAIN_INPUTS = {"image": "--image", "labels": "--labels", "init": "--init"}
ADAPT_INPUTS = {"model": "--model", "source_labels": "--source-labels", "source_image": "--source-image",
                "target_image": "--target-image"}


@contextmanager
def _flags_of_inputs(args, flags: dict[str, str]):
    """A resumed run given other data (:class:`~emseg_tutorial.store.InputChanged`) reported with
    the flag and file, and the ``--resume`` folder, instead of the library's argument names."""
    try:
        yield
    except InputChanged as err:
        flag = flags.get(err.argument)
        if flag is None:
            raise
        value = getattr(args, flag[2:].replace("-", "_"), None)
        raise UsageError(err.named(flag, value, "--resume", args.resume)) from None


def run_train(args) -> None:
    parse_weight_scheme(args.weights)
    session = _session(args)
    if args.out is None and args.resume is None:
        raise UsageError("train: give --out DIR (or --resume DIR to continue a run)")
    out = check_output_folder(args.out or args.resume, "--out" if args.out else "--resume",
                              ["model.pt", "history.json", STATE_FILE],
                              {"--image": args.image, "--labels": args.labels, "--init": args.init,
                               "--val-image": args.val_image, "--val-labels": args.val_labels},
                              run_files=RUN_FILES, overwrite=_run_overwrite(args))
    if (args.val_image is None) != (args.val_labels is None):
        given, missing = ("--val-image", "--val-labels") if args.val_image else ("--val-labels", "--val-image")
        raise UsageError(f"train: {given} needs {missing} (a validation volume's image and labels go together)")
    resume = load_training_state(Path(args.resume) / STATE_FILE) if args.resume else None
    vol = read_volume(args.image, args.labels)
    init = check_model(load_checkpoint(args.init)[0], classes=None) if args.init else None  # resumed: checked
    val = read_volume(args.val_image, args.val_labels) if args.val_image else None
    config = _train_config(args, session)
    try:
        with _flags_of_inputs(args, TRAIN_INPUTS):
            run = train_supervised(vol.image, vol.labels, config, init=init, progress=not args.quiet,
                                   checkpoint=out / STATE_FILE, resume=resume, compile=session.compile,
                                   image_name=args.image, labels_name=args.labels,
                                   val_image=val.image if val else None, val_labels=val.labels if val else None,
                                   val_names=(args.val_image, args.val_labels))
    except Diverged as err:  # the preset or the device sets the learning rate: say so
        where = "of the convergence sizes" if config.budget is not None and args.preset is None else \
            f"of --preset {session.preset.name}"
        raise UsageError(err.message({"lr": f"the learning rate {where}"})) from None
    save_checkpoint(out / "model.pt", run.model, config=config.to_dict(), history=run.history)
    save_json(out / "history.json", run.history)
    stop = run.history.get("stop")
    if stop is not None and (config.budget is not None or config.patience is not None):
        print(stop_reason_text(stop, config))
    last = run.history["val"][-1] if run.history["val"] else None
    summary = f"; last validation mean Jaccard {last['mean_jaccard']:.3f}" if last else ""
    steps = stop["step"] if stop else config.steps
    print(f"wrote {out / 'model.pt'} and {out / 'history.json'} after {steps} steps{summary}")


def _train_config(args, session: Session) -> TrainConfig:
    """The run's config: the book's fixed steps when ``--steps`` or a preset (``--preset``,
    ``EMSEG_PRESET``) is given without ``--budget``; else a run to convergence, sized by the
    preset when one is given, by the device otherwise (:mod:`emseg_tutorial.train.convergence`)."""
    common = dict(task=args.task, weights=args.weights, jitter=args.jitter, seed=session.seed,
                  device=str(session.device), loss=args.loss, precision=session.precision,
                  **({} if args.augment is None else {"augment": args.augment}))
    preset_given = args.preset is not None or preset_from_env() is not None
    if args.budget is None and (args.steps is not None or preset_given):
        config = train_config(session.preset, init=bool(args.init), steps=args.steps, **common)
        return config if args.patience is None else TrainConfig(**{**config.to_dict(), "patience": args.patience,
                                                                 "keep_best": True})
    if preset_given:
        return with_budget(train_config(session.preset, init=bool(args.init), **common), args.budget,
                           args.patience, steps=args.steps)
    cap = {} if args.steps is None else {"steps": args.steps}  # else converge_config's cap
    return converge_config(session.device, budget=args.budget, patience=args.patience, **cap,
                           **{k: v for k, v in common.items() if k != "device"})



# --------------------------------------------------------------------------- predict


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="segment a volume with a trained model",
                       description="Predict label codes for every slice (tiled with overlap when large). The "
                                   "volume is streamed: read, predicted and written a slice at a time, so "
                                   "stacks larger than memory work.")
    p.add_argument("--model", type=_path, required=True, metavar="CKPT", help="checkpoint written by train or adapt")
    p.add_argument("--image", type=_path, required=True, help="image volume")
    p.add_argument("--out", type=_path, required=True, metavar="PRED",
                   help="output label codes (.tif, FILE.h5:dataset, .npy, or .zarr: an OME-Zarr label pyramid; "
                        "IMAGE.zarr:labels/NAME adds it to the image IMAGE.zarr)")
    p.add_argument("--probabilities", type=_path, metavar="PROB",
                   help="also write class probabilities, float32: (C, Z, Y, X) in .npy/HDF5, an ImageJ "
                        "hyperstack (Z, C, Y, X) in tif")
    p.add_argument("--task", choices=TASKS,
                   help="refuse a model trained for another task (its checkpoint records its task); the codes "
                        "written are the model's: 1 the class, 2 the rest for a one-vs-rest task")
    p.add_argument("--tile", type=_tile, default=512,
                   help="largest tile side, at least 16 (default 512); tiles overlap by min(32, tile / 4) pixels")
    p.add_argument("--device", help="cpu, cuda or mps (default: best available)")
    p.add_argument("--cluster", metavar="local:N|tcp://HOST:PORT",
                   help="predict on a dask cluster: N local worker processes, or a running scheduler; "
                        "outputs must be .zarr (needs the 'scale' extra)")
    p.add_argument("--cluster-timeout", type=_positive_float, default=10.0, metavar="S",
                   help="seconds to wait for the scheduler to answer (default 10)")
    p.add_argument("--slab", type=_positive, help="slices per cluster task (default about 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_predict(args) -> None:
    check_outputs({"--out": args.out, "--probabilities": args.probabilities},
                  {"--image": args.image, "--model": args.model})
    if args.cluster:
        from .predict.distributed import parse_cluster, predict_distributed

        parse_cluster(args.cluster)
        model, ckpt = load_checkpoint(args.model)
        check_task(ckpt, args.task, args.model)
        model = check_model(model, args.model)  # before any cluster starts
        result = predict_distributed(model, args.image, args.out, args.probabilities, cluster=args.cluster,
                                     tile=args.tile, overlap=min(32, args.tile // 4), slab=args.slab,
                                     device=args.device or "cpu", timeout=args.cluster_timeout,
                                     progress=not args.quiet, model_name=args.model)
        print(f"wrote {args.out}" + (f" and {args.probabilities}" if args.probabilities else "")
              + f" on {args.cluster} ({result.shape[0]} slices, {result.slices_per_read} per task)")
        return
    device = _session(args).device
    with open_volume(args.image) as image:
        model, ckpt = load_checkpoint(args.model, device=device)
        check_task(ckpt, args.task, args.model)
        predict_file(model, image, args.out, args.probabilities, tile=args.tile, overlap=min(32, args.tile // 4),
                     device=device, progress=not args.quiet, model_name=args.model)
    print(f"wrote {args.out}" + (f" and {args.probabilities}" if args.probabilities else ""))


# --------------------------------------------------------------------------- evaluate


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a prediction against labels",
                       description="Per-class and mean Jaccard, boundary Jaccard and F1, adapted Rand "
                                   "error and variation of information (split / merge). A foreground task ("
                                   + ", ".join(FOREGROUND_TASKS) + ") adds the field's scores of its class: "
                                   "foreground IoU, precision, recall, F1 (Dice), MCC and, with --probabilities, "
                                   "average precision; its instances are the class's connected components.")
    p.add_argument("--prediction", type=_path, required=True, metavar="PRED",
                   help="predicted codes of the task, as predict writes them")
    p.add_argument("--labels", type=_path, required=True, help="ground-truth codes 0-4 (0 ignored)")
    p.add_argument("--task", choices=TASKS, required=True, help=TASK_HELP)
    p.add_argument("--probabilities", type=_path, metavar="PROB",
                   help="class probabilities written by predict --probabilities (or the class's own map): a "
                        "foreground task's average precision, and for the boundary task cells cut from them")
    p.add_argument("--tolerance", type=_tolerance, default=0.0,
                   help=f"boundary match tolerance in pixels, 0 to {MAX_TOLERANCE} (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


#: the rows ``evaluate`` prints after the per-class Jaccard: every task's, and a foreground task's
EVALUATE_ROWS = ("mean_jaccard", "boundary_jaccard", "boundary_f1", "adapted_rand_error", "voi_split", "voi_merge")
FOREGROUND_ROWS = ("mean_jaccard", "foreground_iou", "foreground_f1", "foreground_mcc", "foreground_ap",
                   "foreground_precision", "foreground_recall", "adapted_rand_error", "voi_split", "voi_merge")


def run_evaluate(args) -> None:
    pred = prediction_codes(read_labels(args.prediction), args.task, args.prediction)
    labels = check_task_labels(read_labels(args.labels), args.task, args.labels)
    check_pair(pred, labels, args.prediction, args.labels)
    probabilities = read_probabilities(args.probabilities) if args.probabilities else None
    try:
        scores = evaluate(pred, labels, args.task, tolerance=args.tolerance, probabilities=probabilities)
    except ValueError as err:  # inputs checked above: what is left is the probabilities' shape or values
        if probabilities is None:
            raise
        raise UsageError(f"--probabilities {args.probabilities}: {err}") from None
    if args.json:
        print(json.dumps(scores, allow_nan=False))
        return
    for name, value in scores["jaccard"].items():
        print(f"jaccard {name:14s} {_fmt(value)}")
    for key in FOREGROUND_ROWS if is_foreground_task(args.task) else EVALUATE_ROWS:
        if key in scores:
            print(f"{key:22s} {_fmt(scores[key])}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------- adapt


#: adapt's flags that set :class:`~emseg_tutorial.adapt.AdaptConfig` options: flag -> (args attribute,
#: the options it sets). A flag is refused for a method that reads none of them (its record's ``options``).
ADAPT_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "--preset": ("preset", ("epochs", "steps_per_epoch", "batch_size", "patch")),
    "--epochs": ("epochs", ("epochs",)), "--steps": ("steps", ("steps_per_epoch",)), "--lr-g": ("lr_g", ("lr_g",)),
    "--adv-weight": ("adv_weight", ("adv_weight",)), "--source-weight": ("source_weight", ("source_weight",)),
    "--condition-image": ("condition_image", ("condition_image",)), "--seed": ("seed", ("seed",)),
    "--precision": ("precision", ("precision",)), "--device": ("device", ("device",)),
    "--keep": ("keep", ("keep",)), "--patience": ("patience", ("patience",)),
}


def _by_method(key: str, records) -> str:
    """``"rank for conditional, raw for conditional-paper"``: each method's default of ``key``."""
    values: dict = {}
    for r in records:
        if key in r.defaults:
            values.setdefault(r.defaults[key], []).append(r.name)
    return ", ".join(f"{value} for {' and '.join(names)}" for value, names in values.items())


def add_adapt(sub) -> None:
    records = [get_method(n) for n in method_names()]
    extra = "; ".join(f"{r.name} also writes " + ", ".join(f"DIR/{f}" for f in r.outputs)
                      for r in records if r.outputs)
    p = sub.add_parser("adapt", help="adapt a boundary model to an unlabelled target volume (Experiment 3 and beyond)",
                       description=f"Unsupervised adaptation. Writes DIR/{MODEL_FILES[0]} (adapted U-Net, config, "
                                   f"history) and DIR/{MODEL_FILES[1]}; trained methods keep DIR/{ADAPT_STATE_FILE} "
                                   f"(to continue: --resume DIR), adversarial methods also write "
                                   f"DIR/{DISCRIMINATOR_FILE}" + (f"; {extra}" if extra else "") + ". A flag the "
                                   "method does not read is refused. Methods: "
                                   + "; ".join(f"{r.name} ({r.summary})" for r in records) + ".")
    p.add_argument("--model", type=_path, required=True, metavar="CKPT",
                   help="two-class checkpoint to adapt: boundary (e.g. M3) or one class vs the rest (mitochondria)")
    p.add_argument("--task", choices=TASKS,
                   help="the model's task (default: the one its checkpoint records); a model trained for another "
                        "task is refused")
    p.add_argument("--source-labels", type=_path, required=True, metavar="LAB",
                   help="source ground truth, codes 0-4 (0 ignored; 1-2 for a boundary model)")
    p.add_argument("--source-image", type=_path, metavar="IMG",
                   help="source images (refused where the method does not read them: "
                        + ", ".join(r.name for r in records if r.source_image is False) + "; "
                        + ", ".join(r.name for r in records if callable(r.source_image))
                        + " reads them only with some settings, e.g. --source-weight > 0)")
    p.add_argument("--target-image", type=_path, required=True, metavar="TGT", help="unlabelled target volume")
    p.add_argument("--method", choices=method_names(), default="paper", help="adaptation method (default paper)")
    p.add_argument("--eval-labels", type=_path, metavar="LAB",
                   help="labels of the target volume, used ONLY to score each epoch (never for training)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="sizes (default: EMSEG_PRESET or by hardware)")
    p.add_argument("--epochs", type=_positive, help="epochs (default: from the preset)")
    p.add_argument("--steps", type=_positive, help="U-Net updates per epoch (default: from the preset)")
    p.add_argument("--lr-g", type=_non_negative, help="U-Net learning rate (default 1e-5)")
    p.add_argument("--adv-weight", type=_positive_float,
                   help=f"adversarial loss weight (default by method: {_by_method('adv_weight', records)})")
    p.add_argument("--source-weight", type=_non_negative,
                   help=f"source cross-entropy weight (default by method: {_by_method('source_weight', records)})")
    p.add_argument("--condition-image", choices=("rank", "raw"),
                   help="conditional methods: image channel rank-normalised per patch or raw (default by "
                        f"method: {_by_method('condition_image', records)})")
    p.add_argument("--keep", choices=KEEP,
                   help="trained methods: which epoch's U-Net to write: label-free (default) the epoch the label-free "
                        "rule chooses (lowest target entropy among epochs without a boundary-fraction or "
                        "source-drift warning; epoch 0, the model before adaptation, when none passes), or last")
    p.add_argument("--patience", type=_positive, metavar="N",
                   help="with --keep label-free: stop once N epochs pass without a new label-free choice "
                        "(default: run every epoch)")
    p.add_argument("--seed", type=_seed, help="random seed (default: the session's, 0)")
    p.add_argument("--device", help="cpu, cuda or mps (default: EMSEG_DEVICE, else the best available)")
    _add_precision(p)
    p.add_argument("--out", type=_path, help="output folder (default: the --resume folder)")
    p.add_argument("--resume", type=_path, metavar="DIR",
                   help="continue the adaptation in DIR (its adapt_state.pt, written after every epoch) up to "
                        "--epochs; the other settings must be the same")
    _add_overwrite(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_adapt(args) -> None:
    record = get_method(args.method)
    given = {flag: getattr(args, attr) for flag, (attr, _) in ADAPT_OPTIONS.items() if getattr(args, attr) is not None}
    for flag in given:
        if not set(ADAPT_OPTIONS[flag][1]) & record.options:
            raise UsageError(f"{flag}: method {args.method} does not use this setting; leave it out")
    session = _session(args)
    if args.out is None and args.resume is None:
        raise UsageError("adapt: give --out DIR (or --resume DIR to continue a run)")
    if args.resume and not record.resumes:
        raise UsageError(f"--resume: method {args.method} runs in one pass; there is nothing to resume")
    out = check_output_folder(args.out or args.resume, "--out" if args.out else "--resume", list(record.files),
                              {"--model": args.model, "--source-labels": args.source_labels,
                               "--source-image": args.source_image, "--target-image": args.target_image,
                               "--eval-labels": args.eval_labels},
                              run_files=RUN_FILES, overwrite=_run_overwrite(args))
    model, ckpt = load_checkpoint(args.model)
    check_boundary_model(model)  # the library's check, before any volume is read
    options = {ADAPT_OPTIONS[flag][1][0]: value for flag, value in given.items()
               if flag not in ("--preset", "--seed", "--device")}  # those three come through the session
    options["task"] = check_task(ckpt, args.task, args.model)  # what its checkpoint says it was trained for
    if record.trains:
        options.setdefault("keep", "label-free")  # a user has no target labels to pick an epoch with
    if options.get("patience") is not None and options.get("keep") != "label-free":
        raise UsageError("--patience: stops at the label-free choice, so it needs --keep label-free")
    config = method_settings(session, args.method, session.seed, **options)
    if args.source_image and not record.needs_source_image(config):
        raise UsageError(f"--source-image: method {args.method} does not read the source image with these "
                         "settings; leave it out")
    labels = check_task_labels(read_labels(args.source_labels), options["task"], args.source_labels)
    source_image = None
    if args.source_image:
        source_image, _ = read_image(args.source_image)
        check_pair(source_image, labels, args.source_image, args.source_labels)
    target, voxel = read_image(args.target_image)
    target_eval = None
    if args.eval_labels:
        eval_labels = read_labels(args.eval_labels)
        check_pair(target, eval_labels, args.target_image, args.eval_labels)
        target_eval = Volume(target, eval_labels, voxel, args.target_image)
    resume = load_adaptation_state(Path(args.resume) / ADAPT_STATE_FILE) if args.resume else None
    try:
        with _flags_of_inputs(args, ADAPT_INPUTS):
            run = run_method(args.method, model, Volume(source_image, labels, name=args.source_labels), target,
                             config_kwargs=config, target_eval=target_eval, progress=not args.quiet,
                             target_name=args.target_image,
                             checkpoint=out / ADAPT_STATE_FILE if record.trains else None, resume=resume,
                             target_normalizer=None if target_eval is None else target_eval.normalizer)
    except Diverged as err:  # named by the flags that set them
        raise UsageError(err.message({options[0]: flag for flag, (_, options) in ADAPT_OPTIONS.items()})) from None
    history = {"config": config, "epochs": run.epochs, "seconds": run.seconds, "stop": run.stop}
    model_file, history_file = (out / name for name in MODEL_FILES)
    save_checkpoint(model_file, run.model, config={"adapt": config, "source": ckpt["config"]}, history=history)
    save_json(history_file, history)
    if run.discriminator is not None:
        save_checkpoint(out / DISCRIMINATOR_FILE, run.discriminator, config=config)
    for name, volume in run.volumes.items():
        write_volume(str(out / name), volume, voxel)
    written = [out / name for name in record.files]
    kept = run.epochs[run.stop["kept_epoch"]] if run.stop else run.epochs[-1]
    if run.stop:
        print(kept_summary(run.stop, run.epochs))
    print(f"wrote {', '.join(str(w) for w in written)}; target {options['task']} fraction "
          f"{kept['target_boundary_fraction']:.3f} (source {kept['source_boundary_fraction']:.3f})")


# --------------------------------------------------------------------------- export


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write a trained U-Net as a bioimage.io model package",
                       description="Write a bioimage.io model package (spec 0.5): rdf.yaml, PyTorch state-dict and "
                                   "TorchScript weights, test tensors from a synthetic twin, a cover and a model "
                                   "card; validated offline. Needs the 'scale' extra (bioimageio.spec).")
    p.add_argument("--model", type=_path, required=True, metavar="CKPT",
                   help="U-Net checkpoint written by train or adapt")
    p.add_argument("--out", type=_path, required=True, metavar="DIR_OR_ZIP",
                   help="output folder (new or empty), or a .zip for the model zoo (replaced only by a valid package)")
    p.add_argument("--name", help="model name (default from the checkpoint's task)")
    p.add_argument("--test-shape", type=_positive, nargs=3, metavar=("Z", "Y", "X"),
                   help="shape of the synthetic test input (default: 2 slices of the smallest input the package "
                        "takes, twice the halo and 2**depth more)")
    p.add_argument("--stats-of", metavar="IMAGE",
                   help="volume whose whole-volume normalisation the package fixes (tif, FILE.h5:dataset, zarr, "
                        "folder of slices, .npy; read one slice at a time, as predict does); default: the test input's")


def run_export(args) -> None:
    from .predict.export import check_export_target, export_bioimageio, validate_package

    check_export_target(args.out, "--out")  # named by its flag, before the package is built
    normalizer = None
    if args.stats_of is not None:
        with open_volume(args.stats_of) as volume:
            normalizer = streaming_stats(volume)
    written = export_bioimageio(args.model, args.out, name=args.name,
                                shape=None if args.test_shape is None else tuple(args.test_shape),
                                normalizer=normalizer, stats_of=args.stats_of,
                                flags={"name": "--name", "shape": "--test-shape"})
    print(f"wrote {written}: bioimage.io model package, {validate_package(written)} (checked offline)")


# --------------------------------------------------------------------------- benchmark


def add_benchmark(sub) -> None:
    p = sub.add_parser("benchmark", help="the field's domain-adaptation benchmark, published rows beside ours",
                       description=f"{PAIR}: a mitochondria-vs-rest U-Net trained on VNC adapts to the Lucchi++ "
                                   "train volume without its labels (every method, every seed) and is scored on the "
                                   "Lucchi++ test volume; an oracle trains on the Lucchi++ train labels. Prints one "
                                   "table (source-only, each method's last and label-free epochs, the oracle, the "
                                   "fraction of the gap closed, then the published rows with their source and "
                                   f"selection rule) and writes DIR/{BENCHMARK_FILES[0]} and DIR/{BENCHMARK_FILES[1]}. "
                                   "Sizes come from the preset; models and runs are kept in EMSEG_RUNS and reused.")
    p.add_argument("pair", choices=(PAIR,), help="the domain pair (VNC -> Lucchi++ mitochondria)")
    p.add_argument("--data", choices=DATA_SOURCES,
                   help="synthetic: the FIBSEM and SNEMI3D twins, which both have mitochondria (offline); real: the "
                        "vnc and lucchi_pp downloads of the data registry (default: EMSEG_DATA, else synthetic)")
    p.add_argument("--methods", nargs="+", choices=method_names(ablations=True), metavar="METHOD",
                   help="adaptation methods (default: " + " ".join(DEFAULT_METHODS) + ")")
    p.add_argument("--seeds", type=_positive, metavar="N",
                   help="adaptation seeds 0..N-1 (default: the preset's comparison seeds)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="sizes (default: EMSEG_PRESET or by hardware)")
    p.add_argument("--device", help="cpu, cuda or mps (default: EMSEG_DEVICE, else the best available)")
    p.add_argument("--out", type=_path, default="benchmark", metavar="DIR",
                   help="folder for the JSON and the figure (default ./benchmark)")
    p.add_argument("--overwrite", action="store_true", help="replace the JSON and figure DIR already holds")
    p.add_argument("--quiet", action="store_true", help="no progress bars or notes")


def run_benchmark(args) -> None:
    from .viz.comparison import benchmark_figure

    out = check_output_folder(args.out, "--out", list(BENCHMARK_FILES), overwrite=args.overwrite)
    session = _session(args)
    if args.quiet:
        session = session.replace(progress=False)
    bench = run_mito_benchmark(session, methods=args.methods, seeds=args.seeds)
    data = benchmark_json(bench)
    fig = benchmark_figure(data["rows"], data["published"],
                           title=f"{PAIR}, {bench.data} data, {bench.preset} preset")
    json_file, figure_file = (out / name for name in BENCHMARK_FILES)
    save_json(json_file, data)
    atomic_write(figure_file, lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    print(benchmark_text(bench))
    print(f"wrote {json_file} and {figure_file}")


#: name -> (add arguments, run)
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "synth": (add_synth, run_synth),
    "train": (add_train, run_train),
    "predict": (add_predict, run_predict),
    "evaluate": (add_evaluate, run_evaluate),
    "adapt": (add_adapt, run_adapt),
    "export": (add_export, run_export),
    "benchmark": (add_benchmark, run_benchmark),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Class-imbalanced EM segmentation and domain adaptation "
                                            "(the emseg-tutorial experiments on your own volumes).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning: ...`` line on stderr (no file name, line number or source line)."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def _continue_command(argv: list[str], folder: str) -> str:
    """``argv`` as a command that continues the run in ``folder``: ``--out``/``--resume``/``--overwrite``
    (or abbreviations argparse took for them) replaced by ``--resume folder``."""
    valued, flags = ("--out", "--resume"), ("--overwrite",)
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = token.partition("=")
        if len(name) > 2 and name.startswith("--") and any(f.startswith(name) for f in valued + flags):
            skip = not eq and any(f.startswith(name) for f in valued)
            continue
        kept.append(token)
    return shlex.join(PROG.split() + kept + ["--resume", folder])


def _interrupted_line(signum: int, args, argv: list[str], started: float) -> str:
    """The one line an interrupted command prints: the signal, and how to continue where one can."""
    line = f"interrupted ({signal_name(signum)})"
    command = getattr(args, "command", None)
    if command in ("train", "adapt"):
        folder = args.out or args.resume
        if not folder:
            return line
        if command == "adapt" and not get_method(args.method).resumes:
            return f"{line}; method {args.method} runs in one pass, so there is nothing to resume: run it again"
        state = Path(folder) / (STATE_FILE if command == "train" else ADAPT_STATE_FILE)
        try:
            fresh = state.is_file() and (args.resume is not None or state.stat().st_mtime >= started)
        except OSError:
            fresh = False
        if not fresh:
            return f"{line} before the first resumable state ({state}) was written; run the same command to start again"
        return f"{line}; continue with `{_continue_command(argv, os.fspath(folder))}`"
    if command == "predict":
        zarrs = [spec for spec in (args.out, args.probabilities)
                 if spec and is_zarr(split_spec(spec)[0]) and zarr_begun(spec)]  # an unfinished image: resumable
        if zarrs:
            return (f"{line}; continue with the same command (`{shlex.join(PROG.split() + argv)}`): "
                    f"the slices already in {' and '.join(zarrs)} are kept")
        return _outputs_line(line, [args.out, args.probabilities], started)
    if command == "synth":
        return _outputs_line(line, [args.image, args.labels], started)
    return line


def _outputs_line(line: str, specs, started: float) -> str:
    """What an interrupted ``predict``/``synth`` left: outputs are all renamed into place or none."""
    written = []
    for spec in specs:
        try:
            if spec and split_spec(spec)[0].stat().st_mtime >= started:
                written.append(spec)
        except OSError:
            pass
    if written and len(written) == len([s for s in specs if s]):  # the signal came as the last rename ended
        return f"{line} after writing {' and '.join(written)}"
    return f"{line}; nothing was written (files already there are unchanged)"


def _run(parser: argparse.ArgumentParser, argv: list[str], parsed: list) -> int:
    try:
        args = parser.parse_args(argv)
        parsed.append(args)
        COMMANDS[args.command][1](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (VolumeError, DataSourceError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad arguments or input,
    130 / 143 interrupted by SIGINT / SIGTERM).

    Warnings (degenerate training data, an eager fallback) are one ``warning:`` line each on stderr.

    SIGINT (Ctrl-C) and SIGTERM (a batch scheduler's time limit) end a command with one line on
    stderr, saying how to continue where a run can (``train``, trained ``adapt`` methods:
    ``--resume DIR``; ``predict`` into zarr: the same command), and no temporary files left
    (:mod:`emseg_tutorial.interrupt`). The signal handlers are restored when it returns.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    parsed: list = []
    started = time.time()
    with handle_signals(), warnings.catch_warnings():  # both restored on the way out
        warnings.showwarning = _warning_line
        try:
            return _run(parser, argv, parsed)
        except KeyboardInterrupt as err:  # Interrupted (SIGINT, SIGTERM), or Ctrl-C outside the main thread
            signum = getattr(err, "signum", signal.SIGINT)
            print(_interrupted_line(signum, parsed[0] if parsed else None, argv, started), file=sys.stderr)
            return exit_status(signum)
