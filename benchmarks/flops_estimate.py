"""Floating-point work of the book's training at each preset, and what it means on a given GPU.

Usage::

    python benchmarks/flops_estimate.py [--presets lab cpu gpu] [--tflops T4=16 H100=200]

For each preset, in one run:

* FLOPs of one supervised training step (U-Net forward + backward, the preset's batch and
  patch) and of one adaptation step of the paper's method (U-Net on target patches, one
  discriminator step, one generator step), counted by ``torch.utils.flop_counter.FlopCounterMode``
  on the CPU (convolutions and matrix products; elementwise work and Adam are left out);
* the optimiser steps the book trains: every stage of :data:`~emseg_tutorial.paper.STAGES`
  once, the extra seeds of the weighting comparison, chapter 5's adaptation and chapter 6's
  comparison (every trained method x seeds, every ablation variant once; AdaBN and histogram
  matching train nothing), with adaptation steps of chapter 6 counted at its own batch size;
* the total, and the seconds it would take at each ``--tflops NAME=T`` *sustained* rate.

This is an **estimate**, not a measurement: sustained rates are assumptions given on the
command line (the defaults, 16 TFLOP/s for a T4 in float16 and 200 for an H100 in bfloat16, are
roughly a quarter of each card's dense tensor-core peak, a typical share for small-channel
U-Nets in eager mode), and data loading, validation, scoring and figure time are not in it:
where the arithmetic takes seconds (``lab``, ``cpu`` on a GPU) that overhead, not the FLOPs,
sets the running time.
Use it to size a class, and replace it with ``benchmarks/chapter_times.py`` numbers measured on
the card as soon as you have one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emseg_tutorial.adapt import ablation_names, method_names  # noqa: E402
from emseg_tutorial.models import PatchDiscriminator, UNet2d  # noqa: E402
from emseg_tutorial.paper.stages import STAGES, WEIGHTING_STAGES, budget_steps  # noqa: E402
from emseg_tutorial.presets import get_preset  # noqa: E402


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def training_step_flops(preset, batch: int | None = None, classes: int = 2) -> float:
    """FLOPs of one U-Net forward + backward on ``batch`` patches of the preset."""
    batch = batch or preset.batch_size
    model = UNet2d(out_channels=classes, **preset.model)
    x = torch.randn(batch, 1, preset.patch, preset.patch)

    def step():
        model(x).float().logsumexp(1).mean().backward()

    return _count(step)


def adaptation_step_flops(preset, batch: int | None = None) -> float:
    """FLOPs of one paper adaptation step: U-Net fwd + bwd on target patches, the discriminator
    on real and fake maps (its update) and on the fake maps again (the generator's gradient)."""
    batch = batch or preset.batch_size
    unet = training_step_flops(preset, batch)
    disc = PatchDiscriminator(in_channels=2, **preset.discriminator)
    y = torch.randn(batch, 2, preset.patch, preset.patch, requires_grad=True)

    def d_pass():
        disc(y).mean().backward()

    return unet + 3 * _count(d_pass)


def book_steps(preset) -> dict[str, int]:
    """Optimiser steps of the book at ``preset``, by kind."""
    supervised = sum(budget_steps(preset, s.budget) for s in STAGES.values())
    seeds = preset.weighting.seeds - 1  # seed 0 is the stage itself
    supervised += seeds * sum(budget_steps(preset, STAGES[n].budget) for n in WEIGHTING_STAGES)
    c = preset.comparison
    runs = c.seeds * len(method_names(trains=True)) + len(ablation_names())  # ablations: one seed
    return {"supervised": supervised,
            "adaptation (chapter 5)": preset.adapt_epochs * preset.adapt_steps_per_epoch,
            "adaptation (chapter 6)": runs * c.epochs * c.steps_per_epoch}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["lab", "cpu", "gpu"])
    parser.add_argument("--tflops", nargs="+", default=["T4=16", "H100=200"],
                        help="NAME=T: sustained TFLOP/s assumed for a card")
    args = parser.parse_args(argv)
    rates = {}
    for item in args.tflops:
        name, _, value = item.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            parser.error(f"--tflops expects NAME=TFLOPS such as T4=16, got {item!r}")
    print("ESTIMATE from FLOP counts (convolutions and matmuls only); sustained rates assumed: "
          + ", ".join(f"{k} {v:g} TFLOP/s" for k, v in rates.items()))
    for name in args.presets:
        preset = get_preset(name)
        steps = book_steps(preset)
        per = {"supervised": training_step_flops(preset),
               "adaptation (chapter 5)": adaptation_step_flops(preset),
               "adaptation (chapter 6)": adaptation_step_flops(preset, preset.comparison.batch_size)}
        total = sum(steps[k] * per[k] for k in steps)
        print(f"\n{name}: " + ", ".join(f"{k} {steps[k]} steps x {per[k] / 1e9:.1f} GFLOP" for k in steps))
        print(f"  total {total / 1e12:.1f} TFLOP -> " + ", ".join(
            f"{card} about {_duration(total / (rate * 1e12))}" for card, rate in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
