"""The one definition of ``result.json``: :class:`JobResult` and its per-rho :class:`RatioEntry`.

The pipeline builds a :class:`JobResult`, :mod:`coreset_interp.job` writes its :meth:`JobResult.to_json`,
and every reader (tracker, figures, report, benchmarks, tests) reads it back with
:meth:`JobResult.from_json` or through the key constants below, so a key is spelled once. The JSON keys
are those result.json has always had; keys this module does not know (a method's evaluation, describe and
compare keys, the reality checks' extra keys) are kept in ``metrics`` / ``extra`` and written back
unchanged. A method declares its own per-rho keys in ``Interpreter.point_metrics``.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Keys of a ratio entry (and of ``full``) that modules other than the pipeline read.
RATIO = "ratio"
PERCENT = "percent"
N_SELECTED = "n_selected"
ACCURACY = "accuracy"
ANGULAR_DISTANCE = "angular_distance"
PHI_PER_CLASS = "angular_distance_per_class"
PHI_MISSING = "angular_distance_missing"
PHI_PER_LAYER = "angular_distance_per_layer"
PHI_STD = "angular_distance_std"
PHI_NORMALISED = "phi_normalised"
PHI_NORMALISED_PER_CLASS = "phi_normalised_per_class"
SELECT_SECONDS = "select_seconds"
FIT_SECONDS = "fit_seconds"
PREPARE_SECONDS = "prepare_seconds"
SPEEDUP = "speedup"
SELECTION_SEEDS = "selection_seeds"
BY_SELECTION_SEED = "by_selection_seed"
#: VEBI's relevant units per layer (declared by VEBI's ``point_metrics``; read by figures and the report).
VEBI_UNITS_PER_LAYER = "vebi_units_per_layer"
# Top-level numbers of a job read by the tracker and the report.
MODEL_ACCURACY = "model_accuracy"
TABLE1_PHI_NORMALISED = "table1_phi_normalised"
#: Keys every ratio entry carries whatever the method (a method adds its ``point_metrics``).
COMMON_RATIO_KEYS: tuple[str, ...] = (ACCURACY, ANGULAR_DISTANCE, PHI_PER_CLASS, FIT_SECONDS, N_SELECTED)

# Statuses of a job.
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


@dataclass
class RatioEntry:
    """One rho's results (an element of result.json's ``ratios``, a line of metrics.jsonl).

    Attributes:
        ratio: rho.
        percent: rho in integer percent.
        n_selected: coreset size.
        angular_distance: Phi (mean over the classes where it is defined), None when undefined everywhere.
        angular_distance_per_class: phi per val class (str class -> value or None).
        angular_distance_missing: classes where phi is undefined.
        select_seconds: selection time (when computed, else the cached value's).
        fit_seconds: fit time.
        speedup: full-data fit seconds over this rho's select + fit seconds.
        metrics: every other key, in order (the method's evaluation, describe and compare keys,
            ``angular_distance_per_layer``, the reality checks' keys).
    """

    ratio: float
    percent: int
    n_selected: int
    angular_distance: float | None
    angular_distance_per_class: dict[str, float | None]
    angular_distance_missing: int
    select_seconds: float
    fit_seconds: float
    speedup: float | None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns:
        The entry as result.json holds it.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {**out, **self.metrics}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RatioEntry:
        """Args:
            data: a ratio entry of result.json (or a metrics.jsonl line).

        Returns:
            The entry (unknown keys in ``metrics``).
        """
        names = [f.name for f in dataclasses.fields(cls) if f.name != "metrics"]
        known = {n: data.get(n) for n in names}
        return cls(**known, metrics={k: v for k, v in data.items() if k not in names})


#: Keys of result.json in the order they are written; the pipeline's part starts at ``model``.
HEADER_KEYS: tuple[str, ...] = ("status", "error", "config", "job", "code", "provenance", "heartbeat")
PIPELINE_KEYS: tuple[str, ...] = (
    "model", "dataset", "selector", "interpreter", "model_accuracy", "model_info", "extraction",
    "dataset_info", "full", "ratios", "null_reference", "noise_floor", "cascade", "table1",
    "table1_phi_normalised", "artifacts", "warnings",
)  # fmt: skip
TRAILER_KEYS: tuple[str, ...] = ("traceback", "wall_seconds")


@dataclass
class JobResult:
    """A job's result.json. Header fields are set by :mod:`coreset_interp.job`, the others by the pipeline;
    a field left None is not written (a running or failed job has no ``ratios``), except the pipeline's
    part, which is written whole once ``ratios`` is set.

    Attributes:
        status: ``running``, ``completed`` or ``failed``.
        error: the one-line error of a failed job.
        config: the resolved config.
        job: where and under which names the job runs.
        code: package version, git commit, uncommitted changes (``skip_completed`` compares it).
        provenance: package version, commit, python, torch and CUDA versions, device.
        heartbeat: the running job's host, pid and time.
        ratios: one entry per rho.
        extra: keys of a stored result this class does not know (kept on a round trip).
    """

    status: str
    error: str | None = None
    config: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    code: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    heartbeat: dict[str, Any] | None = None
    model: str | None = None
    dataset: str | None = None
    selector: str | None = None
    interpreter: str | None = None
    model_accuracy: float | None = None
    model_info: dict[str, Any] | None = None
    extraction: list[dict[str, Any]] | None = None
    dataset_info: dict[str, Any] | None = None
    full: dict[str, Any] | None = None
    ratios: list[RatioEntry] | None = None
    null_reference: dict[str, Any] | None = None
    noise_floor: dict[str, Any] | None = None
    cascade: dict[str, Any] | None = None
    table1: dict[str, Any] | None = None
    table1_phi_normalised: float | None = None
    artifacts: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    traceback: str | None = None
    wall_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns:
        The result.json payload (JSON types; ``ratios`` as dicts).
        """
        out: dict[str, Any] = {"status": self.status, "error": self.error}
        for key in HEADER_KEYS[2:]:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.ratios is not None:
            for key in PIPELINE_KEYS:
                value = getattr(self, key)
                out[key] = [e.to_json() for e in value] if key == "ratios" else value
        elif self.warnings:
            out["warnings"] = list(self.warnings)
        out.update(self.extra)
        for key in TRAILER_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobResult:
        """Args:
            data: a result.json payload.

        Returns:
            The result (unknown keys in ``extra``).
        """
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("ratios") is not None:
            values["ratios"] = [RatioEntry.from_json(e) for e in values["ratios"]]
        if values.get("warnings") is None:
            values.pop("warnings", None)
        return cls(**values, extra={k: v for k, v in data.items() if k not in names})

    def entry(self, percent: int) -> RatioEntry | None:
        """Args:
            percent: rho in integer percent.

        Returns:
            That rho's entry, or None.
        """
        return next((e for e in self.ratios or [] if e.percent == percent), None)


def table1_summary(entries: list[dict[str, Any]], percents: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """Table 1's statistics of one job (result.json's ``table1``).

    Args:
        entries: the ratio entries (as result.json holds them).
        percents: ``metric.table1_percents``.

    Returns:
        ``mean``, ``std`` (population), ``n`` of Phi over the entries at those percents where it is defined
        (None, None, 0 without any), and the sorted ``percents`` covered.
    """
    wanted = {int(p) for p in percents}
    rows = [e for e in entries if e[PERCENT] in wanted]
    phis = [e[ANGULAR_DISTANCE] for e in rows if e[ANGULAR_DISTANCE] is not None]
    stats: dict[str, Any] = {"mean": None, "std": None, "n": 0}
    if phis:
        arr = np.asarray(phis, dtype=np.float64)
        stats = {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(phis)}
    return {**stats, "percents": sorted(e[PERCENT] for e in rows)}


def provenance(code: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
    """What produced a result, beyond :func:`coreset_interp.jobstate.code_version`.

    Args:
        code: the code version (``version``, ``commit``, ``changes``).
        device: the job's device, when known.

    Returns:
        ``version``, ``commit``, ``python``, ``torch``, ``cuda`` (None without CUDA), ``device``.
    """
    import torch

    return {
        "version": code.get("version"),
        "commit": code.get("commit"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": device,
    }
