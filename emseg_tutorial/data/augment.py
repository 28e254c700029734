"""The paper's random jitter: intensity changes that turn M2 into M3.

The paper fine-tunes its boundary model for ten more iterations on source slices with random
jitter, because the target's intensity and resolution vary from slice to slice. It does not
list the transforms; this module uses the usual ones for EM, each drawn independently for
every patch and applied with probability ``p`` to [0, 1] intensities:

* brightness: ``x + b``, ``b ~ U(-brightness, brightness)``;
* contrast: ``(x - mean) * c + mean``, ``c ~ U(c0 - contrast, c0 + contrast)`` (``c0`` is
  ``contrast_centre``, 1 by default);
* gamma: ``x ** g``, ``log g ~ U(log g0 - log gamma, log g0 + log gamma)`` (``g0`` is
  ``gamma_centre``, 1 by default);
* blur: Gaussian of ``sigma ~ U(0, blur)`` pixels;
* noise: additive Gaussian of standard deviation ``U(0, noise)``.

The result is clipped to [0, 1].

How the default ranges are fixed
--------------------------------
Without looking at the target: the ranges follow one rule from the *source* image alone
(:meth:`Jitter.from_source`). With ``sd`` the standard deviation of the source's [0, 1]
intensities, ``n`` its pixel noise (robust estimate from neighbouring-pixel differences) and
``b`` its point-spread blur in pixels (the source twin's 0.7):

* brightness ``sd`` and gamma ``log(0.5 - sd) / log(0.5)``: either moves mid-grey by one ``sd``;
* contrast ``2 sd``: the spread of intensities changes by up to twice the source's own relative
  spread;
* blur ``2 b``: at most twice the source's own blur;
* noise ``1.5 n``: at most one and a half times the source's own noise.

On the source twin (versions 3 and 4 draw the same source) the rule gives the defaults below
after rounding; a test checks it. The target's settings play no part (they may or may not fall in these ranges; chapter 4
reports which). :meth:`Jitter.unlike` is the opposite on purpose: an ablation whose ranges
exclude the target twin's settings (it knows them, for that reason only), to show what a
jitter that points the wrong way does. The jitter acts on torch tensors, drawn with a
``torch.Generator`` on the tensors' device (the patch sampler's own, on every device); its
parameters come from :meth:`Jitter.draw`, the one definition of the ranges and probabilities.

Beyond the paper: augmentation for training to convergence
-----------------------------------------------------------
The patch sampler always flips and turns (:mod:`.patches`). ``TrainConfig.augment`` may add two
more, off by default (``"flips"``, what the book's presets train with); training to convergence
(:mod:`emseg_tutorial.train.convergence`) adds the intensity one, from the ablation of
``benchmarks/convergence.py``:
``"flips+intensity"`` adds :data:`INTENSITY`, a mild :class:`Jitter` (gain, offset, gamma and
noise, on the image only); ``"flips+elastic"`` adds :class:`Elastic`, a smooth random
deformation of image, labels and weights alike; ``"all"`` both; ``"none"`` not even the flips
(:data:`AUGMENTS`, :func:`get_augment`). Both draw from the sampler's own generator, so a run
and its resumption see the same patches.

Examples
--------
>>> import torch
>>> x = torch.full((2, 8, 8), 0.5)
>>> y = Jitter()(x, torch.Generator().manual_seed(0))
>>> tuple(y.shape), bool(((y >= 0) & (y <= 1)).all())
((2, 8, 8), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from scipy import ndimage as ndi


@dataclass(frozen=True)
class Jitter:
    """Random intensity jitter of a batch of [0, 1] patches ``(B, Y, X)``.

    Parameters
    ----------
    brightness, contrast, gamma, blur, noise : float
        Ranges of the five transforms (see the module docstring); 0 switches one off.
    contrast_centre, gamma_centre : float
        Centres of the contrast and gamma ranges (1: symmetric around no change).
    p : float
        Probability that each transform is applied to a patch.
    """

    brightness: float = 0.15
    contrast: float = 0.3
    gamma: float = 1.5
    blur: float = 1.4
    noise: float = 0.13
    p: float = 0.8
    contrast_centre: float = 1.0
    gamma_centre: float = 1.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"jitter {name} must be >= 0, got {value}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"jitter p must be in [0, 1], got {self.p}")
        if self.gamma and self.gamma < 1:
            raise ValueError(f"jitter gamma is a range factor >= 1 (or 0 for off), got {self.gamma}")
        if self.contrast_centre <= 0 or self.gamma_centre <= 0:
            raise ValueError("jitter contrast_centre and gamma_centre must be > 0, got "
                             f"{self.contrast_centre} and {self.gamma_centre}")

    @classmethod
    def from_source(cls, image: np.ndarray, psf_sigma: float, p: float = 0.8) -> "Jitter":
        """The ranges the rule of the module docstring gives for a source image.

        Parameters
        ----------
        image : ndarray
            Source slices ``(Z, Y, X)`` or ``(Y, X)``, uint8 or [0, 1] floats.
        psf_sigma : float
            The source's point-spread blur in pixels.
        p : float
            Probability of each transform.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> j = Jitter.from_source(rng.normal(0.5, 0.1, (64, 64)).clip(0, 1), psf_sigma=1.0)
        >>> round(j.brightness, 2), round(j.blur, 1), 0.13 < j.noise < 0.17
        (0.1, 2.0, True)
        """
        x = np.asarray(image, dtype=np.float32)
        if np.asarray(image).dtype == np.uint8:
            x = x / np.float32(255.0)
        if x.ndim not in (2, 3) or x.size < 16:
            raise ValueError(f"image must be 2D or 3D with some pixels, got shape {x.shape}")
        if psf_sigma < 0:
            raise ValueError(f"psf_sigma must be >= 0, got {psf_sigma}")
        sd = float(x.std())
        if not 0 < sd < 0.5:
            raise ValueError(f"the image's standard deviation must be in (0, 0.5) of its range, got {sd:.3f}")
        diff = np.diff(x, axis=-1)
        noise = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))
        return cls(brightness=sd, contrast=2 * sd, gamma=float(np.log(0.5 - sd) / np.log(0.5)),
                   blur=2 * float(psf_sigma), noise=1.5 * noise, p=p)

    @classmethod
    def unlike(cls) -> "Jitter":
        """A jitter deliberately unlike the target twin: an ablation, not a default.

        The target twin darkens mid-tones (gamma 1.6), lowers contrast (gain 0.7), blurs
        (sigma 1.2) and adds noise (0.07); this jitter only brightens mid-tones (gamma 0.54 to
        0.78), only raises contrast (1.15 to 1.45 times), never blurs, never adds noise and
        does not shift brightness.

        Examples
        --------
        >>> j = Jitter.unlike()
        >>> j.blur, j.noise, j.gamma_centre * j.gamma < 1, j.contrast_centre - j.contrast > 1
        (0.0, 0.0, True, True)
        """
        return cls(brightness=0.0, contrast=0.15, contrast_centre=1.3, gamma=1.2, gamma_centre=0.65,
                   blur=0.0, noise=0.0)

    def draw(self, n: int, uniform, coin) -> dict:
        """Per-patch parameters of the five transforms: the one definition of their ranges.

        ``uniform(lo, hi)`` draws ``n`` values uniform in ``[lo, hi)`` and ``coin()`` ``n``
        booleans, True with probability :attr:`p` (:meth:`__call__` passes torch draws; the
        numpy reference of the tests passes numpy ones).
        Keys of transforms that are off are left out: ``sigma`` (0 where not blurred),
        ``log_gamma`` / ``gamma_on``, ``contrast`` / ``contrast_on``, ``shift`` (0 where not
        brightened) and ``noise_sd`` (0 where no noise).

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> d = Jitter(blur=0, noise=0).draw(3, lambda lo, hi: rng.uniform(lo, hi, 3), lambda: rng.random(3) < 0.8)
        >>> sorted(d)
        ['contrast', 'contrast_on', 'gamma_on', 'log_gamma', 'shift']
        """
        out = {}
        if self.blur:
            out["sigma"] = uniform(0, self.blur) * coin()
        if self.gamma:
            centre = np.log(self.gamma_centre)
            out["log_gamma"] = uniform(centre - np.log(self.gamma), centre + np.log(self.gamma))
            out["gamma_on"] = coin()
        if self.contrast:
            out["contrast"] = uniform(self.contrast_centre - self.contrast, self.contrast_centre + self.contrast)
            out["contrast_on"] = coin()
        if self.brightness:
            on = coin()
            out["shift"] = on * uniform(-self.brightness, self.brightness)
        if self.noise:
            on = coin()
            out["noise_sd"] = on * uniform(0, self.noise)
        return out

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Jitter a ``(B, Y, X)`` batch of [0, 1] patches, drawn with ``generator`` on its device.

        One :meth:`draw` of the parameters, then blur (a per-patch separable convolution,
        :func:`gaussian_blur`), gamma, contrast, brightness and noise, in that order; the result
        is float32, clipped to [0, 1], and ``batch`` is left untouched. Nothing is read back to
        the host.

        Examples
        --------
        >>> x = torch.full((2, 8, 8), 0.5)
        >>> y = Jitter(p=0)(x, torch.Generator().manual_seed(0))
        >>> bool(torch.equal(y, x))
        True
        """
        x = batch.to(torch.float32)
        n, device = x.shape[0], x.device
        rand = lambda: torch.rand(n, generator=generator, device=device)  # noqa: E731
        d = self.draw(n, lambda lo, hi: lo + (hi - lo) * rand(), lambda: rand() < self.p)
        col = lambda v: v[:, None, None]  # noqa: E731

        if "sigma" in d:
            x = gaussian_blur(x, d["sigma"], self.blur)
        if "log_gamma" in d:
            x = torch.where(col(d["gamma_on"]), x.clamp(0, 1) ** col(d["log_gamma"].exp()), x)
        if "contrast" in d:
            mean = x.mean(dim=(1, 2), keepdim=True)
            x = torch.where(col(d["contrast_on"]), (x - mean) * col(d["contrast"]) + mean, x)
        if "shift" in d:
            x = x + col(d["shift"])
        if "noise_sd" in d:
            x = x + col(d["noise_sd"]) * torch.randn(x.shape, generator=generator, device=device)
        return x.clamp(0.0, 1.0)


#: Named jitter configurations (what ``TrainConfig.jitter`` may name; ``True`` is ``"default"``).
JITTERS: dict[str, Jitter] = {"default": Jitter(), "unlike": Jitter.unlike()}


def get_jitter(spec: bool | str | None) -> Jitter | None:
    """The jitter a training config names: ``False``/``None`` none, ``True`` the default, or a
    name of :data:`JITTERS`.

    Examples
    --------
    >>> get_jitter(False) is None, get_jitter(True) == Jitter(), get_jitter("unlike").blur
    (True, True, 0.0)
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        return JITTERS["default"]
    if isinstance(spec, str) and spec in JITTERS:
        return JITTERS[spec]
    raise ValueError(f"jitter must be True, False or one of {sorted(JITTERS)}, got {spec!r}")


#: Blur of at most this sigma (pixels) is skipped: the patch is left as it is.
MIN_BLUR = 0.3
#: Gaussian kernels reach ``TRUNCATE`` sigmas (as :func:`scipy.ndimage.gaussian_filter`).
TRUNCATE = 4.0


def _reflect(n: int, pad: int, device) -> torch.Tensor:
    """Indices of ``0..n`` padded by ``pad`` on both sides, mirrored as scipy's ``reflect`` mode
    (``d c b a | a b c d | d c b a``), for any ``pad``."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each patch of ``x`` ``(B, Y, X)`` with its own Gaussian of ``sigma[b]`` pixels.

    What :func:`scipy.ndimage.gaussian_filter` does (kernel to 4 sigmas, ``reflect`` borders),
    as two grouped 1D convolutions with kernels of the radius of ``max_sigma``; patches with
    ``sigma <= 0.3`` are left unchanged, as in the numpy jitter.

    Examples
    --------
    >>> x = torch.zeros(2, 9, 9); x[:, 4, 4] = 1
    >>> y = gaussian_blur(x, torch.tensor([0.0, 1.0]), 1.5)
    >>> bool(torch.equal(y[0], x[0])), round(float(y[1].sum()), 5), bool(y[1, 4, 4] < 0.2)
    (True, 1.0, True)
    """
    n, ny, nx = x.shape
    radius = int(TRUNCATE * max_sigma + 0.5)
    if radius < 1:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype)[:, None]
    kernel = torch.exp(-0.5 * (offsets / s.clamp_min(1e-3)) ** 2)
    kernel = kernel * (offsets.abs() <= torch.floor(TRUNCATE * s + 0.5))  # each sigma's own radius
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = torch.where(s > MIN_BLUR, kernel, (offsets == 0).to(x.dtype))  # identity: not blurred
    k = 2 * radius + 1
    out = x[:, _reflect(ny, radius, x.device)][None]                     # (1, B, Y + 2r, X)
    out = torch.nn.functional.conv2d(out, kernel.view(n, 1, k, 1), groups=n)
    out = out[:, :, :, _reflect(nx, radius, x.device)]
    out = torch.nn.functional.conv2d(out, kernel.view(n, 1, 1, k), groups=n)
    return out[0]


# --------------------------------------------------------------------------- beyond the paper

#: The intensity augmentation of ``augment="flips+intensity"`` (and ``"all"``): about a third of
#: the default jitter's ranges (gain 0.9-1.1 about the patch mean, offset +-0.05, gamma
#: 1/1.15-1.15, noise sd up to 0.04 of the [0, 1] range), each with probability 0.8, and no blur
#: (which would widen the walls the weight maps are drawn for). Training and held-out slices of
#: a user's volume come from one microscope: their intensities differ less than two domains'.
#: Cost: a few elementwise passes over the batch on the device, nothing next to a U-Net step.
INTENSITY = Jitter(brightness=0.05, contrast=0.1, gamma=1.15, blur=0.0, noise=0.04, p=0.8)


@dataclass(frozen=True)
class Elastic:
    """Smooth random deformation of a batch of patches: the image, its labels and weights alike.

    Each patch gets its own displacement field: ``grid x grid`` control points whose two
    displacements are Gaussian of standard deviation ``sigma`` pixels (zero for a patch left
    undeformed, with probability ``1 - p``), upsampled to the patch by bicubic interpolation
    (``torch.nn.functional.interpolate``, corners aligned), all drawn with the sampler's
    generator. Every pixel ``(i, j)`` then reads its patch at ``(i + dy, j + dx)`` with
    :func:`scipy.ndimage.map_coordinates`, ``reflect`` borders: linear interpolation (order 1)
    for the image, nearest (order 0) for labels and weights, so every label code of the output
    is one of the input's and the ignored pixels stay ignored. A zero field gives the patch back
    exactly.

    Parameters
    ----------
    grid : int
        Control points per side (>= 2; 3 is the original U-Net's 3 x 3 grid).
    sigma : float
        Standard deviation of the control points' displacements in pixels (>= 0). With 3 px
        on control points 63 px apart (a 128-pixel patch) the field's slope is about 0.07, far
        from folding (slope 1): cells bend, walls stay walls.
    p : float
        Probability that a patch is deformed.

    Notes
    -----
    Cost per batch of ``B`` patches of ``P x P`` pixels (reasoned, not timed): the field is
    ``2 B P^2`` bicubic samples on the device; on the host, one ``map_coordinates`` call per
    tensor over the whole batch (a ``(B, P, P)`` array read at integer batch indices: 8 taps a
    pixel for the image, 1 for labels and weights), about 10 ms for 8 patches of 128^2 on one
    core. A CPU training step at the convergence sizes takes about 0.2 s (2250 steps in 8.6 min,
    ``benchmarks/results/convergence.txt``), so elastic adds about 5 %. On a GPU the batch goes
    to the host and back for it (one synchronisation per batch), which may cost as much as a
    step of a few milliseconds there.

    Examples
    --------
    >>> labels = torch.randint(-1, 4, (2, 16, 16))
    >>> out = Elastic(sigma=4.0)({"target": labels}, torch.Generator().manual_seed(0))
    >>> out["target"].dtype, set(out["target"].unique().tolist()) <= set(labels.unique().tolist())
    (torch.int64, True)
    """

    grid: int = 3
    sigma: float = 3.0
    p: float = 1.0

    def __post_init__(self):
        if not isinstance(self.grid, (int, np.integer)) or self.grid < 2:
            raise ValueError(f"elastic grid must be an integer >= 2, got {self.grid!r}")
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"elastic sigma must be a finite number of pixels >= 0, got {self.sigma!r}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"elastic p must be in [0, 1], got {self.p}")

    def displacements(self, n: int, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """``(n, 2, Y, X)`` float32 displacements (rows, then columns) in pixels, on ``generator``'s device."""
        device = generator.device
        coarse = torch.randn((n, 2, self.grid, self.grid), generator=generator, device=device) * self.sigma
        on = torch.rand(n, generator=generator, device=device) < self.p
        coarse = coarse * on[:, None, None, None]
        return torch.nn.functional.interpolate(coarse, size=tuple(shape), mode="bicubic", align_corners=True)

    def __call__(self, patches: Mapping[str, torch.Tensor], generator: torch.Generator, *,
                 smooth: tuple[str, ...] = ("image",)) -> dict[str, torch.Tensor]:
        """Deform every ``(B, Y, X)`` tensor of ``patches`` with the same field per patch.

        Keys in ``smooth`` are interpolated linearly, the others (labels, weights) take the
        nearest pixel; each result keeps its tensor's dtype and device; ``patches`` is left as
        it is.
        """
        if not patches:
            return {}
        shapes = {tuple(t.shape) for t in patches.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise ValueError(f"elastic deformation needs (B, Y, X) tensors of one shape, got shapes {sorted(shapes)}")
        n, ny, nx = next(iter(shapes))
        d = self.displacements(n, (ny, nx), generator).cpu().numpy().astype(np.float64)
        b, i, j = np.meshgrid(np.arange(n), np.arange(ny), np.arange(nx), indexing="ij", sparse=True)
        coords = np.stack(np.broadcast_arrays(b, i + d[:, 0], j + d[:, 1]))  # (3, B, Y, X) float64
        out = {}
        for key, tensor in patches.items():
            moved = ndi.map_coordinates(tensor.cpu().numpy(), coords, order=1 if key in smooth else 0, mode="reflect")
            out[key] = torch.from_numpy(moved).to(tensor.device)
        return out


@dataclass(frozen=True)
class Augment:
    """What one ``TrainConfig.augment`` value switches on: flips and turns, intensity, elastic."""

    flips: bool
    intensity: Jitter | None = None
    elastic: Elastic | None = None


#: The values of ``TrainConfig.augment`` (and ``train --augment``); ``"flips"`` is the default.
AUGMENTS: dict[str, Augment] = {
    "none": Augment(flips=False),
    "flips": Augment(flips=True),
    "flips+intensity": Augment(flips=True, intensity=INTENSITY),
    "flips+elastic": Augment(flips=True, elastic=Elastic()),
    "all": Augment(flips=True, intensity=INTENSITY, elastic=Elastic()),
}


def get_augment(name: str) -> Augment:
    """The :class:`Augment` of a ``TrainConfig.augment`` value (a key of :data:`AUGMENTS`).

    Examples
    --------
    >>> get_augment("flips").elastic is None, get_augment("all").intensity == INTENSITY
    (True, True)
    """
    if not isinstance(name, str) or name not in AUGMENTS:
        raise ValueError(f"augment must be one of {list(AUGMENTS)}, got {name!r}")
    return AUGMENTS[name]


IntensityFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def chain(*steps: IntensityFn | None) -> IntensityFn | None:
    """One ``(batch01, generator) -> batch01`` function applying the given ones in order (None
    ones skipped; None when none is left): the paper's jitter, then :data:`INTENSITY`.

    Examples
    --------
    >>> chain(None, None) is None, chain(None, INTENSITY) is INTENSITY
    (True, True)
    """
    present = [step for step in steps if step is not None]
    if len(present) < 2:
        return present[0] if present else None

    def chained(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in present:
            batch = step(batch, generator)
        return batch

    return chained
