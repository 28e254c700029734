"""Exercises for the book's labs: checks against the library, and student versions.

Each exercise in a chapter is three cells:

1. a markdown prompt;
2. the exercise cell, tagged ``solution`` and ``hide-input``: the student's stub in the
   student version, the solution between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` in the
   committed (instructor) notebook, folded away in the rendered book;
3. a check cell, ``labs.check_<name>(answer, ...)``, which compares the answer with the
   library's reference on small inputs, prints what is wrong and how to fix it, and returns a
   :class:`CheckResult` (true when passed). Checks never raise on a wrong answer.

``python -m emseg_tutorial.labs student book/ book/student/`` (``make labs``) writes the student
notebooks; :mod:`emseg_tutorial.labs.student` does the work. ``python -m emseg_tutorial.labs
grade DIR`` runs a folder of (student) notebooks and grades every exercise
(:mod:`emseg_tutorial.labs.grade`).

A new check is a function decorated with :func:`exercise_check` that returns the success message
and ends a wrong answer with :func:`fail` (``require_function``, ``call`` and
``compare_arrays`` do the usual steps: a stub is "not done", an exception in the student's code
is reported with its line, arrays are compared with a precise message)::

    @exercise_check("AdaBN statistics")
    def check_adabn(func):
        require_function(func)
        problem = compare_arrays(call(func, small_input), reference(small_input))
        if problem:
            fail(f"{problem}. Hint: ...")
        return "matches the library on a small batch."

Examples
--------
>>> from emseg_tutorial.metrics import jaccard_from_confusion
>>> result = check_jaccard(jaccard_from_confusion)
✓ Jaccard from a confusion matrix: ...
>>> result.status
'passed'
"""

from ._compare import call, close_number, compare_arrays, fail, require_answer, require_function
from .checks import (check_class_fractions, check_constant_prediction, check_jaccard, check_label_entropy,
                     check_rarest_class, check_ratio_for_share, check_ratio_prediction, check_ratio_weight_map,
                     check_smoothed_distance, exercise_check)
from .checks_adapt import check_diagnosis, check_discriminator_step, check_generator_step
from .checks_beyond import check_distant_slices, check_label_free_choice
from .grade import Gradebook, grade_folder
from .result import CheckResult
from .student import find_exercises, strip_solutions, student_notebook, write_student_versions

__all__ = [
    "CheckResult", "exercise_check",
    "call", "close_number", "compare_arrays", "fail", "require_answer", "require_function",
    "check_class_fractions", "check_rarest_class", "check_label_entropy", "check_ratio_for_share",
    "check_jaccard", "check_constant_prediction", "check_ratio_weight_map", "check_ratio_prediction",
    "check_smoothed_distance", "check_generator_step", "check_discriminator_step", "check_diagnosis", "check_distant_slices", "check_label_free_choice",
    "strip_solutions", "student_notebook", "write_student_versions", "find_exercises",
    "Gradebook", "grade_folder",
]
