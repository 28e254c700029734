"""Networks: the 2D U-Net segmenter and the PatchGAN discriminators of the adaptation chapters.

Every model keeps its constructor arguments in ``init_kwargs`` and its kind in ``arch``, so a
checkpoint rebuilds it with :func:`build` (one table, :data:`ARCHITECTURES`) instead of
unpickling a class.
"""

from .build import ARCHITECTURES, TASK_CLASSES, arch_of, build, check_model
from .discriminators import PatchDiscriminator
from .unet import ProbabilityUNet, UNet2d, build_model, context_pixels

__all__ = ["UNet2d", "ProbabilityUNet", "build_model", "context_pixels", "PatchDiscriminator", "ARCHITECTURES", "arch_of", "build", "check_model",
           "TASK_CLASSES"]
