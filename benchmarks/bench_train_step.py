"""How much of a training step is the network, and how much is everything around it.

Usage::

    python benchmarks/bench_train_step.py [--preset ci|lab|cpu|gpu] [--device cpu|cuda] [--steps N]
                                          [--rounds R] [--channels-last] [--precision P]

For the preset's U-Net, batch and patch size, on the device present, in one run:

* **training, bare**: :func:`~emseg_tutorial.train.supervised.training_step` (forward,
  weighted cross-entropy, backward, Adam) on one batch made beforehand and kept on the
  device: the floor a training loop cannot beat;
* **training, full**: what :func:`~emseg_tutorial.train.train_supervised` does per step:
  draw a batch with the trainer's patch sampler (:class:`~emseg_tutorial.data.patches.PatchSampler`,
  drawn on the device itself on every device; crops, flips, turns, weight map), the same step,
  keep the loss;
* **adaptation, bare / full**: the paper's adaptation step
  (:func:`~emseg_tutorial.adapt.steps.paper_step`: U-Net on target patches, one
  discriminator step, one generator step) with fixed device batches, and with the samplers;
* **precision**: the bare training step in float32 against the same step in ``--precision``
  (default ``auto``: bfloat16 on CUDA and on CPUs with native bfloat16), its ratio the
  speed-up mixed precision gives on this machine.

Bare and full steps alternate in ``--rounds`` blocks of ``--steps`` steps (machines here are
noisy: interleaving exposes both to the same load), after warm-up steps. The script prints
milliseconds per step (median over rounds) and the ratio full / bare; the targets of the
project are <= 1.10 on a CPU and <= 1.15 on a GPU. Nothing is enforced; it exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.adapt.loop import step_context  # noqa: E402
from emseg_tutorial.adapt.steps import paper_step  # noqa: E402
from emseg_tutorial.data.patches import PatchSampler  # noqa: E402
from emseg_tutorial.data.synthetic import make_volume  # noqa: E402
from emseg_tutorial.devices import PRECISIONS, adam, memory_format, pick_device, precision  # noqa: E402
from emseg_tutorial.labels import for_task  # noqa: E402
from emseg_tutorial.models import UNet2d  # noqa: E402
from emseg_tutorial.paper.stages import adapt_config  # noqa: E402
from emseg_tutorial.presets import PRESETS, get_preset  # noqa: E402
from emseg_tutorial.session import Session  # noqa: E402
from emseg_tutorial.train.supervised import training_step  # noqa: E402
from emseg_tutorial.weight_schemes import weight_map  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, steps: int, device: torch.device) -> float:
    """Milliseconds per call of ``fn`` over ``steps`` calls (the device drained before and after)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return 1000 * (time.perf_counter() - start) / steps


def compare(bare, full, *, steps: int, rounds: int, device: torch.device) -> tuple[float, float]:
    """Median ms per step of ``bare`` and ``full``, interleaved over ``rounds`` blocks."""
    for fn in (bare, full):  # warm-up: allocator, autotuning, first-call costs
        _time(fn, 2, device)
    times = {"bare": [], "full": []}
    for _ in range(rounds):
        times["bare"].append(_time(bare, steps, device))
        times["full"].append(_time(full, steps, device))
    return statistics.median(times["bare"]), statistics.median(times["full"])


def training_pair(volume, preset, device, channels_last: bool, mode: str = "auto"):
    labels = for_task(volume.labels, "boundary")
    sampler = PatchSampler(volume.image, labels, weight_map(labels, "distance"), device=device,
                           patch=preset.patch, seed=0)
    layout = torch.channels_last if channels_last else memory_format(device)  # the trainer's: CUDA's
    model = UNet2d(out_channels=2, **preset.model).to(device, memory_format=layout)
    optimizer = adam(model.parameters(), preset.lr, device)
    amp = precision(device, mode)
    scaler = amp.grad_scaler()
    fixed = sampler.sample(preset.batch_size)
    losses = []

    def bare():
        losses.append(training_step(model, fixed, optimizer, scaler, amp))

    def full():
        losses.append(training_step(model, sampler.sample(preset.batch_size), optimizer, scaler, amp))

    return bare, full


def precision_pair(volume, preset, device, mode: str):
    """Bare training steps in float32 and in ``mode``, on two copies of the same start."""
    float32, _ = training_pair(volume, preset, device, False, "float32")
    mixed, _ = training_pair(volume, preset, device, False, mode)
    return float32, mixed


def adaptation_pair(source, target, preset, device, mode: str = "auto"):
    model = UNet2d(out_channels=2, **preset.model)
    session = Session(preset=preset, device=torch.device(device), precision=mode, progress=False)
    config = adapt_config(session, "paper")
    ctx = step_context(model, for_task(source.labels, "boundary"), target.image, config, None, device, 2)
    sampled = ctx.batch
    fixed = {id(ctx.source): sampled(ctx.source), id(ctx.target): sampled(ctx.target)}
    stats = []

    def bare():
        ctx.batch = lambda sampler: fixed[id(sampler)]
        stats.append(paper_step(ctx))

    def full():
        ctx.batch = sampled
        stats.append(paper_step(ctx))

    return bare, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="ci", choices=sorted(PRESETS))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the best available)")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks of bare and full steps")
    parser.add_argument("--channels-last", action="store_true",
                        help="train with channels-last weights (the trainer does on CUDA)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="autocast dtype of the steps (default: the trainer's, auto)")
    args = parser.parse_args(argv)

    preset = get_preset(args.preset)
    device = pick_device(args.device)
    torch.manual_seed(0)
    depth = max(8, min(preset.source_shape[0], 32))  # enough slices to sample from; the size of a slice matters
    source = make_volume("fibsem", (depth,) + preset.source_shape[1:], seed=0)
    target = make_volume("snemi", (depth,) + preset.target_shape[1:], seed=1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {preset.name}: U-Net {preset.model}, batch {preset.batch_size} x {preset.patch}^2, "
          f"{precision(device, args.precision).dtype or torch.float32} on {name}")
    rows = {"training step": training_pair(source, preset, device, args.channels_last, args.precision),
            "adaptation step (paper)": adaptation_pair(source, target, preset, device, args.precision),
            "bare step, float32 -> P": precision_pair(source, preset, device, args.precision)}
    print(f"{'':26s} {'bare ms':>9s} {'full ms':>9s} {'full / bare':>12s}   (last row: float32 ms, P ms, P / float32)")
    for label, (bare, full) in rows.items():
        b, f = compare(bare, full, steps=args.steps, rounds=args.rounds, device=device)
        print(f"{label:26s} {b:9.1f} {f:9.1f} {f / b:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
