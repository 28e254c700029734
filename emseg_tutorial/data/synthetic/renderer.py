"""The renderer: cells, walls, mitochondria, vesicles, intracellular membranes, textures and labels
of one sub-slice.

A :class:`_Renderer` does the per-volume set-up once (node grid, per-cell tables, texture
bank) and then renders any sub-slice of the volume from its own random stream, into scratch
buffers it owns (one renderer per thread).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ...labels import BOUNDARY, CYTOPLASM, GLIA, MITOCHONDRIA
from .geometry import _Geometry
from .numerics import (_blur2d, _dilate_cross, _disc_pixels, _gauss_taps, _slice_rng, _smooth_field,
                       _wave_grid, _wave_points, _walls)
from .params import DomainParams

#: Node spacing (pixels) of the coarse grid on which cell ids are computed exactly.
_G = 4
#: Nodes per side of the tiles that share one list of candidate seeds.
_TILE = 4
#: Sub-slices (at least) that share one set of candidate lists.
_GROUP = 8

_FINE_TAPS = np.array([1, 4, 6, 4, 1], np.float32) / 16  # binomial, variance 1 (sigma 1.0)
_GRAIN_TAPS = np.array([0.18, 0.64, 0.18], np.float32)  # variance 0.36 (sigma 0.6)
# Scales so that the textures keep the standard deviation of version 1's Gaussian-filtered noise.
_FINE_GAIN = 2.5 * float(np.sum(_gauss_taps(1.0) ** 2) / np.sum(_FINE_TAPS ** 2))
_GRAIN_GAIN = 1.6 * float(np.sum(_gauss_taps(0.6) ** 2) / np.sum(_GRAIN_TAPS ** 2))
#: Texture fields are this many pixels larger than a slice: the range of the per-slice offsets.
_BANK_MARGIN = 32


#: Membrane strength by pixel kind: 0 away from walls, on a 4-neighbour of a wall, on a wall
#: (what a 3-tap Gaussian of sigma 0.7 over the wall mask, times 1.6 and capped at 1, gives on
#: and beside a 2-pixel wall; the microscope's blur smooths it afterwards).
_MEMBRANE_LEVELS = np.array([0.0, 0.32, 1.0], np.float32)



class _Renderer:
    """Renders sub-slices of one volume: the per-volume set-up is done once."""

    def __init__(self, p: DomainParams, geo: _Geometry, shape: tuple[int, int, int], seed: int):
        self.p, self.geo, self.seed = p, geo, seed
        _, self.ny, self.nx = shape
        g, t = _G, _TILE
        # Node grid covering the slice, padded to whole tiles.
        self.nby = -(-self.ny // g)
        self.nbx = -(-self.nx // g)
        nyn = -(-(self.nby + 1) // t) * t
        nxn = -(-(self.nbx + 1) // t) * t
        self.node_y = np.arange(nyn, dtype=np.float64) * g
        self.node_x = np.arange(nxn, dtype=np.float64) * g
        self.ys = np.arange(self.ny, dtype=np.float64)
        self.xs = np.arange(self.nx, dtype=np.float64)
        self.small = np.flatnonzero(geo.radius == 0)
        self.dend = np.flatnonzero(geo.radius > 0)
        self.small32 = self.small.astype(np.int32)
        self.dmax = float(np.abs(geo.warp_amp).sum(0).max())  # bound on the displacement
        # Bilinear weights of the g x g pixels of a block from its 4 corner nodes (00, 01, 10, 11).
        u = np.arange(g) / g
        wy, wx = np.meshgrid(u, u, indexing="ij")
        self.weights = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx],
                                -1).reshape(g * g, 4)
        self._cand = None
        self._k = 16
        self._buffers: dict = {}
        self._textures: tuple | None = None
        self.keep_cells = True  # False: cell ids live in a scratch buffer (not returned by blocks)
        # Per-cell tables: intensity (class mean plus staining) and label code.
        it = p.intensity
        self.cell_base = np.where(geo.glia, it["glia"], it["cytoplasm"]).astype(np.float32) + geo.stain
        self.cell_code = np.where(geo.glia, GLIA, CYTOPLASM).astype(np.uint8)

    def buf(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A scratch array kept between calls: fresh large arrays cost page faults every time."""
        a = self._buffers.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._buffers[name] = np.empty(shape, dtype)
        return a

    # -- cell ids -----------------------------------------------------------------------
    def _tile_view(self, a: np.ndarray) -> np.ndarray:
        """Node array ``(NY, NX)`` as ``(tiles, nodes per tile)``."""
        t = _TILE
        nyn, nxn = a.shape
        return a.reshape(nyn // t, t, nxn // t, t).transpose(0, 2, 1, 3).reshape(-1, t * t)

    def _group(self, s: int) -> int:
        """Index of the group of sub-slices that share candidate lists (a section, at least 4)."""
        return s // max(self.p.z_factor, _GROUP)

    def _candidates(self, grp: int):
        """Candidate seeds of every node tile, valid for all sub-slices of group ``grp``.

        With ``c`` a tile's centre and ``rad`` its radius at the group's middle sub-slice, ``d1``
        the distance from ``c`` to the nearest seed there, ``dq`` how far displaced nodes move and
        ``m_j`` how far seed ``j`` moves within the group, the nearest seed of any node of the tile
        at any sub-slice of the group is within ``2 (rad + dq) + d1 + m_1 + m_j`` of ``c``. So
        the lists are exact, and the cell ids do not depend on how sub-slices are grouped.
        Returns the tile centres, candidate lists and their validity, and the node displacements
        of the group's sub-slices.
        """
        if self._cand is not None and self._cand[0] == grp:
            return self._cand[1]
        geo, n = self.geo, max(self.p.z_factor, _GROUP)
        subs = range(grp * n, grp * n + n)
        sc = grp * n + n // 2
        disp = {s: _wave_grid(geo.warp_k, geo.warp_phase, geo.warp_amp, s, self.node_y, self.node_x)
                for s in subs}
        d = disp[sc] if sc in disp else _wave_grid(geo.warp_k, geo.warp_phase, geo.warp_amp, sc,
                                                   self.node_y, self.node_x)
        dq = max(float(np.sqrt(((disp[s] - d) ** 2).sum(0)).max()) for s in subs)
        ty = self._tile_view(self.node_y[:, None] + d[0])
        tx = self._tile_view(self.node_x[None, :] + d[1])
        cy, cx = ty.mean(1), tx.mean(1)
        rad = np.sqrt(((ty - cy[:, None]) ** 2 + (tx - cx[:, None]) ** 2).max(1))
        if not len(self.small):
            cand = (cy, cx, np.zeros((len(cy), 0), np.int64), np.zeros((len(cy), 0), bool), disp,
                    np.arange(len(cy)), np.zeros(0, np.int64))
            self._cand = (grp, cand)
            return cand
        sp = geo.seeds(sc)[self.small]
        move = np.max([np.sqrt(((geo.seeds(s)[self.small] - sp) ** 2).sum(1)) for s in subs], 0)
        tree = cKDTree(sp)
        centres = np.stack([cy, cx], 1)
        kk = min(self._k, len(sp))
        slack = float(move.max())
        dist, idx = tree.query(centres, k=kk)
        dist, idx = dist.reshape(len(cy), kk), idx.reshape(len(cy), kk)
        need = dist[:, 0] + 2 * (rad + dq) + move[idx[:, 0]]
        short = np.flatnonzero(dist[:, -1] <= need + slack)
        while len(short) and kk < len(sp):  # the few tiles whose list may be too short
            kk = min(2 * kk, len(sp))
            d2, i2 = tree.query(centres[short], k=kk)
            dist = np.pad(dist, ((0, 0), (0, kk - dist.shape[1])), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, kk - idx.shape[1])))
            dist[short], idx[short] = d2.reshape(len(short), kk), i2.reshape(len(short), kk)
            short = short[dist[short, -1] <= need[short] + slack]
        keep = dist - move[idx] <= need[:, None]
        self._k = max(8, int(np.percentile(keep.sum(1), 95)) + 4)  # initial list length next time
        # Valid candidates first, so the lists can be cut at the longest one.
        order = np.argsort(~keep, axis=1, kind="stable")
        keep = np.take_along_axis(keep, order, 1)
        idx = np.take_along_axis(idx, order, 1)
        count = keep.sum(1)
        kmax = int(count.max())
        perm = np.argsort(-count, kind="stable")
        longer = (count[:, None] > np.arange(kmax)).sum(0)  # tiles with more than j candidates
        cand = (cy, cx, idx[:, :kmax], keep[:, :kmax], disp, perm, longer)
        self._cand = (grp, cand)
        return cand

    def _nodes(self, s: int, seeds: np.ndarray):
        """Displaced node positions, nearest ordinary seed and label (with dendrites) of every node."""
        geo = self.geo
        cy, cx, idx, keep, disp = self._candidates(self._group(s))[:5]
        d = disp[s]
        qy = self.node_y[:, None] + d[0]
        qx = self.node_x[None, :] + d[1]
        nyn, nxn = qy.shape
        vor = np.zeros((nyn, nxn), np.int32)
        if len(self.small):
            sp = seeds[self.small]
            # Tiles in decreasing order of list length: candidate j is then a prefix of them.
            perm, longer = self._cand[1][5], self._cand[1][6]
            cy, cx, idx, keep = cy[perm], cx[perm], idx[perm], keep[perm]
            # Coordinates relative to the tile centre keep float32 exact enough.
            ry = (self._tile_view(qy)[perm] - cy[:, None]).astype(np.float32)
            rx = (self._tile_view(qx)[perm] - cx[:, None]).astype(np.float32)
            oy = (sp[idx, 0] - cy[:, None]).astype(np.float32)
            ox = (sp[idx, 1] - cx[:, None]).astype(np.float32)
            best = np.full(ry.shape, np.inf, np.float32)
            arg_sorted = np.zeros(ry.shape, np.int64)
            for j in range(idx.shape[1]):
                n = longer[j]
                dd = (ry[:n] - oy[:n, j, None]) ** 2 + (rx[:n] - ox[:n, j, None]) ** 2
                closer = dd < best[:n]
                np.copyto(best[:n], dd, where=closer)
                np.copyto(arg_sorted[:n], idx[:n, j, None], where=closer)
            arg = np.empty_like(arg_sorted)
            arg[perm] = arg_sorted
            t = _TILE
            vor = (self.small32[arg].reshape(nyn // t, nxn // t, t, t).transpose(0, 2, 1, 3)
                   .reshape(nyn, nxn))
        lab = vor
        if len(self.dend):
            # Dendrites are discs painted over the cells, later ones on top: rasterise each disc
            # (grown by the displacement bound) on the node grid, then test the displaced nodes.
            g, dm = _G, self.dmax
            r = geo.radius[self.dend]
            c = seeds[self.dend]
            which, pix = _disc_pixels(c[:, 0] / g, c[:, 1] / g, (r + dm) / g + 1, nyn, nxn)
            hit = ((qy.reshape(-1)[pix] - c[which, 0]) ** 2 + (qx.reshape(-1)[pix] - c[which, 1]) ** 2
                   <= r[which] ** 2)
            top = np.full(nyn * nxn, -1, np.int32)
            np.maximum.at(top, pix[hit], self.dend[which[hit]])
            lab = np.where(top >= 0, top, vor.reshape(-1)).reshape(nyn, nxn)
        return qy, qx, vor, lab

    def _refine(self, by: np.ndarray, bx: np.ndarray, qy: np.ndarray, qx: np.ndarray,
                vor: np.ndarray, lab: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Cell ids ``(m, g * g)`` of the pixels of the mixed blocks ``(by, bx)`` (contiguous node arrays)."""
        g = _G
        w = qy.shape[1]
        f = (by * w + bx)[:, None] + np.array([0, 1, w, w + 1])  # flat index of the 4 corners
        py = np.take(qy.reshape(-1), f, mode="clip")  # (m, 4 corners)
        px = np.take(qx.reshape(-1), f, mode="clip")
        ry, rx = py[:, :1], px[:, :1]  # relative coordinates keep float32 exact enough
        py, px = (py - ry).astype(np.float32), (px - rx).astype(np.float32)
        wt = self.weights.T.astype(np.float32)  # (4 corners, g * g pixels)
        cand = np.take(vor.reshape(-1), f, mode="clip").astype(np.int32)  # (m, 4 candidates)
        first = cand[:, 0]
        other = np.where(cand[:, 1] != first, cand[:, 1], np.where(cand[:, 2] != first, cand[:, 2], cand[:, 3]))
        many = (cand != first[:, None]) & (cand != other[:, None])
        # Squared distances at the corners, interpolated: the quadratic term |q|^2 is common to
        # all seeds, so comparing these is comparing distances to the bilinear q. Blocks with
        # two seeds need one difference; the few with more compare every corner's seed.

        seed_y, seed_x = np.ascontiguousarray(seeds[:, 0]), np.ascontiguousarray(seeds[:, 1])

        def dist2(ids, rows=slice(None)):
            sy = (np.take(seed_y, ids, mode="clip")[:, None] - ry[rows]).astype(np.float32)
            sx = (np.take(seed_x, ids, mode="clip")[:, None] - rx[rows]).astype(np.float32)
            return (py[rows] - sy) ** 2 + (px[rows] - sx) ** 2

        diff = (dist2(other) - dist2(first)) @ wt  # (m, g * g)
        best = np.where(diff < 0, other[:, None], first[:, None])
        rows = np.flatnonzero(many.any(1))
        if len(rows):
            besth = dist2(cand[rows, 0], rows) @ wt
            sub = np.repeat(cand[rows, :1], g * g, 1)
            for c in range(1, 4):
                h = dist2(cand[rows, c], rows) @ wt
                closer = h < besth
                np.copyto(besth, h, where=closer)
                np.copyto(sub, cand[rows, c, None], where=closer)
            best[rows] = sub
        corner_lab = np.take(lab.reshape(-1), f, mode="clip").astype(np.int32)
        if len(self.dend):
            isd = self.geo.radius[corner_lab] > 0
            rows = np.flatnonzero(isd.any(1))
            if len(rows):
                # Each dendrite of a block's corners once, in increasing id (later ones on top).
                cl = np.where(isd[rows], corner_lab[rows], -1)
                cl.sort(1)
                top = np.full((len(rows), g * g), -1, np.int32)
                for c in range(4):
                    sel = np.flatnonzero((cl[:, c] >= 0) & ((cl[:, c] != cl[:, c - 1]) if c else True))
                    if not len(sel):
                        continue
                    lc, rr = cl[sel, c], rows[sel]
                    r2 = (self.geo.radius[lc] ** 2)[:, None]
                    ey = (seeds[lc, 0, None] - ry[rr]).astype(np.float32)
                    ex = (seeds[lc, 1, None] - rx[rr]).astype(np.float32)
                    e = ((py[rr] - ey) ** 2 + (px[rr] - ex) ** 2 - r2) @ wt
                    top[sel] = np.where(e <= 0, lc[:, None], top[sel])
                best[rows] = np.where(top >= 0, top, best[rows])
        return best

    def cells(self, s: int, seeds: np.ndarray, keep: bool = True) -> np.ndarray:
        """Cell id (int32) of every pixel of sub-slice ``s``.

        Cells are the Voronoi regions of the ordinary seeds in displaced coordinates
        ``q = p + warp(p)``, with dendrite discs painted on top. Ids are exact on a node grid
        every ``_G`` pixels; a block whose four corner nodes agree is filled with that id (cells
        are convex in ``q``), and in the other blocks every pixel takes the nearest of its corner
        nodes' seeds, with ``q`` interpolated bilinearly inside the block.
        """
        g, nby, nbx = _G, self.nby, self.nbx
        qy, qx, vor, lab = self._nodes(s, seeds)  # node arrays, at least (nby + 1, nbx + 1)
        l00, l01 = lab[:nby, :nbx], lab[:nby, 1:nbx + 1]
        l10, l11 = lab[1:nby + 1, :nbx], lab[1:nby + 1, 1:nbx + 1]
        shape = (nby, g, nbx, g)
        cell = np.empty(shape, np.int32) if keep else self.buf("cells", shape, np.int32)
        # Every block takes its first corner's id: the g ids of a block row are copied as one
        # 16-byte item (g = 4 int32), four times faster than broadcasting int32s.
        if g * cell.itemsize == 16:
            row = np.repeat(np.ascontiguousarray(l00, dtype=cell.dtype)[..., None], g, -1).view("V16")  # (nby, nbx, 1)
            cell.view("V16")[...] = row[:, None]
        else:
            cell[...] = l00[:, None, :, None]
        by, bx = np.nonzero((l00 != l01) | (l00 != l10) | (l00 != l11))
        if len(by):
            best = self._refine(by, bx, qy, qx, vor, lab, seeds)
            # Flat positions of the blocks' pixels in the (nby, g, nbx, g) layout.
            offsets = (np.arange(g)[:, None] * (nbx * g) + np.arange(g)).ravel()
            np.put(cell, (by * (g * nbx * g) + bx * g)[:, None] + offsets, best, mode="clip")
        return cell.reshape(nby * g, nbx * g)[:self.ny, :self.nx]

    # -- one sub-slice -------------------------------------------------------------------
    def _centres(self, s: int, qy: np.ndarray, qx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pixels whose displaced positions are ``(qy, qx)``: ``p = q - warp(p)``, two
        fixed-point steps."""
        geo = self.geo
        py, px = qy, qx
        for _ in range(2):
            w = _wave_points(geo.warp_k, geo.warp_phase, geo.warp_amp, s, py, px)
            py, px = qy - w[0], qx - w[1]
        return py, px

    def _mito(self, s: int, seeds: np.ndarray, cell: np.ndarray, near_wall: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat indices of the mitochondrion pixels of sub-slice ``s``, which are on the rim
        (the outer 28 % of the radius), and their rows and columns."""
        geo, ny, nx = self.geo, self.ny, self.nx
        m = geo.mito
        active = np.flatnonzero(np.abs(m[:, 1] - s) < m[:, 2])
        if not len(active):
            empty = np.empty(0, np.int64)
            return empty, np.empty(0, bool), empty, empty
        m = m[active]
        r = m[:, 3] * np.sqrt(np.maximum(1.0 - ((s - m[:, 1]) / m[:, 2]) ** 2, 0.0))
        ok = r >= 1.0
        m, r = m[ok], r[ok]
        cid = m[:, 0].astype(np.int64)
        py, px = self._centres(s, seeds[cid, 0] + m[:, 4], seeds[cid, 1] + m[:, 5])
        which, pix = _disc_pixels(py, px, r, ny, nx)
        ok = (cell.reshape(-1)[pix] == cid[which]) & ~near_wall[pix]
        which, pix = which[ok], pix[ok]
        yy, xx = np.divmod(pix, nx)
        rim = (yy - py[which]) ** 2 + (xx - px[which]) ** 2 > (0.72 * r[which]) ** 2
        return pix, rim, yy, xx

    def _vesicles(self, s: int, seeds: np.ndarray, cell: np.ndarray, near_wall: np.ndarray) -> np.ndarray:
        """Flat indices of the vesicle pixels of sub-slice ``s`` (inside their cell, off walls)."""
        v = self.geo.vesicle
        if not len(v):
            return np.empty(0, np.int64)
        v = v[np.abs(v[:, 1] - s) < v[:, 2]]
        r = np.sqrt(np.maximum(v[:, 2] ** 2 - (s - v[:, 1]) ** 2, 0.0))
        v, r = v[r >= 0.7], r[r >= 0.7]
        cid = v[:, 0].astype(np.int64)
        py, px = self._centres(s, seeds[cid, 0] + v[:, 3], seeds[cid, 1] + v[:, 4])
        which, pix = _disc_pixels(py, px, r, self.ny, self.nx)
        return pix[(cell.reshape(-1)[pix] == cid[which]) & ~near_wall[pix]]

    def sub_slice(self, s: int, fine: np.ndarray, grain: np.ndarray, shade: np.ndarray,
                  fade: np.ndarray | None, er: np.ndarray | None, want_labels: bool, out: np.ndarray):
        """Render sub-slice ``s``: clean image into ``out`` (float32), codes and cell ids if asked.

        ``fine``, ``grain``, ``shade``, ``fade`` and ``er`` may be views.
        """
        p, geo, ny, nx = self.p, self.geo, self.ny, self.nx
        seeds = geo.seeds(s)
        cell = self.cells(s, seeds, keep=want_labels and self.keep_cells)
        wall = _walls(cell, p.wall_px, out=self.buf("wall", (ny, nx), bool), tmp=self.buf("btmp", (ny, nx), bool))
        it, tx = p.intensity, p.texture
        # Cytoplasm and glia: each cell's own intensity (class and staining), one texture.
        image = np.take(self.cell_base, cell, out=out, mode="clip")
        image += fine
        image += shade
        f1 = self.buf("f1", (ny, nx))
        flat = image.reshape(-1)
        near_wall = _dilate_cross(wall, out=self.buf("near", (ny, nx), bool)).reshape(-1)
        # Intracellular membranes: thin dark line fragments inside cells (off the walls).
        if er is not None:
            off = np.logical_not(near_wall.reshape(ny, nx), out=self.buf("off", (ny, nx), bool))
            np.subtract(np.float32(it["membrane"]), image, out=f1)
            f1 *= er
            f1 *= off
            image += f1
        # Vesicles: dark dots, most of the way to the membrane intensity.
        ves_px = self._vesicles(s, seeds, cell, near_wall)
        if len(ves_px):
            flat[ves_px] += np.float32(0.7) * (np.float32(it["membrane"]) - flat[ves_px])
        # Mitochondria: discs in displaced coordinates, inside their own cell, off the walls,
        # with an optional dark rim (their outer membrane).
        mito_px, rim, yy, xx = self._mito(s, seeds, cell, near_wall)
        if len(mito_px):
            phase = _slice_rng(self.seed, p.name, s).uniform(0, 2 * np.pi)
            cristae = np.sin(np.float32(0.9) * (yy + xx).astype(np.float32) + np.float32(phase))
            value = it["mito"] + tx["mito"] * (0.6 * cristae + grain[yy, xx])
            if p.mito_rim:
                value[rim] += p.mito_rim * (it["membrane"] - value[rim])
            flat[mito_px] = value
        # Membranes: dark lines centred on the walls, a little wider than the label (one level
        # on the wall, a lower one beside it), faded along faint stretches.
        index = np.add(wall.view(np.uint8), near_wall.reshape(ny, nx).view(np.uint8),
                       out=self.buf("u1", (ny, nx), np.uint8))
        membrane = np.take(_MEMBRANE_LEVELS, index, out=self.buf("f2", (ny, nx)), mode="clip")
        if fade is not None:
            membrane *= fade
        np.subtract(np.float32(it["membrane"]), image, out=f1)
        f1 *= membrane
        image += f1
        if not want_labels:
            return None, None
        codes = np.take(self.cell_code, cell, mode="clip").reshape(-1)
        codes[mito_px] = MITOCHONDRIA
        codes = codes.reshape(ny, nx)
        # codes[wall] = BOUNDARY as byte arithmetic (a boolean-mask write is several times slower).
        over = np.subtract(codes, np.uint8(BOUNDARY), out=self.buf("u2", (ny, nx), np.uint8))
        over *= wall.view(np.uint8)
        codes -= over
        return codes, cell

    def textures(self, z: int):
        """Fine and grain textures, shading, membrane fade and intracellular membranes shared by
        the sub-slices of returned slice ``z``.

        The textures are windows of two fields made once per volume (a bank, :meth:`_bank`),
        at a random offset per slice: blurred noise shifted by a few pixels is uncorrelated with
        itself, so neighbouring slices get independent-looking textures for the price of a view.
        """
        p, geo, ny, nx = self.p, self.geo, self.ny, self.nx
        fine_bank, grain_bank, fade_bank, er_bank = self._bank()
        oy, ox, fy, fx = _slice_rng(self.seed, p.name, 2_000_000 + z).integers(0, _BANK_MARGIN + 1, 4)
        fine = fine_bank[oy:oy + ny, ox:ox + nx]
        grain = grain_bank[oy:oy + ny, ox:ox + nx]
        fade = None if fade_bank is None else fade_bank[fy:fy + ny, fx:fx + nx]
        er = None
        if er_bank is not None:  # its own stream: domains without intracellular membranes keep their offsets
            ey, ex = _slice_rng(self.seed, p.name, 4_000_000 + z).integers(0, _BANK_MARGIN + 1, 2)
            er = er_bank[ey:ey + ny, ex:ex + nx]
        s = z * p.z_factor + p.z_factor // 2
        shade = _wave_grid(geo.tex_k, geo.tex_phase, geo.tex_amp[:, None], s, self.ys, self.xs,
                           out=self.buf("shade", (1, ny, nx)))[0]
        shade *= np.float32(p.shading)
        return fine, grain, shade, fade, er

    def _bank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The volume's texture fields, ``_BANK_MARGIN`` pixels larger than a slice each way.

        Uniform noise (cheap to draw; blurred, it is close to Gaussian) of unit variance, scaled
        like the mean of ``z_factor`` independent sub-slice textures, blurred into a fine
        (sigma 1) and a grain (sigma 0.6) texture; and the membrane fade: ``1 - membrane_fade *
        clip((z - 0.3) / 1.2, 0, 1)`` with ``z`` smooth noise of unit variance (plane waves 120 to
        300 nm long: about a wall segment), so about a third of the membranes are fainter than
        drawn and some 7 % lose all of ``membrane_fade``.
        """
        if self._textures is None:
            p, m = self.p, _BANK_MARGIN
            shape = (self.ny + m, self.nx + m)
            raw = _slice_rng(self.seed, p.name, 3_000_000).random(shape, dtype=np.float32)
            raw -= np.float32(0.5)
            raw *= np.float32(np.sqrt(12.0 / p.z_factor))
            tmp, mid = np.empty(shape, np.float32), np.empty(shape, np.float32)
            fine = _blur2d(raw, _FINE_TAPS, tmp=tmp, mid=mid)
            fine *= np.float32(_FINE_GAIN * p.texture["cytoplasm"])  # the texture of cytoplasm and glia
            grain = _blur2d(raw, _GRAIN_TAPS, tmp=tmp, mid=mid)
            grain *= np.float32(_GRAIN_GAIN)
            fade = None
            if p.membrane_fade:
                z = _smooth_field(_slice_rng(self.seed, p.name, 3_000_001), shape, (120.0, 300.0), p.voxel_size[2])
                z -= np.float32(0.3)
                np.clip(z, 0, 1.2, out=z)
                z *= np.float32(-p.membrane_fade / 1.2)
                z += np.float32(1.0)
                fade = z
            self._textures = (fine, grain, fade, self._er_bank(shape) if p.er_darkness else None)
        return self._textures

    def _er_bank(self, shape: tuple[int, int]) -> np.ndarray:
        """Darkness field of the intracellular membranes (``er_darkness`` at their centre lines).

        The lines are the zero set of smooth noise (plane waves ``er_wavelength_nm`` long: at 200
        to 500 nm a cell of the twins' size is crossed by one to three), drawn ``er_width_nm`` wide with a linear
        profile (``|f| / |grad f|`` is the distance to the zero set), and kept only where a second
        smooth field (waves 150 to 400 nm long) lies in its top ``er_cover`` fraction: fragments a
        wall segment long, with free ends, which a wall never has.
        """
        p, nm = self.p, self.p.voxel_size[2]
        f = _smooth_field(_slice_rng(self.seed, p.name, 3_000_002), shape, p.er_wavelength_nm, nm)
        gy, gx = np.gradient(f)
        dist = np.abs(f) / np.maximum(np.hypot(gy, gx), np.float32(1e-6))
        line = np.clip(1.0 - dist / np.float32(0.5 * p.er_width_nm / nm), 0.0, 1.0)
        keep = _smooth_field(_slice_rng(self.seed, p.name, 3_000_003), shape, (150.0, 400.0), nm)
        line[keep < np.quantile(keep, 1.0 - p.er_cover)] = 0.0
        line *= np.float32(p.er_darkness)
        return line.astype(np.float32)
