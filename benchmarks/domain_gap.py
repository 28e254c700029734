"""The twins' domain gap: no skill, source-only, each adaptation method and the oracle.

Usage::

    python benchmarks/domain_gap.py [--preset cpu] [--methods paper adabn ...] [--json FILE]

At one preset (default ``cpu``), in a fresh runs folder, on this machine: trains M3 on the source
twin and the oracle (the same recipe on the target twin's own labels), scores both on the held-out
target twin, runs chapter 6's comparison of ``--methods`` (default ``paper adabn``; its sizes are
the preset's ``comparison``) and prints one table: boundary Jaccard on the same held-out target
slices for no skill, source-only, each method (last epoch and label-free choice, mean over
seeds) and the oracle, with the fraction of the gap closed. It also says whether source-only is at
most the midpoint between no skill and the oracle (the calibration of
:mod:`emseg_tutorial.data.synthetic`). ``EMSEG_DATA=real`` runs the same on real data (downloads
needed). Nothing is enforced; it exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emseg_tutorial.paper.comparison import compare  # noqa: E402
from emseg_tutorial.paper.gap import domain_gap  # noqa: E402
from emseg_tutorial.session import from_env  # noqa: E402
from emseg_tutorial.store import save_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--methods", nargs="*", default=["paper", "adabn"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        os.environ["EMSEG_RUNS"] = runs
        session = from_env(0, args.preset).replace(progress=False)
        start = time.perf_counter()
        comp = compare(args.methods, session) if args.methods else None
        volume = comp.target_eval if comp else None
        gap = domain_gap(session, volume, source_only=comp.source_only["target"] if comp else None)
        rows = [("no skill", gap.no_skill, None), ("source-only (M3)", gap.source_only, None)]
        for name in comp.names if comp else []:
            for selection in ("last", "label-free"):
                runs_ = comp.of(name)
                epochs = [r.last if selection == "last" else r.label_free for r in runs_]
                value = float(np.mean([r.scores(e)["boundary_jaccard"] for r, e in zip(runs_, epochs)]))
                rows.append((f"{name} ({selection}, {len(runs_)} run{'s' * (len(runs_) != 1)})", value, gap.closed(value)))
        rows.append(("oracle (target labels)", gap.oracle, gap.closed(gap.oracle)))
        minutes = (time.perf_counter() - start) / 60
    print(f"preset {args.preset}, data {session.data}, held-out target boundary Jaccard ({minutes:.1f} min)")
    print(f"{'':34s} {'J':>6s} {'gap closed':>10s}")
    for name, value, closed in rows:
        print(f"{name:34s} {value:6.3f} {'' if closed is None else f'{closed:+.2f}':>10s}")
    print(f"midpoint between no skill and oracle {gap.midpoint:.3f}: source-only is "
          f"{'at most' if gap.source_only_is_poor else 'ABOVE'} it")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        save_json(args.json, {"preset": args.preset, "rows": rows, "midpoint": gap.midpoint})  # atomically
    return 0


if __name__ == "__main__":
    sys.exit(main())
