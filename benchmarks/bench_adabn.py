"""AdaBN: the exact statistics in about one forward pass, against the layer-by-layer version.

Usage::

    python benchmarks/bench_adabn.py [--preset ci|cpu|gpu] [--shape Z Y X] [--repeats N]

For the preset's U-Net (random weights: the cost does not depend on them) and a target volume
of ``--shape`` (default 30 x 512 x 512, the size the slow AdaBN was measured on), in one run:

* **forward**: one plain forward pass over the volume in eval mode (the unit of cost);
* **old**: the previous implementation, kept here as the reference: one pass per batch-norm
  layer, each stopped at its layer, the input copied to float64, the volume re-standardised
  for every layer;
* **new**: :func:`emseg_tutorial.adapt.adabn.adapt_batchnorm` (one pass that keeps every
  slice's activations while the U-Net is walked block by block, when they fit its memory
  budget; else one stopped pass per layer without the float64 copies);
* **new, layer by layer**: the same function forced to its per-layer method
  (``memory_budget=0``), what networks other than the U-Net and volumes too large for the
  budget get.

It checks that all three give the same statistics and prints seconds (best of
``--repeats``) and each as a multiple of one forward pass. Nothing is enforced.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.adapt.adabn import adapt_batchnorm, batchnorm_layers  # noqa: E402
from emseg_tutorial.data.normalize import standardize, to_unit_range  # noqa: E402
from emseg_tutorial.models import UNet2d  # noqa: E402
from emseg_tutorial.presets import get_preset  # noqa: E402


class _Stop(Exception):
    pass


@torch.no_grad()
def old_adapt_batchnorm(model, image, batch_size=4):
    """The implementation before this benchmark's change (reference, verbatim in substance)."""
    def slices():
        x = torch.from_numpy(standardize(to_unit_range(image)))
        for z0 in range(0, x.shape[0], batch_size):
            yield x[z0:z0 + batch_size, None]

    model = copy.deepcopy(model).eval()
    for layer in batchnorm_layers(model):
        sums = {"n": 0, "s": 0.0, "ss": 0.0}

        def record(module, inputs, sums=sums):
            x = inputs[0].double().transpose(0, 1).reshape(module.num_features, -1)
            sums["n"] += x.shape[1]
            sums["s"] = sums["s"] + x.sum(1)
            sums["ss"] = sums["ss"] + (x * x).sum(1)
            raise _Stop

        handle = layer.register_forward_pre_hook(record)
        try:
            for batch in slices():
                try:
                    model(batch)
                except _Stop:
                    pass
        finally:
            handle.remove()
        mean = sums["s"] / sums["n"]
        layer.running_mean.copy_(mean.float())
        layer.running_var.copy_((sums["ss"] / sums["n"] - mean * mean).clamp_min(0).float())
    return model


@torch.no_grad()
def forward_pass(model, image, batch_size=4):
    x = torch.from_numpy(standardize(to_unit_range(image)))
    model = model.eval()
    for z0 in range(0, x.shape[0], batch_size):
        model(x[z0:z0 + batch_size, None])


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="ci", choices=("ci", "cpu", "gpu"))
    parser.add_argument("--shape", type=int, nargs=3, default=(30, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    preset = get_preset(args.preset)
    torch.manual_seed(0)
    model = UNet2d(out_channels=2, **preset.model)
    image = np.random.default_rng(0).integers(0, 255, tuple(args.shape), dtype=np.uint8)
    print(f"preset {preset.name}: U-Net {preset.model}, {len(batchnorm_layers(model))} batch-norm layers, "
          f"target {tuple(args.shape)}, CPU threads {torch.get_num_threads()}")

    results = {}
    forward_pass(model, image[:2])  # warm-up: first-call costs stay out of the timings
    t_forward = best(lambda: forward_pass(model, image), args.repeats)
    for name, fn in {"old (one pass per layer)": lambda: old_adapt_batchnorm(model, image),
                     "new": lambda: adapt_batchnorm(model, image),
                     "new, layer by layer": lambda: adapt_batchnorm(model, image, memory_budget=0)}.items():
        out = {}
        results[name] = (best(lambda: out.setdefault("m", fn()), args.repeats), out["m"])
    reference = results["old (one pass per layer)"][1]
    print(f"{'':28s} {'seconds':>8s} {'x forward':>10s} {'same statistics':>16s}")
    print(f"{'forward pass':28s} {t_forward:8.2f} {1.0:10.2f}")
    for name, (seconds, adapted) in results.items():
        same = all(torch.allclose(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-5)
                   and torch.allclose(a.running_var, b.running_var, rtol=1e-4, atol=1e-5)
                   for a, b in zip(batchnorm_layers(adapted), batchnorm_layers(reference)))
        print(f"{name:28s} {seconds:8.2f} {seconds / t_forward:10.2f} {str(same):>16s}")
    old = results["old (one pass per layer)"][0]
    print(f"speed-up of the new AdaBN over the old: {old / results['new'][0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
