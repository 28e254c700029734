"""Peak memory and wall time of streamed prediction on a stack larger than it should hold.

Usage::

    python benchmarks/bench_stream_predict.py [--shape Z Y X] [--small-depth N] [--tile T]
                                              [--depth D] [--width W] [--folder DIR] [--keep]

1. A made-up ``Z x Y x X`` uint8 tif (default 200 x 2048 x 2048, 800 MiB) is written slice by
   slice with :func:`emseg_tutorial.data.writers.open_writers` (never held in memory): smooth
   noise, a low-resolution random field interpolated in x, y and z plus fine grain.
2. A small untrained :class:`~emseg_tutorial.models.UNet2d` (depth 2, width 4 by default)
   segments it through :func:`emseg_tutorial.predict.stream.predict_file`, the path of
   ``python -m emseg_tutorial predict`` (tiles of 544 with 32 pixels overlap: four tiles
   cover 2048 exactly).
3. The first ``--small-depth`` slices (default 20) are predicted twice more: streamed, and in
   memory as the command line did before (``read_image`` -> ``predict_probabilities`` ->
   ``write_volume``).

Each prediction runs in a fresh Python process, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. The table gives that peak, the
part above the process's peak before it touched the data (Python + torch + the model), the
peak of the numpy allocations traced by ``tracemalloc`` (torch tensors are not traced), and
the ratio of the peak to the size of the input volume. Nothing is enforced; the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.data.writers import open_writers  # noqa: E402

MIB = 1024 * 1024


def rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


def make_volume(path: Path, shape: tuple[int, int, int], seed: int = 0, cell: int = 32) -> None:
    """Write smooth uint8 noise of ``shape`` to a tif, one slice at a time."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    coarse = (ny // cell + 2, nx // cell + 2)
    zoom = (ny / coarse[0], nx / coarse[1])
    step = 8                                    # a new random field every 8 slices, blended between
    fields = [rng.normal(0, 1, coarse), rng.normal(0, 1, coarse)]
    with open_writers([(path, shape, np.uint8)], voxel_size=(10.0, 10.0, 10.0)) as (writer,):
        for z in range(nz):
            if z and z % step == 0:
                fields = [fields[1], rng.normal(0, 1, coarse)]
            t = (z % step) / step
            field = ndi.zoom((1 - t) * fields[0] + t * fields[1], zoom, order=1)[:ny, :nx]
            grain = rng.normal(0, 12, (ny, nx))
            writer.write(np.clip(128 + 40 * field + grain, 0, 255).astype(np.uint8)[None])


def _model(depth: int, width: int):
    import torch

    from emseg_tutorial.models import UNet2d

    torch.manual_seed(0)
    return UNet2d(out_channels=2, depth=depth, base_width=width, norm="batch").eval()


def worker(args) -> None:
    """One measured prediction; prints a JSON line."""
    import torch

    from emseg_tutorial.data.readers import read_image
    from emseg_tutorial.data.writers import write_volume
    from emseg_tutorial.predict import predict_probabilities, probabilities_to_codes
    from emseg_tutorial.predict import predict_file

    torch.set_num_threads(args.threads)
    model = _model(args.depth, args.width)
    baseline = rss_mib()
    tracemalloc.start()
    start = time.perf_counter()
    if args.worker == "stream":
        result = predict_file(model, args.input, args.output, tile=args.tile, overlap=32, batch_size=4)
        shape = result.shape
    else:
        image, voxel = read_image(args.input)
        probs = predict_probabilities(model, image, tile=args.tile, overlap=32, batch_size=4)
        write_volume(args.output, probabilities_to_codes(probs), voxel)
        shape = image.shape
    wall = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / MIB
    print(json.dumps({"mode": args.worker, "shape": list(shape), "wall_s": wall, "peak_rss_mib": rss_mib(),
                      "baseline_rss_mib": baseline, "tracemalloc_peak_mib": traced}))


def run_worker(mode: str, image: Path, out: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--input", str(image), "--output", str(out),
           "--tile", str(args.tile), "--depth", str(args.depth), "--width", str(args.width),
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 2048, 2048), metavar=("Z", "Y", "X"))
    parser.add_argument("--small-depth", type=int, default=20, help="slices of the in-memory comparison")
    parser.add_argument("--tile", type=int, default=544)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="where to write the volumes (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the volumes")
    parser.add_argument("--worker", choices=("stream", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_stream_"))
    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    small = (min(args.small_depth, shape[0]),) + shape[1:]
    try:
        start = time.perf_counter()
        big_tif, small_tif = folder / "volume.tif", folder / "small.tif"
        make_volume(big_tif, shape)
        make_volume(small_tif, small)
        made = time.perf_counter() - start
        print(f"made {big_tif.name} {shape} ({big_tif.stat().st_size / MIB:.0f} MiB) and {small_tif.name} {small} "
              f"in {made:.0f} s; UNet2d depth {args.depth} width {args.width}, tile {args.tile}, overlap 32, "
              f"{args.threads} threads")
        rows = [(shape, run_worker("stream", big_tif, folder / "pred.tif", args)),
                (small, run_worker("stream", small_tif, folder / "pred_small.tif", args)),
                (small, run_worker("memory", small_tif, folder / "pred_small_mem.tif", args))]
    finally:
        if not args.keep and args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    header = (f"{'path':<8} {'volume (Z,Y,X)':<18} {'input MiB':>9} {'wall s':>8} {'s/slice':>8} {'peak RSS':>9} "
              f"{'above base':>10} {'numpy peak':>10} {'peak/input':>10}")
    print(header)
    print("-" * len(header))
    for vol_shape, r in rows:
        size = int(np.prod(vol_shape)) / MIB
        print(f"{r['mode']:<8} {'x'.join(map(str, vol_shape)):<18} {size:>9.0f} {r['wall_s']:>8.1f} "
              f"{r['wall_s'] / vol_shape[0]:>8.2f} {r['peak_rss_mib']:>8.0f}M {r['peak_rss_mib'] - r['baseline_rss_mib']:>9.0f}M "
              f"{r['tracemalloc_peak_mib']:>9.0f}M {r['peak_rss_mib'] / size:>10.2f}")
    stream_small, memory_small = rows[1][1], rows[2][1]
    print(f"in-memory / streamed peak RSS on {'x'.join(map(str, small))}: "
          f"{memory_small['peak_rss_mib'] / stream_small['peak_rss_mib']:.2f} "
          f"(above baseline: {(memory_small['peak_rss_mib'] - memory_small['baseline_rss_mib']) / max(1e-9, stream_small['peak_rss_mib'] - stream_small['baseline_rss_mib']):.2f})")
    print(f"streamed peak RSS, {shape[0]} vs {small[0]} slices: {rows[0][1]['peak_rss_mib']:.0f} vs "
          f"{stream_small['peak_rss_mib']:.0f} MiB (memory does not grow with depth)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
