"""The one patch sampler (torch, on the given device) against the numpy sampler it replaced.

Usage::

    python benchmarks/bench_sampler.py [--preset ci|lab|cpu|gpu] [--rounds R] [--batches N]

Since issue 21 the library draws training patches with one implementation,
:class:`~emseg_tutorial.data.patches.PatchSampler`, in torch on every device (CUDA's path runs on
the CPU too). The numpy sampler it replaced lives on only as the reference of the distribution
tests (``tests/test_sampler_reference.py``: ``NumpyReference``); this script times both on the
preset's source twin, with its weight map, patch and batch size, and with the conditional
discriminator's wrong-slice partners, in interleaved rounds (machines here are noisy). It prints
milliseconds per batch (median over rounds) and the ratio torch / numpy. Nothing is enforced;
it exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from emseg_tutorial.data.patches import PatchSampler  # noqa: E402
from emseg_tutorial.data.synthetic import make_volume  # noqa: E402
from emseg_tutorial.labels import for_task  # noqa: E402
from emseg_tutorial.presets import PRESETS, get_preset  # noqa: E402
from emseg_tutorial.weight_schemes import weight_map  # noqa: E402
from test_sampler_reference import NumpyReference  # noqa: E402  (the reference lives with its tests)


def per_batch_ms(sampler, batch: int, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        sampler.sample(batch)
    return (time.perf_counter() - start) / n * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batches", type=int, default=50, help="batches per timed block")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    vol = make_volume("fibsem", preset.source_shape, seed=preset.seed, progress=False)
    labels = for_task(vol.labels, "boundary")
    weights = weight_map(labels, "distance")
    gap = min(8, labels.shape[0] // 2)
    kwargs = dict(patch=preset.patch, seed=0, mismatch_gap=gap)
    samplers = {"numpy (reference)": NumpyReference(vol.image, labels, weights, **kwargs),
                "torch (library)": PatchSampler(vol.image, labels, weights, device="cpu", **kwargs)}
    for s in samplers.values():  # warm-up
        per_batch_ms(s, preset.batch_size, 5)
    times = {name: [] for name in samplers}
    for _ in range(args.rounds):
        for name, s in samplers.items():
            times[name].append(per_batch_ms(s, preset.batch_size, args.batches))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"preset {preset.name}: source {preset.source_shape}, batch {preset.batch_size} x {preset.patch}^2 "
          f"with weights and wrong-slice partners, CPU, {torch.get_num_threads()} threads")
    for name, ms in med.items():
        print(f"{name:20s} {ms:8.2f} ms per batch")
    print(f"torch / numpy        {med['torch (library)'] / med['numpy (reference)']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
