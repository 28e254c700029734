"""Voxel sizes in every unit Fiji, OME-TIFF and OME-Zarr write are read as nm and written back
the way Fiji reads them."""

import numpy as np
import pytest
import tifffile

from emseg_tutorial.data.readers import read_image
from emseg_tutorial.data.writers import write_volume
from emseg_tutorial.data.units import to_nm

VOXEL_NM = (30.0, 6.0, 6.0)
#: unit as the ImageJ description holds it (ASCII: Fiji writes µm as "micron" or escaped) -> units per nm
IMAGEJ_UNITS = {"nm": 1.0, "micron": 1e-3, "um": 1e-3, "\\u00B5m": 1e-3, "\\u00C5": 10.0, "angstrom": 10.0}


def _fiji_tif(path, unit, per_nm):
    z, y, x = (v * per_nm for v in VOXEL_NM)
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), imagej=True, resolution=(1 / x, 1 / y),
                     metadata={"spacing": z, "unit": unit, "axes": "ZYX"})


@pytest.mark.parametrize("unit", IMAGEJ_UNITS)
def test_imagej_unit_is_read_as_nm_and_written_back_as_fiji_reads_it(tmp_path, unit):
    _fiji_tif(tmp_path / "fiji.tif", unit, IMAGEJ_UNITS[unit])
    image, voxel = read_image(tmp_path / "fiji.tif")
    assert voxel == pytest.approx(VOXEL_NM)
    write_volume(tmp_path / "ours.tif", image, voxel)
    with tifffile.TiffFile(tmp_path / "ours.tif") as tif:  # what ImageJ parses: unit, spacing, resolution
        meta, tags = tif.imagej_metadata, tif.pages[0].tags
        assert meta["unit"] == "micron" and meta["spacing"] == pytest.approx(0.030)
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.MICROMETER  # the unit of the tags: px per µm
        for tag in ("XResolution", "YResolution"):
            num, den = tags[tag].value
            assert den / num == pytest.approx(0.006)
    assert read_image(tmp_path / "ours.tif")[1] == pytest.approx(VOXEL_NM)


@pytest.mark.parametrize("unit,per_nm", [("µm", 1e-3), ("nm", 1.0), ("Å", 10.0), (None, 1e-3)])
def test_ome_tiff_physical_sizes_are_read_as_nm(tmp_path, unit, per_nm):
    meta = {"axes": "ZYX", **{f"PhysicalSize{a}": v * per_nm for a, v in zip("ZYX", VOXEL_NM)}}
    if unit is not None:  # OME's default unit is µm
        meta.update({f"PhysicalSize{a}Unit": unit for a in "ZYX"})
    tifffile.imwrite(tmp_path / "ome.tif", np.zeros((3, 8, 8), np.uint8), ome=True, metadata=meta)
    assert read_image(tmp_path / "ome.tif")[1] == pytest.approx(VOXEL_NM)


def test_a_unit_that_is_no_length_gives_no_voxel_size(tmp_path):
    _fiji_tif(tmp_path / "px.tif", "pixel", 1.0)
    assert read_image(tmp_path / "px.tif")[1] is None
    assert to_nm(2, "inch") is None and to_nm(2, "mm") == 2e6
