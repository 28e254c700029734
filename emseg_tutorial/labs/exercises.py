"""The book's exercises as the grader knows them: number, check, and what the check is given.

The grader does not run a notebook's check cells: a student may edit them. For every exercise
it runs the library's check itself, with the arguments written here, evaluated among the
student's own names (:class:`~emseg_tutorial.labs.grade.KernelGrader`). ``tests/test_grade.py``
keeps this table equal to the check cells of the instructor notebooks.

Examples
--------
>>> EXERCISES["3.1"]
('check_jaccard', 'jaccard_per_class')
>>> ARGUMENTS["check_rarest_class"]
'rarest, source.labels'
"""

from __future__ import annotations

#: Exercise number -> (check, the arguments of its call, as written in the chapter's check cell).
EXERCISES: dict[str, tuple[str, str]] = {
    "1.1": ("check_class_fractions", "class_shares"),
    "1.2": ("check_rarest_class", "rarest, source.labels"),
    "2.1": ("check_ratio_for_share", "ratio_for_share"),
    "2.2": ("check_label_entropy", "entropy_map"),
    "2.3": ("check_smoothed_distance", "my_distance_map"),
    "3.1": ("check_jaccard", "jaccard_per_class"),
    "3.2": ("check_constant_prediction", "always_cytoplasm, test.labels"),
    "4.1": ("check_ratio_weight_map", "ratio_weights"),
    "4.2": ("check_ratio_prediction", "prediction, table"),
    "5.1": ("check_discriminator_step", "my_discriminator_step"),
    "5.2": ("check_generator_step", "my_generator_step"),
    "5.3": ("check_diagnosis", "warnings_from, result.history"),
    "6.1": ("check_distant_slices", "my_partners"),
    "6.2": ("check_label_free_choice", "my_choice"),
}
#: Check -> the arguments it is called with (an exercise of a notebook outside the book is
#: graded by the check its check cell names, called with these).
ARGUMENTS: dict[str, str] = {check: args for check, args in EXERCISES.values()}
