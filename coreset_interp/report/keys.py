"""Every result.json key the report and the figures read, in one place.

The one definition of result.json is :mod:`coreset_interp.results`: the keys the pipeline's other readers
share come from there; the ones only the report reads are spelled here. Method-specific per-layer keys
(VEBI's Fig. 3) are declared by the method
(:attr:`coreset_interp.interpreters.base.Interpreter.figure_hook`), not here.
"""

from __future__ import annotations

from coreset_interp import results

# Top level of a job's result.json.
STATUS = "status"
ERROR = "error"
TRACEBACK = "traceback"
CONFIG = "config"
JOB = "job"
DATASET = "dataset"
MODEL = "model"
SELECTOR = "selector"
INTERPRETER = "interpreter"
MODEL_ACCURACY = results.MODEL_ACCURACY
FULL = "full"
RATIOS = "ratios"
NULL_REFERENCE = "null_reference"
NOISE_FLOOR = "noise_floor"
CASCADE = "cascade"
ARTIFACTS = "artifacts"
WALL_SECONDS = "wall_seconds"

# The ``job`` block.
JOB_NAME = "name"
JOB_GROUP = "group"

# One rho entry of ``ratios`` (and, for the metrics that apply, ``full``).
PERCENT = results.PERCENT
ACCURACY = "accuracy"
ACCURACY_TRUE_CLASS = "accuracy_true_class"
PHI = results.ANGULAR_DISTANCE
PHI_PER_CLASS = results.PHI_PER_CLASS
PHI_STD = results.PHI_STD
PHI_NORMALISED = results.PHI_NORMALISED
FIT_SECONDS = results.FIT_SECONDS
SELECT_SECONDS = results.SELECT_SECONDS
SPEEDUP = results.SPEEDUP
N_SELECTED = results.N_SELECTED
ABLATION_DROP = "ablation_drop"
ABLATION_PROB_DROP = "ablation_prob_drop"

# The ``cascade`` block: its steps, each with the re-initialised stages and Phi.
CASCADE_STEPS = "steps"
CASCADE_REINIT = "reinit"

# One record of ``artifacts``.
ARTIFACT_KIND = "kind"
ARTIFACT_KEY = "key"
ARTIFACT_COMPUTED = "computed"
ARTIFACT_SECONDS = "seconds"

#: Metrics of a rho entry averaged per rho when several seeds (or reruns of other seeds) contribute.
POINT_METRICS: tuple[str, ...] = (
    ACCURACY,
    ACCURACY_TRUE_CLASS,
    ABLATION_DROP,
    ABLATION_PROB_DROP,
    PHI,
    FIT_SECONDS,
    SELECT_SECONDS,
    SPEEDUP,
    N_SELECTED,
    PHI_STD,
    PHI_NORMALISED,
)
#: Metrics of the full-data reference averaged over seeds.
FULL_METRICS: tuple[str, ...] = (ACCURACY, ACCURACY_TRUE_CLASS, FIT_SECONDS)

#: Every key above (a test can check them against :mod:`coreset_interp.results` once it exists).
RESULT_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))
)
