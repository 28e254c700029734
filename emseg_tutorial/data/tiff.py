"""TIFF metadata and damage detection: the voxel size a TIFF states, and a page chain cut short.

* :func:`tiff_voxel_size`: the voxel size in nm from ImageJ metadata (``spacing`` and the x/y
  resolution, in the ``unit`` Fiji wrote), else from OME-TIFF ``PhysicalSize*``;
* :func:`tifffile_log` and :func:`check_not_cut_short`: tifffile only *logs* a broken page
  chain and then reads fewer pages; the log is collected (so nothing reaches stderr) and a
  file cut short is refused with one :class:`~.errors.VolumeError` line naming the pages found
  and announced.

The reader itself is :func:`.readers.open_volume`.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import VolumeError
from .units import to_nm

__all__ = ["tiff_voxel_size", "tifffile_log", "check_not_cut_short"]


def tiff_voxel_size(tif) -> tuple[float, float, float] | None:
    """Voxel size in nm from ImageJ metadata (``spacing`` + x/y resolution, in the ``unit`` Fiji
    wrote: nm, µm/micron/um, Å; :mod:`.units`), else from OME-TIFF ``PhysicalSize*``, or None."""
    meta = tif.imagej_metadata or {}
    page = tif.pages[0]
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return ome_voxel_size(tif)
    unit = meta.get("unit")
    if "spacing" not in meta or to_nm(1.0, unit) is None:
        return ome_voxel_size(tif)
    y = yres[1] / yres[0] if yres[0] else None
    x = xres[1] / xres[0] if xres[0] else None
    if not y or not x:
        return None
    return to_nm(meta["spacing"], unit), to_nm(y, unit), to_nm(x, unit)


def ome_voxel_size(tif) -> tuple[float, float, float] | None:
    """``PhysicalSizeZ/Y/X`` of an OME-TIFF (unit attributes default to µm) in nm, or None."""
    xml = getattr(tif, "ome_metadata", None)
    if not xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        pixels = next(e for e in ET.fromstring(xml).iter() if e.tag.endswith("Pixels"))
    except (ET.ParseError, StopIteration):
        return None
    sizes = [to_nm(pixels.get(f"PhysicalSize{a}"), pixels.get(f"PhysicalSize{a}Unit", "µm")) for a in "ZYX"]
    return tuple(sizes) if all(s is not None for s in sizes) else None


class _TiffLog(logging.Handler):
    """Collects what tifffile logs (it only *logs* a broken page chain, then reads fewer pages)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def tifffile_log() -> Iterator[_TiffLog]:
    log = logging.getLogger("tifffile")
    handler = _TiffLog()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def _expected_pages(tif) -> int | None:
    """Pages the file's own metadata announces (ImageJ ``images``, tifffile's shape), or None."""
    meta = tif.imagej_metadata
    if meta and meta.get("images"):
        return int(meta["images"])
    shaped = tif.shaped_metadata
    if shaped and shaped[0].get("shape"):
        shape = list(shaped[0]["shape"])
        plane = 3 if tif.pages[0].samplesperpixel > 1 else 2  # RGB: (Y, X, S) per page
        return int(np.prod(shape[:-plane])) if len(shape) > plane else 1
    return None


def check_not_cut_short(tif, path: Path, log: _TiffLog) -> None:
    """Refuse a TIFF whose page chain breaks off (a file cut short), naming pages found and expected.

    tifffile only logs a broken page chain and then reads the pages before it; the log is
    collected by :func:`tifffile_log` (so nothing reaches stderr) and turned into an error.
    """
    broken = [re.sub(r"^<[^>]*>\s*", "", m) for m in log.messages
              if "invalid page offset" in m or "corrupted" in m or "truncated" in m]
    if not broken:
        return
    broken.sort(key=lambda m: "page offset" not in m)  # the cause first
    found, expected = len(tif.pages), _expected_pages(tif)
    says = f"{found} of the {expected} pages its header announces are readable" if expected else \
        f"{found} pages readable, then a broken page link"
    raise VolumeError(f"{path}: file is cut short or damaged: {says} (tifffile: {broken[0]}); copy or save it again")

