"""emseg_tutorial: class-imbalanced EM segmentation and unsupervised domain adaptation.

The library behind the emseg-tutorial Jupyter Book, which reproduces Roy & Chakraborty,
"Semantic segmentation of highly class imbalanced fully labelled 3D volumetric biomedical
images and unsupervised domain adaptation of the pre-trained segmentation network to segment
another fully unlabelled biomedical 3D image stack".

The names below are imported when first used (PEP 562), so ``import emseg_tutorial.metrics``
(pure functions on arrays) does not load PyTorch.
"""

__version__ = "0.2.0"

#: Public name -> the module that defines it.
_LAZY = {"setup": "session", "Session": "session", "get_preset": "presets", "load_checkpoint": "store"}

__all__ = ["setup", "Session", "get_preset", "load_checkpoint", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # the next lookup finds it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
