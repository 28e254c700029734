"""The paper itself: its stages and budgets (:mod:`.stages`), the scores and tables of its
experiments (:mod:`.scores`), chapter 4's seed table (:mod:`.seeds`), chapters 3 and 4's findings
in sentences (:mod:`.sentences`), chapter 5's run in sentences (:mod:`.adaptation`), chapter 6's
comparison of adaptation methods (:mod:`.comparison`), the domain gap against the oracle model
(:mod:`.gap`), the field's VNC -> Lucchi++ mitochondria benchmark beside its published rows
(:mod:`.mito_benchmark`) and the runs folder that keeps chapter 5
and 6 runs (:mod:`.runs`); :func:`~emseg_tutorial.glue.glue_numbers` hands their numbers to the
book's prose.

This is the top of the library's layers: it may use everything below (data, models, train,
adapt, predict, the session); nothing below imports it.
"""

from .adaptation import adaptation_findings, adaptation_gap_rows, adaptation_numbers
from .comparison import (Comparison, compare, comparison_gap_table, comparison_numbers, comparison_table,
                         diagnostics_table, findings, selection_table, spread_note)
from .mito_benchmark import PUBLISHED, benchmark_table, run_benchmark
from .gap import (GapPreview, GapScores, domain_gap, gap_closed, gap_preview, gap_table, no_skill, oracle_scores,
                  provenance_note)
from ..glue import glue_numbers
from .scores import adaptation_summary, adaptation_table, score, score_slices, scores_table, validation_curve
from .seeds import seed_scores, seed_table, stage_label
from .sentences import (SMALL_PRESETS, experiment1_findings, ratio_findings, small_preset_note, target_findings,
                        transfer_findings, weighting_findings)
from .stages import (PAPER_ITERATIONS, STAGES, WEIGHTING_STAGES, Stage, adapt_config, budget_steps, method_settings, get_stage,
                     run_adaptation, stage_config, train_config)

__all__ = ["PAPER_ITERATIONS", "STAGES", "WEIGHTING_STAGES", "Stage", "adapt_config", "method_settings", "budget_steps", "get_stage",
           "run_adaptation", "stage_config", "train_config", "score", "scores_table", "validation_curve",
           "adaptation_table", "adaptation_summary", "Comparison", "compare", "comparison_table", "selection_table",
           "diagnostics_table", "findings", "spread_note", "comparison_numbers", "adaptation_findings",
           "adaptation_numbers", "glue_numbers", "score_slices", "seed_scores", "seed_table", "stage_label",
           "weighting_findings", "ratio_findings", "transfer_findings", "experiment1_findings", "target_findings",
           "SMALL_PRESETS", "small_preset_note",
           "adaptation_gap_rows", "comparison_gap_table", "GapScores", "domain_gap", "gap_closed", "gap_table",
           "no_skill", "oracle_scores", "provenance_note", "GapPreview", "gap_preview", "PUBLISHED", "benchmark_table",
           "run_benchmark"]
