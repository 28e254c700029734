"""Prediction of whole volumes: in memory (:mod:`.tiled`) or streamed from disk (:mod:`.stream`).

Both cut large slices into blended tiles with the same :func:`~.tiled.predict_slices`.
"""

from .stream import StreamedPrediction, predict_file
from .tiled import (check_tiling, predict_labels, predict_probabilities, predict_slices, prepare_model,
                    probabilities_to_codes, slices_per_step)

__all__ = ["predict_probabilities", "predict_labels", "probabilities_to_codes", "predict_slices", "prepare_model",
           "check_tiling", "slices_per_step", "predict_file", "StreamedPrediction"]
