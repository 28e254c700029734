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

The result is clipped to [0, 1].

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

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32).copy()
        n = x.shape[0]
        on = lambda: (rng.random(n) < self.p)[:, None, None]  # noqa: E731

        if self.blur:
            sigma = rng.uniform(0, self.blur, n) * on()[:, 0, 0]
            for i in np.flatnonzero(sigma > 0.3):  # loop over a handful of patches, not pixels
                x[i] = ndi.gaussian_filter(x[i], sigma[i])
        if self.gamma:
            g = np.exp(rng.uniform(-np.log(self.gamma), np.log(self.gamma), n))[:, None, None]
            x = np.where(on(), np.clip(x, 0, 1) ** g, x)
        if self.contrast:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast, n)[:, None, None]
            mean = x.mean(axis=(1, 2), keepdims=True)
            x = np.where(on(), (x - mean) * c + mean, x)
        if self.brightness:
            x = x + on() * rng.uniform(-self.brightness, self.brightness, n)[:, None, None]
        if self.noise:
            sd = on() * rng.uniform(0, self.noise, n)[:, None, None]
            x = x + sd * rng.standard_normal(x.shape, dtype=np.float32)
        return np.clip(x, 0.0, 1.0).astype(np.float32)
