"""Networks: the 2D U-Net segmenter and the PatchGAN discriminators of the adaptation chapters.

Every model keeps its constructor arguments in ``init_kwargs`` so a checkpoint rebuilds it with
:func:`build_model` / :func:`build_discriminator` instead of unpickling a class.
"""

from .discriminators import PatchDiscriminator, build_discriminator
from .unet import UNet2d, build_model

__all__ = ["UNet2d", "build_model", "PatchDiscriminator", "build_discriminator"]
