"""Synthetic twins of the paper's two EM volumes, generated from a seed and a shape.

The paper trains on a FIBSEM volume of *Drosophila* neuropil (10 nm isotropic voxels, labels
boundary / cytoplasm / mitochondria / glia) and adapts to SNEMI3D (mouse cortex, serial-section
SEM, 6 x 6 x 30 nm voxels, no labels used). Neither is needed to follow the book: this module
draws volumes that share the properties the paper's methods depend on.

How a volume is made
--------------------
1. **Geometry.** Neurites are tubes that run roughly along z with a random tilt and a smooth
   wiggle. On every (isotropic) sub-slice each neurite is a seed point; the cells of that
   sub-slice are the Voronoi regions of the seeds, bent by a smooth displacement field so that
   walls curve (a pixel ``p`` belongs to the seed nearest to ``p + warp(p)``). Some domains add
   a few large neurites (dendrites) drawn as discs over the Voronoi fill. Mitochondria are
   ellipsoids elongated along their neurite; glia are a subset of cells.
2. **Labels.** Boundary (code 1) marks the walls between cells at one physical width,
   ``wall_nm`` = 20 nm in both twins (as an annotator draws a membrane label): at the source's
   10 nm pixels that is every pixel with a 4-neighbour of another cell (what
   ``skimage.segmentation.find_boundaries(mode="thick")`` marks, 2 pixels), at the target's
   6 nm 3 pixels; cytoplasm 2, mitochondria 3 (kept one pixel away from walls), glia 4.
3. **Image.** Each class gets an intensity and its own texture; walls are drawn as dark
   membranes. What makes real EM hard is drawn into the image only (labels never change): cells
   stain unevenly (a per-cell offset and slow shading), membranes fade along stretches until
   some look broken, vesicles are dark dots inside cells and mitochondria have a dark rim (both
   look like bits of wall); at the target's 6 nm, intracellular membranes (endoplasmic
   reticulum and the like) show as thin dark curved fragments with free ends inside cells. Then the acquisition is simulated: point-spread blur and noise for FIBSEM;
   section thickness (the mean of ``z_factor`` isotropic sub-slices, so oblique walls become
   wide and faint), a gamma curve, lower contrast, slice-to-slice drift of brightness and
   contrast, stronger noise and occasional slice misalignment for SNEMI3D.

Difficulty is fixed here
------------------------
The two parameter sets :data:`FIBSEM` and :data:`SNEMI` fix the twins' difficulty; later
chapters must not change them to reach a number. Both twins are the same kind of tissue at
their own pixel size: every tissue length (cell spacing, wiggle, warp, mitochondria, vesicles,
the wavelengths of the wiggles and of the warp) is the same in nm, so target structures span
10 / 6 = 1.7 times the pixels of the source's (a test checks the neurite diameters). The domain
gap is structural, not only an intensity shift: the target has large dendrites among its
neurites, no glia, thicker (in pixels) and section-blurred oblique membranes, a nonlinear
intensity curve, per-slice drift and misalignment. Histogram matching removes only part of it
(chapter 6 measures how much). The source is made hard by what real EM shows (faint and broken
membranes, wall-like vesicles and mitochondrial rims, uneven staining, noise), never by wrong
labels.

Calibration of the domain gap
-----------------------------
A model trained on one EM volume transfers poorly to another: torch-em's Shallow2Deep study
(Matskevych et al., "From shallow to deep: exploiting feature-based classifiers for domain
adaptation in semantic segmentation", Front. Comput. Sci. 2022, doi:10.3389/fcomp.2022.805166)
reports Dice 0.04-0.23 for a U-Net trained on one mitochondria volume and applied to another, and this project's runs on a
real FIBSEM -> ssTEM pair gave source-only boundary scores far below what the target's own labels
reach. Version 4 of the twins did not: the source model (M3) kept 0.63 boundary Jaccard on the
target against 0.79 for the oracle (the same recipe on the target's labels), so adaptation had
little to gain. The criterion, checked by ``benchmarks/domain_gap.py`` and printed by chapters 5
and 6, is that source-only lies at most at the midpoint between no skill (everything called
boundary) and the oracle. Changes were tried one at a time on the target at the ``cpu`` preset,
seed 0, keeping only those that hurt transfer more than learning on the target (a harder target
for both would only lower the oracle with it): more noise, blur, tilt, fainter or wider-faded
membranes, darker mitochondria, denser vesicles, misalignment and coarser texture lowered both
or neither. Two are kept, both properties of the target's acquisition rather than of its labels:

* **Intracellular membranes** (``er_darkness``, ``er_cover``, ``er_width_nm``,
  ``er_wavelength_nm``): 16 nm dark lines, 50-125 nm apart, over 70 % of the slice, off the walls
  and labelled cytoplasm. At the target's pixel size they are as wide in pixels as the source's
  walls, so a source model calls them boundary; a model that sees target labels learns that
  they are thinner than the target's walls and end in the middle of a cell.
* **A steeper intensity curve** (``gamma`` 2.8 instead of 1.6): dark tones are compressed, so
  walls, intracellular membranes and mitochondria lie closer in grey value than anything the
  source model saw; the oracle learns the target's own curve.

With them (version 5) the ``cpu`` preset, seed 0, gave no skill 0.113, source-only 0.343 and
oracle 0.670 (midpoint 0.391) when they were chosen; the chapters print the values of their own
run. The twins remain far easier to transfer between than the volumes in the study above: a
realistic direction, not a copy of its numbers.

Documented class fractions (checked by the tests on 12 x 128 x 128 volumes, where a few large
cells make them spread; a larger volume lies nearer the middle of each range): source boundary
8-16 % (about 11.5 %, the paper says about 10 %), mitochondria 2-10 %, glia 2-40 % (about
15 %), cytoplasm the rest; target boundary 7-18 % (about 12 %: close to the source's, as in
real pairs), mitochondria about 3 %, no glia.

How it is fast
--------------
Cell ids are computed exactly on a grid of nodes every 4 pixels (nearest seed among a short
candidate list per tile of nodes, found once per group of sub-slices with a k-d tree); a 4 x 4
block whose corner nodes agree is filled at once (Voronoi cells are convex), and only the pixels
of the other blocks compare the seeds of their corners. Mitochondria and dendrites are drawn as
batches of discs, walls are neighbour comparisons, blurs are small separable kernels applied in
place, and scratch arrays are reused between sub-slices. The textures are windows, at a random
offset per slice, of fields made once per volume; cytoplasm and glia are one lookup in per-cell
tables (intensity with staining, texture gain, label code); the membrane strength is one lookup
by pixel kind (wall, beside a wall, elsewhere) before the microscope's blur; a z blur, where a
domain has one, stops at 1.5 sigma (one sub-slice of halo).
``benchmarks/bench_twins.py`` times it against an earlier commit in one process.
Every array belongs to one call (no module-level scratch), so volumes can be made in threads.

Versions
--------
:data:`TWIN_VERSION` names the generator: the same ``(domain, shape, seed)`` gives the same
volume within a version, and caches (:func:`~emseg_tutorial.data.sources.load_domain`) are keyed
on it and on a hash of this package's source (:func:`~emseg_tutorial.data.sources.twin_source`),
so an edit here draws the twins again. Version 1 (before the constant existed) filled sub-slices with a distance transform from
rounded seeds; version 2 drew exact Voronoi cells in displaced coordinates with shared textures
and table-drawn noise (pixel values changed, class fractions did not); version 3 gave
target tissue the source's lengths in nm, 4-pixel target walls, and both twins the hard parts
of real EM (staining, faint membranes, vesicles, mitochondrial rims); version 4 labels
walls at one physical width in both twins (``wall_nm``, 20 nm: 2 source pixels, 3 target
pixels instead of 4), so their true boundary fractions no longer differ by the walls alone;
version 5 (now) adds the target's intracellular membranes and a steeper target gamma (2.8), from
the calibration above (the source twin is unchanged). The history is in git.

Modules
-------
:mod:`.params` (the twins' parameters), :mod:`.geometry` (seeds and objects of a volume),
:mod:`.numerics` (blurs, walls, discs, random streams), :mod:`.renderer` (one sub-slice: cells,
walls, textures, labels), :mod:`.acquisition` (blur, intensity curve, drift, noise,
misalignment), :mod:`.blocks` (sections, 16-slice blocks, threads, :func:`make_volume`).

Examples
--------
>>> vol = make_volume("fibsem", (4, 64, 64), seed=0)
>>> vol.image.shape, vol.image.dtype.name, sorted(set(vol.labels.ravel().tolist()))
((4, 64, 64), 'uint8', [1, 2, 3, 4])
"""

from __future__ import annotations

from .blocks import default_workers, iter_blocks, make_volume
from .params import DOMAINS, FIBSEM, PARAMS, SNEMI, TWIN_VERSION, DomainParams, domain_params, parameter_table

__all__ = ["DOMAINS", "FIBSEM", "PARAMS", "SNEMI", "TWIN_VERSION", "DomainParams", "default_workers",
           "domain_params", "iter_blocks", "make_volume", "parameter_table"]
