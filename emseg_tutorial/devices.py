"""Picking the compute device and the precision networks run in; every device-dependent branch.

Everything runs on the CPU; CUDA (and Apple's MPS) are used when present. Mixed precision
(``precision="auto"``, the default of every trainer): on CUDA bfloat16 where the GPU supports
it (Ampere and later: A100, H100, L4), else float16 with a gradient scaler (T4, V100); on a CPU
with native bfloat16 instructions (AVX512-BF16 or AMX: recent Xeon and EPYC) bfloat16 autocast;
float32 on every other CPU and on MPS. ``precision="float32"`` turns it off. See
:class:`Precision`; the measured step times are in the README and ``benchmarks/``.

The branches a GPU takes, and where the CPU runs the same code:

* the patch sampler draws on the device itself on every device
  (:class:`~emseg_tutorial.data.patches.PatchSampler`);
* networks train channels-last on CUDA and the CPU (:func:`memory_format`);
* Adam is the fused implementation on every device whose PyTorch has one, the CPU included
  (:func:`adam`);
* the gradient scaler (:meth:`Precision.grad_scaler`) is a ``torch.amp.GradScaler`` of the
  device type, the CPU's included; only float16 autocast, which needs CUDA, enables it;
* ``torch.compile`` falls back to eager where it fails (:func:`compile_model`,
  :func:`eager_fallback`), on any device;
* random streams resume on a device of the same kind only (:func:`restore_generator`);
* deterministic kernels on the CPU only, and a fixed CPU thread count everywhere
  (:func:`make_reproducible`).

* prediction autocasts on CUDA and stays float32 on the CPU (:func:`inference_precision`, so CPU
  scores match an exported model run in plain PyTorch); the autocast branch is the training
  one, and the tests run prediction through it on the CPU with bfloat16.

Only CUDA: float16 autocast (refused on a CPU: its float16 kernels are emulated and slow, and
bfloat16 needs no scaler) and the query whether a GPU runs bfloat16. Nothing copies batches
from the host any more (the sampler draws them on the device), so there is no pinned-memory
branch.

Examples
--------
>>> pick_device("cpu").type
'cpu'
>>> precision(pick_device("cpu"), "float32").dtype is None
True
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

DEVICES = ("cpu", "cuda", "mps")


def usable_cpus() -> int:
    """CPU cores this process may run on: its scheduler affinity where the system has one
    (a container's or a batch job's share), else ``os.cpu_count()``.

    Examples
    --------
    >>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """Return ``preference`` if given, else cuda, then mps, then cpu.

    Raises
    ------
    ValueError
        If the requested device is unknown or not available on this machine.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    if preference is None or preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {preference!r}; expected one of {DEVICES} or 'auto'") from None
    if device.type not in DEVICES:
        raise ValueError(f"unknown device {preference!r}; expected one of {DEVICES} or 'auto'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {preference!r} requested but MPS is not available on this machine")
    return device


@dataclass(frozen=True)
class Precision:
    """How a device runs networks: ``dtype`` of autocast (None: plain float32).

    Examples
    --------
    >>> p = Precision("cuda", torch.float16)
    >>> p.enabled, p.scales_gradients
    (True, True)
    >>> Precision("cpu", None).grad_scaler().is_enabled()
    False
    """

    device_type: str
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def scales_gradients(self) -> bool:
        """float16 needs a gradient scaler; bfloat16 has float32's range and does not."""
        return self.dtype == torch.float16

    def autocast(self):
        """The autocast context of this precision (a no-op when it is plain float32)."""
        return torch.autocast(device_type=self.device_type, dtype=self.dtype or torch.float32, enabled=self.enabled)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for float16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_gradients)


#: Settings of ``precision=``: the device's best (``auto``), or one dtype for every device.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def amp_dtype(device_type: str, bf16_supported: bool) -> torch.dtype | None:
    """Autocast dtype of ``precision="auto"``: bfloat16 or float16 on CUDA, bfloat16 on a CPU
    that runs it natively, None (float32) elsewhere.

    Examples
    --------
    >>> amp_dtype("cuda", bf16_supported=False), amp_dtype("cpu", bf16_supported=False)
    (torch.float16, None)
    >>> amp_dtype("cpu", bf16_supported=True), amp_dtype("mps", bf16_supported=True)
    (torch.bfloat16, None)
    """
    if device_type == "cuda":
        return torch.bfloat16 if bf16_supported else torch.float16
    if device_type == "cpu" and bf16_supported:
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that oneDNN uses; on
    other CPUs bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - private API: absent means unknown, so no
        return False


def check_precision(mode: str) -> str:
    """``mode`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")
    return mode


def precision(device: torch.device | str, mode: str = "auto") -> Precision:
    """The :class:`Precision` networks use on ``device``: ``mode`` ``"auto"`` (the device's best,
    see the module docstring), ``"float32"``, ``"bfloat16"`` or ``"float16"`` (CUDA only).

    Examples
    --------
    >>> precision("cpu", "bfloat16").dtype, precision("cpu", "float32").enabled
    (torch.bfloat16, False)
    """
    device = torch.device(device)
    mode = check_precision(mode)
    if mode == "float32":
        return Precision(device.type, None)
    if mode == "bfloat16":
        return Precision(device.type, torch.bfloat16)
    if mode == "float16":
        if device.type != "cuda":
            raise ValueError(f"precision 'float16' needs CUDA, not {device.type}; use 'bfloat16' or 'float32'")
        return Precision(device.type, torch.float16)
    if device.type == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        bf16 = device.type == "cpu" and cpu_has_native_bf16()
    return Precision(device.type, amp_dtype(device.type, bf16))


def inference_precision(device: torch.device | str) -> Precision:
    """The :class:`Precision` of prediction: ``auto`` on CUDA, float32 elsewhere, so CPU
    predictions equal what an exported model gives in plain float32 PyTorch (to 1e-5) and
    scores do not depend on whether a CPU has bfloat16 instructions.

    Examples
    --------
    >>> inference_precision("cpu").enabled
    False
    """
    device = torch.device(device)
    return precision(device, "auto" if device.type == "cuda" else "float32")


def memory_format(device: torch.device | str) -> torch.memory_format:
    """How networks lay out images and weights on ``device``: channels-last on CUDA (tensor
    cores read it without transposes) and on the CPU (oneDNN's convolutions with few channels
    run faster in it; the README gives the measured step times), the default layout elsewhere
    (MPS).

    Examples
    --------
    >>> memory_format("cuda"), memory_format("cpu"), memory_format("mps")
    (torch.channels_last, torch.channels_last, torch.contiguous_format)
    """
    return torch.channels_last if torch.device(device).type in ("cuda", "cpu") else torch.contiguous_format


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(model)``, or ``model`` itself (with a warning) where compiling fails.

    The compiled module shares ``model``'s parameters; keep ``model`` for saving and for
    :func:`eager_fallback`, since compilation errors may also surface at the first call.
    """
    try:
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        return eager_fallback(model, err)


def eager_fallback(model: torch.nn.Module, err: BaseException) -> torch.nn.Module:
    """Warn that ``torch.compile`` failed (``err``) and return the eager ``model`` to go on with."""
    warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err).strip()[:200]}); "
                  "training goes on without compiling", RuntimeWarning, stacklevel=2)
    return model


def fused_adam(device: torch.device | str) -> bool:
    """Whether this PyTorch has a fused Adam for ``device`` (CUDA, the CPU and MPS in 2.13).

    Examples
    --------
    >>> fused_adam("cpu")
    True
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        supported = _get_fused_kernels_supported_devices()
    except ImportError:  # private API: without it, only CUDA's long-standing kernel
        supported = ["cuda"]
    return torch.device(device).type in supported


def adam(params, lr: float, device: torch.device | str, betas: tuple[float, float] = (0.9, 0.999)
         ) -> torch.optim.Adam:
    """Adam for parameters on ``device``: the fused implementation wherever PyTorch has one
    (:func:`fused_adam`; one kernel updates every parameter instead of several per tensor), the
    default one elsewhere. On the CPU the fused update equals the default one to float rounding.

    Examples
    --------
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = adam(net.parameters(), 1e-3, "cpu")
    >>> opt.defaults["fused"], opt.defaults["lr"]
    (True, 0.001)
    """
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True if fused_adam(device) else None)


def restore_generator(generator: torch.Generator, state, saved_on: str | None = None,
                      what: str = "random stream") -> None:
    """Continue ``generator`` from a saved ``state``; a one-line ValueError where it cannot.

    Generator states are CPU byte tensors on every device, but of different generators: the
    CPU's (Mersenne Twister, 5056 bytes) and CUDA's (Philox seed and offset, 16 bytes) do not
    fit each other, so a run resumes its random streams on a device of the kind it was saved
    on. ``saved_on`` (the saved device type) names that device in the message.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> restore_generator(g, torch.Generator().manual_seed(1).get_state())
    >>> cuda_like = torch.tensor([1, 0]).view(torch.uint8)  # a CUDA generator's seed and offset
    >>> restore_generator(g, cuda_like, "cuda", "patch stream")
    Traceback (most recent call last):
    ...
    ValueError: cannot resume on cpu: the saved patch stream was drawn on cuda, whose generator state does not fit a cpu generator; resume on cuda
    """
    try:
        generator.set_state(state)
    except (RuntimeError, TypeError):
        here = generator.device.type
        if saved_on is None:
            raise ValueError(f"cannot resume on {here}: the saved {what} does not fit a {here} generator (saved on "
                             "another kind of device, or by an older version)") from None
        raise ValueError(f"cannot resume on {here}: the saved {what} was drawn on {saved_on}, whose generator "
                         f"state does not fit a {here} generator; resume on {saved_on}") from None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: CPU threads of a run unless the session says otherwise: the count the book's numbers
#: were made with (a 2-core machine), so a run anywhere repeats them (see :func:`make_reproducible`).
DEFAULT_THREADS = 2


def make_reproducible(seed: int, threads: int = DEFAULT_THREADS, device: torch.device | str = "cpu") -> int:
    """Seed everything, fix torch's CPU thread count and pick deterministic kernels on the CPU.

    A CPU kernel splits its sums among its threads, so the last bits of a result (and after a
    few hundred training steps the printed digits) depend on the thread count: ``threads`` fixes
    it (0 keeps torch's own count, every core: faster, but the digits then vary with the
    machine's core count). On the CPU ``torch.use_deterministic_algorithms(True, warn_only=True)``
    makes torch choose its deterministic implementation wherever it has two, and warn where it
    has none; on CUDA and MPS it is switched off (kernels there are free to be faster), so GPU
    runs agree with each other to a few digits, not bit for bit.

    Same seed, same ``threads``, same machine type (CPU instruction set, hence precision: see
    :func:`precision`) and the same torch: the same weights, bit for bit.

    Parameters
    ----------
    seed : int
        Seed of Python, NumPy and torch (:func:`set_seed`).
    threads : int
        torch's intra-op CPU threads (``torch.set_num_threads``); 0 leaves the count as it is.
    device : torch.device or str
        The session's device: deterministic kernels on ``"cpu"`` only.

    Returns
    -------
    int
        The thread count in use.

    Examples
    --------
    >>> make_reproducible(0, threads=2)
    2
    >>> torch.are_deterministic_algorithms_enabled()
    True
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0: torch's own count), got {threads!r}")
    set_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(torch.device(device).type == "cpu", warn_only=True)
    return torch.get_num_threads()


def on_colab() -> bool:
    """True inside Google Colab."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules
