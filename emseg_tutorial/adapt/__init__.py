"""Unsupervised adaptation of a source model to an unlabelled target (Experiment 3 and beyond).

=================  ===============================================================
module             owns
=================  ===============================================================
:mod:`.registry`   one record per method (:class:`Method`), :func:`register`, :func:`get_method`
:mod:`.loop`       :class:`AdaptConfig`, :func:`adapt`: the training loop
:mod:`.steps`      one step function per trained method, the two adversarial updates
:mod:`.adabn`      AdaBN with exact batch-norm statistics
:mod:`.methods`    :func:`run_method`: any registered method (CLI and chapter 6)
:mod:`.diagnostics` epoch reports, snapshots, warnings and the label-free rule
=================  ===============================================================
"""

from .adabn import adapt_batchnorm
from .diagnostics import WARNINGS, adaptation_warnings, label_free_choice, oracle_choice
from .loop import AdaptConfig, AdaptResult, adapt
from .methods import MethodRun, run_method
from .registry import (METHOD_RECORDS, Method, OnePassResult, ablation_names, get_method, method_names, register,
                       resolve, unregister)
from .steps import discriminator_step, generator_step, one_hot

__all__ = ["AdaptConfig", "AdaptResult", "Method", "OnePassResult", "METHOD_RECORDS", "MethodRun", "adapt",
           "adapt_batchnorm", "run_method", "resolve", "register", "unregister", "get_method", "method_names",
           "ablation_names", "discriminator_step", "generator_step", "one_hot", "WARNINGS", "adaptation_warnings",
           "label_free_choice", "oracle_choice"]
