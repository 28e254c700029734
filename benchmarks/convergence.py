"""Training to convergence against the book's fixed steps, and the ablation behind its sizes.

Usage::

    python benchmarks/convergence.py [--budget 10] [--ablation-budget 2] [--no-ablation | --ablation-only]
                                     [--task multiclass] [--times 4] [--json benchmarks/results/convergence.json]

On the twins at the ``cpu`` preset's volume size (source twin, seed 0, for training; the held-out
twin of seed 1 for scoring), on this machine's CPU (2 threads), in one run:

1. **reference**: the ``cpu`` preset's sizes for 4x its fixed step count of the task
   (``multiclass``: Experiment 1, 4 x 480 steps), the book's way of training longer;
2. **budget**: :func:`~emseg_tutorial.train.converge_config` on the CPU with ``--budget`` minutes
   (what ``python -m emseg_tutorial train --budget 10`` runs);
3. **ablation** (``--ablation-budget`` minutes each): the convergence sizes with one setting
   changed at a time (patch, batch, learning rate, schedule, the paper's intensity jitter, and
   the augmentation: no flips, mild intensity, elastic deformation, both; ``TrainConfig.augment``,
   :data:`~emseg_tutorial.data.augment.AUGMENTS`), each against the unchanged sizes at the same
   budget.

Every score is the mean Jaccard on the held-out twin (never seen in training or in choosing a
checkpoint: the runs validate on the last slices of their own volume). The script prints one table
(steps, minutes, held-out mean Jaccard, the difference to the reference) and the validation score
against wall-clock time of each run; ``--json`` writes both. Nothing is enforced; it exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.data.normalize import Normalizer  # noqa: E402
from emseg_tutorial.data.synthetic import make_volume  # noqa: E402
from emseg_tutorial.metrics import pixel_scores  # noqa: E402
from emseg_tutorial.paper.stages import budget_of, budget_steps, train_config  # noqa: E402
from emseg_tutorial.predict import predict_labels  # noqa: E402
from emseg_tutorial.presets import get_preset  # noqa: E402
from emseg_tutorial.store import save_json  # noqa: E402
from emseg_tutorial.train import TrainConfig, converge_config, train_supervised  # noqa: E402

WEIGHTS = {"multiclass": "entropy", "boundary": "distance"}

#: one change at a time from the convergence sizes
ABLATION = {"patch 96": {"patch": 96}, "patch 192": {"patch": 192}, "batch 4": {"batch_size": 4},
            "batch 16": {"batch_size": 16}, "lr 5e-4": {"lr": 5e-4}, "lr 2e-3": {"lr": 2e-3},
            "constant lr": {"lr_schedule": "constant"}, "jitter": {"jitter": True},
            "no flips": {"augment": "none"}, "+intensity": {"augment": "flips+intensity"},
            "+elastic": {"augment": "flips+elastic"}, "+intensity+elastic": {"augment": "all"}}


def held_out_score(model: torch.nn.Module, volume, task: str) -> float:
    """Mean Jaccard of ``model`` on a whole held-out volume (its labels in the codes 0..4, which
    :func:`~emseg_tutorial.metrics.pixel_scores` reduces to the task's)."""
    pred = predict_labels(model, volume.image, normalizer=Normalizer.from_volume(volume.image), device="cpu")
    return float(pixel_scores(pred, volume.labels, task)["mean_jaccard"])


def run(name: str, config: TrainConfig, train, test, task: str) -> dict:
    start = time.perf_counter()
    result = train_supervised(train.image, train.labels, config, progress=False)
    minutes = (time.perf_counter() - start) / 60
    stop = result.history.get("stop", {})
    row = {"run": name, "steps": stop.get("step", config.steps), "minutes": minutes,
           "stop": stop.get("reason", "steps"), "kept_step": stop.get("kept_step"),
           "score": held_out_score(result.model, test, task),
           "curve": [(v["seconds"] / 60, v["mean_jaccard"]) for v in result.history["val"]]}
    print(f"  {name:24s} {row['steps']:6d} steps {minutes:6.2f} min  held-out mean Jaccard {row['score']:.4f}"
          f"  ({row['stop']}, kept step {row['kept_step']})", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=10.0, help="minutes of the budgeted run (default 10)")
    parser.add_argument("--ablation-budget", type=float, default=2.0, help="minutes of each ablation run")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--ablation-only", action="store_true",
                        help="skip the reference and budget runs (the ablation's differences are to its own "
                             "convergence-sizes row)")
    parser.add_argument("--task", choices=sorted(WEIGHTS), default="multiclass")
    parser.add_argument("--times", type=float, default=4.0, help="the reference trains this many times the "
                                                                  "preset's steps (default 4)")
    parser.add_argument("--json", type=Path, help="write the table and curves here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    preset = get_preset("cpu")
    task, weights = args.task, WEIGHTS[args.task]
    train = make_volume("fibsem", preset.source_shape, seed=preset.seed)
    test = make_volume("fibsem", preset.source_shape, seed=preset.seed + 1)
    fixed = budget_steps(preset, budget_of(task, init=False, jitter=False))
    print(f"task {task}/{weights}, volumes {preset.source_shape}, torch threads {torch.get_num_threads()}")
    steps = max(1, round(args.times * fixed))
    rows = [] if args.ablation_only else [run(f"cpu preset, {args.times:g}x{fixed} steps", train_config(preset, task=task, weights=weights, steps=steps,
                                                             device="cpu", precision="float32"), train, test, task),
            run(f"budget {args.budget:g} min", converge_config("cpu", task=task, weights=weights, budget=args.budget,
                                                               precision="float32"), train, test, task)]
    if not args.no_ablation:
        print(f"ablation, {args.ablation_budget:g} min each:")
        base = converge_config("cpu", task=task, weights=weights, budget=args.ablation_budget, precision="float32")
        rows.append(run("convergence sizes", base, train, test, task))
        for name, change in ABLATION.items():
            rows.append(run(name, TrainConfig(**{**base.to_dict(), **change}), train, test, task))
    first = 0 if args.ablation_only else 2  # the convergence-sizes row of the ablation
    reference = rows[0]["score"]
    print(f"\n{'run':26s} {'steps':>6s} {'min':>6s} {'held-out mJ':>11s} {'vs reference':>12s}")
    for r in rows:
        print(f"{r['run']:26s} {r['steps']:6d} {r['minutes']:6.2f} {r['score']:11.4f} {r['score'] - reference:+12.4f}")
    if len(rows) > first + 1:
        base_score = rows[first]["score"]
        print("\nablation against the convergence sizes at the same budget:")
        for r in rows[first + 1:]:
            print(f"  {r['run']:24s} {r['score'] - base_score:+.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        save_json(args.json, {"task": task, "volumes": preset.source_shape, "rows": rows})  # atomically
    return 0


if __name__ == "__main__":
    sys.exit(main())
