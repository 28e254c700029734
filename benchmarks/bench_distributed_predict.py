"""Throughput and peak memory per worker of prediction on 1 and 2 local dask workers.

Usage::

    python benchmarks/bench_distributed_predict.py [--shape Z Y X] [--tile T] [--quick] [--keep]

1. A made-up ``Z x Y x X`` uint8 OME-Zarr (default 64 x 1024 x 1024) is written slice by slice.
2. A small untrained :class:`~emseg_tutorial.models.UNet2d` (depth 2, width 4) predicts it with
   :func:`emseg_tutorial.predict.distributed.predict_distributed`, the path of
   ``python -m emseg_tutorial predict --cluster``, on a fresh LocalCluster of 1 and then 2 worker
   processes (each with ``cores / N`` torch threads).
3. For each: wall time, throughput (voxels / s), the peak resident memory of every worker
   process (``ru_maxrss``, asked of the workers after the run); then the ratios 2 workers / 1
   worker of throughput and of the largest worker peak. The two outputs are checked to be equal.

``--quick`` uses a 4 x 64 x 64 volume: it checks that the script runs, its numbers mean
nothing. Run it on an otherwise idle machine; nothing is enforced, the script exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.data.readers import read_labels  # noqa: E402
from emseg_tutorial.data.writers import open_writers  # noqa: E402
from emseg_tutorial.models import UNet2d  # noqa: E402
from emseg_tutorial.predict.distributed import predict_distributed  # noqa: E402

MIB = 1024 * 1024


def _peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


def make_volume(spec: str, shape: tuple[int, int, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open_writers([(spec, shape, np.uint8)], voxel_size=(30.0, 6.0, 6.0)) as (w,):
        for _ in range(shape[0]):
            w.write(rng.integers(0, 255, (1,) + shape[1:], dtype=np.uint8))


def run(n_workers: int, image: str, out: str, model, tile: int) -> dict:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    try:
        client = Client(cluster, set_as_default=False)
        client.run(torch.set_num_threads, max(1, (os.cpu_count() or 1) // n_workers))
        start = time.perf_counter()
        result = predict_distributed(model, image, out, cluster=cluster.scheduler_address, tile=tile,
                                     overlap=min(32, tile // 4))
        seconds = time.perf_counter() - start
        peaks = sorted(client.run(_peak_mib).values())
        client.close()
    finally:
        cluster.close()
    voxels = int(np.prod(result.shape))
    return {"workers": n_workers, "seconds": seconds, "voxels_per_s": voxels / seconds, "peaks_mib": peaks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 1024, 1024), metavar=("Z", "Y", "X"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="a 4 x 64 x 64 volume: checks that it runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    shape = (4, 64, 64) if args.quick else tuple(args.shape)
    tile = 64 if args.quick else args.tile
    folder = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    try:
        image = str(folder / "image.zarr")
        make_volume(image, shape)
        torch.manual_seed(0)
        model = UNet2d(out_channels=2, depth=2, base_width=4)
        rows = [run(n, image, str(folder / f"pred{n}.zarr"), model, tile) for n in (1, 2)]
        same = np.array_equal(read_labels(folder / "pred1.zarr"), read_labels(folder / "pred2.zarr"))
        print(f"volume {shape} uint8, tile {tile}, {os.cpu_count()} cores; outputs equal: {same}")
        print(f"{'workers':>8} {'seconds':>9} {'Mvoxel/s':>9}  peak RSS per worker (MiB)")
        for r in rows:
            print(f"{r['workers']:>8} {r['seconds']:>9.2f} {r['voxels_per_s'] / 1e6:>9.3f}  "
                  f"{', '.join(f'{p:.0f}' for p in r['peaks_mib'])}")
        one, two = rows
        print(f"ratio 2/1 workers: throughput {two['voxels_per_s'] / one['voxels_per_s']:.2f}x, "
              f"largest worker peak {max(two['peaks_mib']) / max(one['peaks_mib']):.2f}x")
        if args.quick:
            print("(--quick: a smoke run, the numbers mean nothing)")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
