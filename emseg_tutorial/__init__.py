"""emseg_tutorial: class-imbalanced EM segmentation and unsupervised domain adaptation.

The library behind the emseg-tutorial Jupyter Book, which reproduces Roy & Chakraborty,
"Semantic segmentation of highly class imbalanced fully labelled 3D volumetric biomedical
images and unsupervised domain adaptation of the pre-trained segmentation network to segment
another fully unlabelled biomedical 3D image stack".
"""

from .presets import get_preset
from .session import Session, setup

__version__ = "0.2.0"
__all__ = ["setup", "Session", "get_preset", "__version__"]
