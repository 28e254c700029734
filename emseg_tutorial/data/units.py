"""Length units of voxel sizes: what ImageJ, Fiji, OME-TIFF and OME-Zarr write, converted to nm.

Fiji writes the unit of a calibrated stack into the ImageJ description as ``unit=micron``
(older versions), ``unit=\\u00B5m`` (an escaped micro sign), ``unit=µm``, ``unit=um``,
``unit=nm`` or ``unit=\\u00C5`` (Ångström); OME-TIFF writes ``PhysicalSizeXUnit="µm"``
(the default when absent) and OME-Zarr writes ``"unit": "micrometer"``. :func:`to_nm`
accepts all of them; the library works in nm throughout.

Examples
--------
>>> to_nm(0.006, "micron"), to_nm(6, "nm"), to_nm(60, "Å"), to_nm(1, "pixel")
(6.0, 6.0, 6.0, None)
"""

from __future__ import annotations

#: unit name (lower case, as files spell it) -> nm per unit
NM_PER_UNIT: dict[str, float] = {
    **dict.fromkeys(("nm", "nanometer", "nanometre", "nanometers", "nanometres"), 1.0),
    **dict.fromkeys(("µm", "μm", "um", "\\u00b5m", "micron", "microns", "micrometer", "micrometre",
                     "micrometers", "micrometres"), 1000.0),
    **dict.fromkeys(("å", "Å", "\\u00c5", "\\u212b", "angstrom", "angstroms", "ångström", "ångstrom"), 0.1),
    **dict.fromkeys(("mm", "millimeter", "millimetre"), 1e6),
    **dict.fromkeys(("pm", "picometer", "picometre"), 1e-3),
}


def nm_per_unit(unit) -> float | None:
    """nm in one ``unit`` (a name from :data:`NM_PER_UNIT`, any case), or None when not a length.

    Examples
    --------
    >>> nm_per_unit("Micron"), nm_per_unit("\\\\u00B5m"), nm_per_unit("inch")
    (1000.0, 1000.0, None)
    """
    if not isinstance(unit, str):
        return None
    text = unit.strip()
    return NM_PER_UNIT.get(text, NM_PER_UNIT.get(text.lower()))


def to_nm(value, unit) -> float | None:
    """``value`` in ``unit`` as nm (rounded to 1e-6 nm), or None when the unit is not a length.

    Examples
    --------
    >>> to_nm(0.03, "µm")
    30.0
    """
    factor = nm_per_unit(unit)
    if factor is None or value is None:
        return None
    return round(float(value) * factor, 6)
