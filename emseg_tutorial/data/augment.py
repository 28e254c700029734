"""The paper's random jitter: intensity changes that turn M2 into M3.

The paper fine-tunes its boundary model for ten more iterations on source slices with random
jitter, because the target's intensity and resolution vary from slice to slice. It does not
list the transforms; this module uses the usual ones for EM, each drawn independently for
every patch and applied with probability ``p`` to [0, 1] intensities:

* brightness: ``x + b``, ``b ~ U(-brightness, brightness)``;
* contrast: ``(x - mean) * c + mean``, ``c ~ U(1 - contrast, 1 + contrast)``;
* gamma: ``x ** g``, ``log g ~ U(-log gamma, log gamma)``;
* blur: Gaussian of ``sigma ~ U(0, blur)`` pixels;
* noise: additive Gaussian of standard deviation ``U(0, noise)``.

The result is clipped to [0, 1]. :meth:`Jitter.apply_torch` is the same jitter on torch tensors
(drawn with a ``torch.Generator`` on the tensors' device, for
:class:`~emseg_tutorial.data.device_patches.DevicePatchSampler`); both draw their parameters
with :meth:`Jitter.draw`, the one definition of the ranges and probabilities.

Examples
--------
>>> import numpy as np
>>> x = np.full((2, 8, 8), 0.5, np.float32)
>>> y = Jitter()(x, np.random.default_rng(0))
>>> y.shape, bool((y >= 0).all() and (y <= 1).all())
((2, 8, 8), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    p : float
        Probability that each transform is applied to a patch.
    """

    brightness: float = 0.15
    contrast: float = 0.35
    gamma: float = 1.8
    blur: float = 1.5
    noise: float = 0.08
    p: float = 0.8

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"jitter {name} must be >= 0, got {value}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"jitter p must be in [0, 1], got {self.p}")
        if self.gamma and self.gamma < 1:
            raise ValueError(f"jitter gamma is a range factor >= 1 (or 0 for off), got {self.gamma}")

    def draw(self, n: int, uniform, coin) -> dict:
        """Per-patch parameters of the five transforms: the one definition of their ranges.

        ``uniform(lo, hi)`` draws ``n`` values uniform in ``[lo, hi)`` and ``coin()`` ``n``
        booleans, True with probability :attr:`p`; the numpy and torch jitters pass their own.
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
            out["log_gamma"] = uniform(-np.log(self.gamma), np.log(self.gamma))
            out["gamma_on"] = coin()
        if self.contrast:
            out["contrast"] = uniform(1 - self.contrast, 1 + self.contrast)
            out["contrast_on"] = coin()
        if self.brightness:
            on = coin()
            out["shift"] = on * uniform(-self.brightness, self.brightness)
        if self.noise:
            on = coin()
            out["noise_sd"] = on * uniform(0, self.noise)
        return out

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32).copy()
        n = x.shape[0]
        d = self.draw(n, lambda lo, hi: rng.uniform(lo, hi, n), lambda: rng.random(n) < self.p)
        col = lambda v: np.asarray(v)[:, None, None]  # noqa: E731

        if "sigma" in d:
            for i in np.flatnonzero(d["sigma"] > MIN_BLUR):  # loop over a handful of patches, not pixels
                x[i] = ndi.gaussian_filter(x[i], d["sigma"][i])
        if "log_gamma" in d:
            x = np.where(col(d["gamma_on"]), np.clip(x, 0, 1) ** col(np.exp(d["log_gamma"])), x)
        if "contrast" in d:
            mean = x.mean(axis=(1, 2), keepdims=True)
            x = np.where(col(d["contrast_on"]), (x - mean) * col(d["contrast"]) + mean, x)
        if "shift" in d:
            x = x + col(d["shift"])
        if "noise_sd" in d:
            x = x + col(d["noise_sd"]) * rng.standard_normal(x.shape, dtype=np.float32)
        return np.clip(x, 0.0, 1.0).astype(np.float32)

    def apply_torch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The same jitter on a ``(B, Y, X)`` tensor, drawn with ``generator`` on its device.

        Same parameters and order of transforms as calling the jitter on an array (one
        :meth:`draw`); the blur is a per-patch separable convolution
        (:func:`gaussian_blur_torch`). Nothing is read back to the host.

        Examples
        --------
        >>> x = torch.full((2, 8, 8), 0.5)
        >>> y = Jitter().apply_torch(x, torch.Generator().manual_seed(0))
        >>> y.shape, bool(((y >= 0) & (y <= 1)).all())
        (torch.Size([2, 8, 8]), True)
        """
        x = batch.to(torch.float32)
        n, device = x.shape[0], x.device
        rand = lambda: torch.rand(n, generator=generator, device=device)  # noqa: E731
        d = self.draw(n, lambda lo, hi: lo + (hi - lo) * rand(), lambda: rand() < self.p)
        col = lambda v: v[:, None, None]  # noqa: E731

        if "sigma" in d:
            x = gaussian_blur_torch(x, d["sigma"], self.blur)
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


#: Blur of at most this sigma (pixels) is skipped: the patch is left as it is.
MIN_BLUR = 0.3
#: Gaussian kernels reach ``TRUNCATE`` sigmas (as :func:`scipy.ndimage.gaussian_filter`).
TRUNCATE = 4.0


def _reflect(n: int, pad: int, device) -> torch.Tensor:
    """Indices of ``0..n`` padded by ``pad`` on both sides, mirrored as scipy's ``reflect`` mode
    (``d c b a | a b c d | d c b a``), for any ``pad``."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur_torch(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each patch of ``x`` ``(B, Y, X)`` with its own Gaussian of ``sigma[b]`` pixels.

    What :func:`scipy.ndimage.gaussian_filter` does (kernel to 4 sigmas, ``reflect`` borders),
    as two grouped 1D convolutions with kernels of the radius of ``max_sigma``; patches with
    ``sigma <= 0.3`` are left unchanged, as in the numpy jitter.

    Examples
    --------
    >>> x = torch.zeros(2, 9, 9); x[:, 4, 4] = 1
    >>> y = gaussian_blur_torch(x, torch.tensor([0.0, 1.0]), 1.5)
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
