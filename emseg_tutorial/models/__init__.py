"""Networks: the 2D U-Net segmenter (discriminators for the adaptation chapters join later).

Every model keeps its constructor arguments in ``init_kwargs`` so a checkpoint rebuilds it with
:func:`build_model` instead of unpickling a class.
"""

from .unet import UNet2d, build_model

__all__ = ["UNet2d", "build_model"]
