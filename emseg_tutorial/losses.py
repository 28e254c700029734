"""Losses: per-pixel weighted cross-entropy, focal loss, soft Dice, and small adversarial helpers.

Targets here are class *indices* (``code - 1``), so the unlabelled code 0 becomes index ``-1``,
which every loss ignores (the patch samplers hand out such targets). Logits are
``(N, C, H, W)``, targets and weights ``(N, H, W)``.

Examples
--------
>>> import torch
>>> logits = torch.zeros(1, 2, 1, 2)
>>> target = torch.tensor([[[1, 0]]]) - 1    # codes 1, 0 -> indices 0, -1 (ignored)
>>> target
tensor([[[ 0, -1]]])
>>> round(weighted_cross_entropy(logits, target).item(), 4)  # log(2)
0.6931
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim < 3:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target must have shape {expected} for logits {tuple(logits.shape)}, "
                         f"got {tuple(target.shape)}")
    if target.dtype != torch.long:
        raise ValueError(f"target must be int64 class indices (code - 1), got {target.dtype}")


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with one weight per pixel, averaged over labelled pixels.

    Parameters
    ----------
    logits : Tensor, (N, C, H, W)
        Raw network outputs.
    target : Tensor of int64, (N, H, W)
        Class indices in ``0..C-1``; ``-1`` marks unlabelled pixels, which contribute nothing.
        Callers convert the label codes of files with ``code - 1``.
    weights : Tensor, (N, H, W), optional
        Non-negative per-pixel weights (the paper's entropy or distance maps); ``None`` weighs
        every pixel 1.

    Returns
    -------
    Tensor
        Scalar loss. 0 (still attached to the graph, zero gradients) when no pixel is labelled
        or all labelled weights are 0.

    Notes
    -----
    With per-pixel cross-entropy :math:`\\ell_i = -\\log \\mathrm{softmax}(z_i)_{y_i}` and the set
    :math:`L` of labelled pixels,

    .. math:: \\mathcal{L} = \\frac{\\sum_{i \\in L} w_i \\ell_i}{\\sum_{i \\in L} w_i}.

    This is a weighted *mean*, the same normalisation as PyTorch's class-weighted
    ``F.cross_entropy(..., weight=...)``; with uniform weights it equals the plain mean
    cross-entropy. The alternative divides by the number of labelled pixels, :math:`|L|`.
    That makes the loss (and so the step size) grow with the overall scale of the weight map:
    multiplying all weights by 10 is like a 10x learning rate, and a patch full of boundaries
    takes a bigger step than a patch of cytoplasm. Dividing by the weight sum keeps the loss
    in cross-entropy units whatever the weighting scheme, so entropy, distance and ratio maps
    differ only in which pixels matter, and one learning rate (the paper's 1e-4) fits all.

    Examples
    --------
    >>> logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])   # (1, 2, 1, 2)
    >>> target = torch.tensor([[[0, 1]]])
    >>> ce = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 3.0]]]))
    >>> round(ce.item(), 4)   # (1 * 0.1269 + 3 * 0.6931) / 4
    0.5516
    """
    _check_pair(logits, target)
    ce = F.cross_entropy(logits, target, reduction="none", ignore_index=IGNORE_INDEX)
    return _weighted_mean(ce, target, weights)


def _weighted_mean(per_pixel: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_pixel`` losses weighted by ``weights`` (default 1) over labelled pixels."""
    labelled = (target != IGNORE_INDEX).to(per_pixel.dtype)
    if weights is None:
        w = labelled
    else:
        if tuple(weights.shape) != tuple(target.shape):
            raise ValueError(f"weights must have the target's shape {tuple(target.shape)}, "
                             f"got {tuple(weights.shape)}")
        w = weights.to(per_pixel.dtype) * labelled
    # clamp instead of an `if total == 0` test: no host-device sync, and 0 / tiny == 0 with grad
    return (w * per_pixel).sum() / w.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
               gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy that fades on pixels already classified well.

    Parameters
    ----------
    logits : Tensor, (N, C, H, W)
        Raw network outputs.
    target : Tensor of int64, (N, H, W)
        Class indices in ``0..C-1``; ``-1`` marks unlabelled pixels, which contribute nothing
        (the convention of :func:`weighted_cross_entropy`).
    weights : Tensor, (N, H, W), optional
        Non-negative per-pixel weights; ``None`` weighs every labelled pixel 1.
    gamma : float
        Focusing exponent ``>= 0`` (the paper's default 2). ``0`` gives
        :func:`weighted_cross_entropy` exactly.

    Returns
    -------
    Tensor
        Scalar loss; 0 (attached to the graph) when no pixel is labelled or all weights are 0.

    Notes
    -----
    With :math:`p_i` the softmax probability of pixel :math:`i`'s true class and
    :math:`\\ell_i = -\\log p_i`,

    .. math:: \\mathcal{L} = \\frac{\\sum_{i \\in L} w_i (1 - p_i)^\\gamma \\ell_i}{\\sum_{i \\in L} w_i}.

    A pixel predicted right with :math:`p_i = 0.9` keeps :math:`0.1^2 = 1\\%` of its
    cross-entropy at :math:`\\gamma = 2`, so the many easy cytoplasm pixels stop drowning the few
    hard wall pixels: the imbalance is handled by the network's own confidence, without a map
    built from the labels. The normaliser is the weight sum, as in
    :func:`weighted_cross_entropy` (not the focal factors: the loss shrinks as training
    succeeds). Lin et al. also weight the classes (their :math:`\\alpha`); pass such weights
    as ``weights``. Reference: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss
    for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> logits = torch.tensor([[[[3.0, 0.0]], [[0.0, 0.0]]]])   # (1, 2, 1, 2)
    >>> target = torch.tensor([[[0, 1]]])
    >>> ce = weighted_cross_entropy(logits, target)
    >>> bool(torch.isclose(focal_loss(logits, target, gamma=0.0), ce))
    True
    >>> round(focal_loss(logits, target).item(), 4)   # (0.0474**2 * 0.0486 + 0.5**2 * 0.6931) / 2
    0.0867
    """
    _check_pair(logits, target)
    gamma = float(gamma)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    log_p = F.log_softmax(logits, dim=1)
    safe = torch.where(target == IGNORE_INDEX, 0, target)
    log_pt = log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    focal = -((1 - log_pt.exp()).clamp_min(0) ** gamma) * log_pt
    return _weighted_mean(focal, target, weights)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0,
              ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Soft multi-class Dice loss, ``1 - mean over classes of Dice``, on softmax probabilities.

    Parameters
    ----------
    logits : Tensor, (N, C, H, W)
        Raw network outputs.
    target : Tensor of int64, (N, H, W)
        Class indices; pixels equal to ``ignore_index`` are left out of every sum.
    eps : float
        Smoothing added to numerator and denominator; keeps classes absent from a batch
        finite (such a class scores Dice 1 when the network also predicts none of it).
    ignore_index : int
        Target value of unlabelled pixels.

    Returns
    -------
    Tensor
        Scalar loss in ``[0, 1]``.

    Notes
    -----
    For class :math:`c`, probabilities :math:`p` and one-hot targets :math:`g` summed over the
    labelled pixels of the whole batch,
    :math:`D_c = (2 \\sum p_c g_c + \\epsilon) / (\\sum p_c + \\sum g_c + \\epsilon)`.
    Averaging over classes gives every class the same say however few pixels it has, which
    is why Dice (Milletari et al., V-Net, 2016) is the usual baseline against class imbalance.

    Examples
    --------
    >>> target = torch.tensor([[[0, 1, -1]]])
    >>> perfect = 20 * F.one_hot(target.clamp(min=0), 2).permute(0, 3, 1, 2).float()
    >>> dice_loss(perfect, target).item() < 1e-6
    True
    """
    _check_pair(logits, target)
    n_classes = logits.shape[1]
    probs = logits.softmax(dim=1)
    labelled = target != ignore_index
    onehot = F.one_hot(torch.where(labelled, target, 0), n_classes).movedim(-1, 1).to(probs.dtype)
    mask = labelled.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * mask, onehot * mask
    dims = [0, *range(2, logits.ndim)]
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + eps) / (denominator + eps)
    return 1 - dice.mean()


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of discriminator ``logits`` against "real" (all ones).

    Examples
    --------
    >>> round(bce_real(torch.zeros(2, 1, 4, 4)).item(), 4)   # log(2)
    0.6931
    """
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of discriminator ``logits`` against "fake" (all zeros).

    Examples
    --------
    >>> bce_fake(torch.full((3,), -30.0)).item() < 1e-12
    True
    """
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def entropy_map(probs: torch.Tensor) -> torch.Tensor:
    """Per-pixel Shannon entropy of class probabilities, normalised to ``[0, 1]``.

    Parameters
    ----------
    probs : Tensor, (N, C, H, W)
        Softmax probabilities (summing to 1 over ``C``), ``C >= 2``.

    Returns
    -------
    Tensor, (N, H, W)
        :math:`-\\sum_c p_c \\log p_c / \\log C`: 0 for a confident (one-hot) pixel, 1 for a
        uniform one. ADVENT (Vu et al., 2019) minimises or aligns this map on the target
        domain.

    Notes
    -----
    :math:`0 \\log 0` is taken as 0; probabilities are clamped at the dtype's smallest normal
    number inside the log so gradients stay finite at exact zeros.

    Examples
    --------
    >>> probs = torch.tensor([[0.5, 1.0], [0.5, 0.0]]).reshape(1, 2, 1, 2)
    >>> entropy_map(probs)
    tensor([[[1., 0.]]])
    """
    if probs.ndim < 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, C, H, W) with C >= 2, got shape {tuple(probs.shape)}")
    tiny = torch.finfo(probs.dtype).tiny if probs.is_floating_point() else 1e-38
    entropy = (probs * -probs.clamp_min(tiny).log()).sum(dim=1)  # sign inside: no -0.0
    return entropy / math.log(probs.shape[1])


# --------------------------------------------------------------------------- divergence


class Diverged(ValueError):
    """A training or an adaptation whose losses or weights stopped being finite.

    The run is to blame, not its inputs: the message says where it happened, what was not
    finite and which settings to lower, by the library's names (``lr_g``);
    :meth:`message` names them another way (the command line passes its flags).

    Examples
    --------
    >>> err = Diverged("adaptation", "epoch 1, step 3", "loss_g is nan", {"lr_g": 1e30, "adv_weight": 1.0})
    >>> str(err)
    'adaptation diverged at epoch 1, step 3 (loss_g is nan): lower lr_g (now 1e+30) or adv_weight (now 1)'
    >>> err.message({"lr_g": "--lr-g", "adv_weight": "--adv-weight"})
    'adaptation diverged at epoch 1, step 3 (loss_g is nan): lower --lr-g (now 1e+30) or --adv-weight (now 1)'
    """

    def __init__(self, run: str, at: str, problem: str, settings: dict[str, float]):
        self.run, self.at, self.problem, self.settings = run, at, problem, dict(settings)
        super().__init__(self.message())

    def __reduce__(self):  # picklable with its fields (an exception's args are its message only)
        return type(self), (self.run, self.at, self.problem, self.settings)

    def message(self, names: dict[str, str] | None = None) -> str:
        """The one-line message, each setting named by ``names`` (default: its own name)."""
        names = names or {}
        shown = [f"{names.get(k, k)} (now {v:g})" for k, v in self.settings.items()]
        hint = ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown)
        return f"{self.run} diverged at {self.at} ({self.problem})" + (f": lower {hint}" if hint else "")


def first_non_finite(values: dict[str, list[float]]) -> tuple[int, str, float] | None:
    """``(index, key, value)`` of the first step whose value of some key is NaN or infinite.

    ``values`` maps each loss to its values, one per step (the same steps for every key).

    Examples
    --------
    >>> first_non_finite({"loss_d": [0.7, 0.6, float("inf")], "loss_g": [0.7, float("nan"), 1.0]})
    (1, 'loss_g', nan)
    >>> first_non_finite({"loss": [0.5, 0.4]}) is None
    True
    """
    steps = max((len(v) for v in values.values()), default=0)
    for i in range(steps):
        for key, series in values.items():
            if i < len(series) and not math.isfinite(series[i]):
                return i, key, series[i]
    return None


def non_finite_weights(*nets: torch.nn.Module | None) -> int | None:
    """Position in ``nets`` of the first network with a NaN or infinite weight or buffer, else None.

    One device synchronisation for all of them.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> non_finite_weights(net) is None
    True
    >>> with torch.no_grad():
    ...     _ = net.bias.fill_(float("nan"))
    >>> non_finite_weights(None, net)
    1
    """
    flags, owners = [], []
    for i, net in enumerate(nets):
        if net is None:
            continue
        tensors = [t for t in list(net.parameters()) + list(net.buffers()) if t.is_floating_point()]
        if tensors:
            flags.append(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
            owners.append(i)
    if not flags:
        return None
    ok = torch.stack(flags).cpu().tolist()
    return next((owner for owner, good in zip(owners, ok) if not good), None)
