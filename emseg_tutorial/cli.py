"""Command line: ``python -m emseg_tutorial COMMAND ...`` (``--help`` on each command).

Each command is a pair of functions registered in :data:`COMMANDS`: one adds its arguments
to a sub-parser, one runs it. Bad arguments or input exit with status 2 and one line on
stderr that names the problem; success exits 0.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .data.io import VolumeError, check_output_spec, write_volume
from .data.sources import DataSourceError
from .data.synthetic import DOMAINS, make_volume

PROG = "python -m emseg_tutorial"


class UsageError(Exception):
    """Bad arguments or input: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# --------------------------------------------------------------------------- synth


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic FIBSEM-like or SNEMI3D-like volume and its labels",
                       description="Generate a labelled synthetic EM volume (the book's twins) as tif stacks.")
    p.add_argument("--domain", choices=DOMAINS, required=True,
                   help="fibsem: isotropic source, codes 1-4; snemi: anisotropic target, codes 1-3")
    p.add_argument("--shape", type=_positive, nargs=3, metavar=("Z", "Y", "X"), required=True,
                   help="volume shape in voxels (Y and X at least 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--image", required=True, help="output image (.tif, FILE.h5:dataset or .npy)")
    p.add_argument("--labels", required=True, help="output labels, codes 1-4 (same formats)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth(args) -> None:
    for spec in (args.image, args.labels):
        check_output_spec(spec)
    vol = make_volume(args.domain, tuple(args.shape), seed=args.seed, progress=not args.quiet)
    write_volume(args.image, vol.image, vol.voxel_size)
    write_volume(args.labels, vol.labels, vol.voxel_size)
    print(f"wrote {args.image} and {args.labels}: {args.domain} twin, shape {vol.shape}, "
          f"voxel {vol.voxel_size} nm, seed {args.seed}")


#: name -> (add arguments, run)
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "synth": (add_synth, run_synth),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Class-imbalanced EM segmentation and domain adaptation "
                                            "(the emseg-tutorial experiments on your own volumes).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad arguments or input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        COMMANDS[args.command][1](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (VolumeError, DataSourceError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
