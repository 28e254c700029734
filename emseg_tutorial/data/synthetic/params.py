"""The twins' parameters: what makes each synthetic domain what it is (:data:`FIBSEM`, :data:`SNEMI`).

Examples
--------
>>> domain_params("snemi").voxel_size
(30.0, 6.0, 6.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOMAINS = ("fibsem", "snemi")

#: Version of the generator: volumes are the same for the same ``(domain, shape, seed)`` within
#: a version (see "Versions" in :mod:`emseg_tutorial.data.synthetic`); 1 was the generator
#: before this constant existed.
TWIN_VERSION = 5


@dataclass(frozen=True)
class DomainParams:
    """Everything that makes one synthetic domain what it is.

    Lengths are in pixels of the isotropic sub-slice grid (the xy pixel size), but for the
    labelled wall width, which is in nm (:attr:`wall_px` converts it).

    Attributes
    ----------
    name : str
        Domain name.
    voxel_size : tuple of float
        ``(z, y, x)`` in nm of the volume that is returned.
    z_factor : int
        Isotropic sub-slices per returned slice (section thickness / xy pixel).
    cell_spacing : float
        Mean distance between neighbouring neurite seeds (sets the cell size).
    tilt : float
        Standard deviation of a neurite's xy drift per sub-slice (0.5 is about 27 degrees).
    wiggle : float
        Amplitude of a neurite's smooth xy meander.
    warp : float
        Amplitude of the smooth displacement field that bends walls.
    dendrite_fraction : float
        Fraction of the area covered by large neurites drawn as discs (0 for none).
    dendrite_radius : tuple of float
        Range of dendrite radii.
    glia_fraction : float
        Probability that a (non-dendrite) cell is a glial cell.
    mito_per_cell : float
        Expected mitochondria per neurite over the volume depth.
    mito_radius : tuple of float
        Range of mitochondrion radii across the neurite.
    mito_length : tuple of float
        Range of mitochondrion half-lengths along the neurite.
    intensity : dict
        Mean intensity in [0, 1] of ``membrane``, ``cytoplasm``, ``mito``, ``glia``.
    texture : dict
        Amplitude of the fine texture of ``cytoplasm`` (glia share it: they differ by intensity)
        and of ``mito``.
    psf_sigma : tuple of float
        ``(z, y, x)`` Gaussian blur of the microscope, in sub-slices / pixels.
    noise : float
        Standard deviation of the additive Gaussian noise.
    gamma : float
        Exponent of the intensity curve applied after blur.
    contrast : tuple of float
        ``(offset, gain)``: ``image = offset + gain * image ** gamma``.
    drift : float
        Size of the slice-to-slice random walk of gain and offset.
    misalign_prob : float
        Probability that a returned slice is shifted against its neighbours.
    misalign_max : int
        Largest shift in pixels of a misaligned slice.
    wall_nm : float
        Width in nm of a labelled wall (the label, not the dark membrane of the image, which is
        a little wider). Annotators draw a membrane label at about the same physical width
        whatever the pixel size, so both twins share one value: 20 nm, the source's 2-pixel
        walls (``find_boundaries(mode="thick")`` at 10 nm), 3 pixels at the target's 6 nm.
    shading : float
        Amplitude of the slow shading across the slice (uneven staining).
    cell_stain : float
        Standard deviation of a per-cell intensity offset (cells stain differently).
    membrane_fade : float
        Largest fraction of a membrane's darkness lost along faint stretches (0: every wall fully
        dark; 0.8: some stretches keep a fifth of it and look broken). Image only; labels stay.
    vesicle_density : float
        Expected vesicles per cell per sub-slice in the cells that hold vesicles (a third).
    vesicle_radius : tuple of float
        Range of vesicle radii (pixels); vesicles are dark dots inside cytoplasm (labelled
        cytoplasm), easy to mistake for membrane fragments.
    mito_rim : float
        Darkness of a mitochondrion's outer membrane, 0 to 1 of the way to the membrane
        intensity: a dark ring that looks like a cell wall.
    er_darkness : float
        Darkness of the intracellular membranes (endoplasmic reticulum and the like), 0 to 1 of
        the way to the membrane intensity; 0 draws none. They are thin curved dark lines with free
        ends inside cells, labelled cytoplasm (image only, like vesicles).
    er_cover : float
        Fraction of the slice area where intracellular membranes show (their fragments' share).
    er_width_nm : float
        Width in nm of an intracellular membrane line (thinner than a cell wall's dark band).
    er_wavelength_nm : tuple of float
        Range of wavelengths in nm of the smooth noise whose zero set the lines follow (shorter:
        more lines per cell; the lines are about half a wavelength apart).
    """

    name: str
    voxel_size: tuple[float, float, float]
    z_factor: int
    cell_spacing: float
    tilt: float
    wiggle: float
    warp: float
    dendrite_fraction: float
    dendrite_radius: tuple[float, float]
    glia_fraction: float
    mito_per_cell: float
    mito_radius: tuple[float, float]
    mito_length: tuple[float, float]
    intensity: dict = field(default_factory=dict)
    texture: dict = field(default_factory=dict)
    psf_sigma: tuple[float, float, float] = (0.8, 0.8, 0.8)
    noise: float = 0.05
    gamma: float = 1.0
    contrast: tuple[float, float] = (0.0, 1.0)
    drift: float = 0.0
    misalign_prob: float = 0.0
    misalign_max: int = 0
    wall_nm: float = 20.0
    shading: float = 0.06
    cell_stain: float = 0.0
    membrane_fade: float = 0.0
    vesicle_density: float = 0.0
    vesicle_radius: tuple[float, float] = (1.5, 2.5)
    mito_rim: float = 0.0
    er_darkness: float = 0.0
    er_cover: float = 0.0
    er_width_nm: float = 10.0
    er_wavelength_nm: tuple[float, float] = (200.0, 500.0)

    @property
    def wall_px(self) -> int:
        """Width in pixels of a labelled wall: :attr:`wall_nm` at the xy pixel size, rounded
        (at least 1).

        Examples
        --------
        >>> FIBSEM.wall_px, SNEMI.wall_px
        (2, 3)
        """
        return max(1, round(self.wall_nm / self.voxel_size[2]))


#: Source twin: FIBSEM of fly neuropil, 10 nm isotropic, four classes, stable across slices.
FIBSEM = DomainParams(
    name="fibsem",
    voxel_size=(10.0, 10.0, 10.0),
    z_factor=1,
    cell_spacing=32.0,
    tilt=0.35,
    wiggle=4.0,
    warp=4.0,
    dendrite_fraction=0.0,
    dendrite_radius=(0.0, 0.0),
    glia_fraction=0.13,
    mito_per_cell=1.8,
    mito_radius=(4.0, 7.5),
    mito_length=(10.0, 24.0),
    intensity={"membrane": 0.20, "cytoplasm": 0.64, "mito": 0.36, "glia": 0.50},
    texture={"cytoplasm": 0.045, "mito": 0.09},
    psf_sigma=(0.0, 0.7, 0.7),
    noise=0.08,
    wall_nm=20.0,
    shading=0.10,
    cell_stain=0.06,
    membrane_fade=0.8,
    vesicle_density=0.06,
    vesicle_radius=(1.5, 2.5),
    mito_rim=0.6,
)

#: Target twin: serial-section SEM of mouse cortex, 6 x 6 x 30 nm, no glia, drifting slices.
#: Tissue lengths are the source's in nm (so 10 / 6 times as many pixels); the acquisition
#: (section thickness, gamma, contrast, blur, noise, drift, misalignment) is its own, and its
#: finer pixels resolve intracellular membranes (``er_*``) that the source's 10 nm do not. The
#: gamma and the intracellular membranes are calibrated (see "Calibration of the domain gap" in
#: :mod:`emseg_tutorial.data.synthetic`).
SNEMI = DomainParams(
    name="snemi",
    voxel_size=(30.0, 6.0, 6.0),
    z_factor=5,
    cell_spacing=32.0 * 10 / 6,
    tilt=0.55,
    wiggle=4.0 * 10 / 6,
    warp=4.0 * 10 / 6,
    dendrite_fraction=0.22,
    dendrite_radius=(55.0, 100.0),
    glia_fraction=0.0,
    mito_per_cell=1.2,
    mito_radius=(6.5, 12.5),
    mito_length=(17.0, 40.0),
    intensity={"membrane": 0.10, "cytoplasm": 0.72, "mito": 0.42, "glia": 0.72},
    texture={"cytoplasm": 0.06, "mito": 0.05},
    psf_sigma=(0.0, 1.2, 1.2),
    noise=0.07,
    gamma=2.8,
    contrast=(0.12, 0.70),
    drift=0.035,
    misalign_prob=0.1,
    misalign_max=6,
    wall_nm=20.0,
    shading=0.06,
    cell_stain=0.05,
    membrane_fade=0.5,
    vesicle_density=0.036,
    vesicle_radius=(2.5, 4.2),
    mito_rim=0.6,
    er_darkness=1.0,
    er_cover=0.7,
    er_width_nm=16.0,
    er_wavelength_nm=(100.0, 250.0),
)

PARAMS: dict[str, DomainParams] = {"fibsem": FIBSEM, "snemi": SNEMI}


def domain_params(domain: str) -> DomainParams:
    """Return the parameters of ``domain`` (``"fibsem"`` or ``"snemi"``)."""
    try:
        return PARAMS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}") from None


def parameter_table() -> "pandas.DataFrame":
    """The parameters of both twins side by side (rows: parameters, columns: domains)."""
    import pandas as pd
    from dataclasses import asdict

    rows: dict[str, dict[str, str]] = {}
    for name, p in PARAMS.items():
        for key, value in asdict(p).items():
            if key == "name":
                continue
            if isinstance(value, dict):
                for sub, v in value.items():
                    rows.setdefault(f"{key}: {sub}", {})[name] = f"{v:g}"
            else:
                rows.setdefault(key, {})[name] = (", ".join(f"{v:g}" for v in value)
                                                  if isinstance(value, tuple) else f"{value:g}")
        rows.setdefault("wall_px", {})[name] = f"{p.wall_px:g}"
    return pd.DataFrame(rows).T.fillna("")
