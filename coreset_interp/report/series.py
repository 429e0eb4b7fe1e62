"""The report's data model: one :class:`Series` per configuration, one :class:`Cell` per Table 1 entry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from coreset_interp.interpreters.base import FigureHook
from coreset_interp.report.keys import PERCENT


def figure_hook(interpreter: str) -> FigureHook:
    """What the figures draw for a method beyond the generic curves, as the method declares it.

    Args:
        interpreter: the interpreter's registry name (as in result.json).

    Returns:
        Its :attr:`~coreset_interp.interpreters.base.Interpreter.figure_hook`; the empty hook for a name
        no longer registered (an old sweep's result).
    """
    from coreset_interp.interpreters import INTERPRETERS

    if interpreter not in INTERPRETERS:
        return FigureHook()
    hook = getattr(INTERPRETERS.factory(interpreter), "figure_hook", None)
    return hook if isinstance(hook, FigureHook) else FigureHook()


@dataclass
class Series:
    """The aggregated results of one configuration over rho (see :mod:`coreset_interp.identity`).

    Attributes:
        dataset: dataset name.
        model: model name.
        selector: selector label (``base<-source`` for transfer coresets).
        interpreter: interpreter name.
        points: percent -> metric name -> value (averaged over seeds and repeated jobs).
        full: full-data reference metrics (``accuracy``, ``fit_seconds``, ...).
        model_accuracy: the intact model's val accuracy.
        null_phi: Phi against the same architecture with random weights (None when not computed).
        layers: percent -> {``units``: layer -> count, ``coverage``: layer -> value} for a method whose
            :attr:`hook` declares per-layer keys (VEBI's Fig. 3).
        full_layer_units: layer -> count of the full-data fit.
        jobs: the job folders that contributed.
        variant: ``key=value, ...`` of the config values that set this series apart from others of the
            same (dataset, model, selector, interpreter); empty when there is none.
        identity: every config value that can change its numbers (dotted key -> value).
        reality: noise floor and null as {"floor"|"null": {"mean", "se"}} (absent when not computed).
        hook: what the figures draw for its interpreter (:func:`figure_hook`).
    """

    dataset: str
    model: str
    selector: str
    interpreter: str
    points: dict[int, dict[str, float]] = field(default_factory=dict)
    full: dict[str, float] = field(default_factory=dict)
    model_accuracy: float | None = None
    null_phi: float | None = None
    layers: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    full_layer_units: dict[str, float] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    variant: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    reality: dict[str, Any] = field(default_factory=dict)
    hook: FigureHook = field(default_factory=FigureHook)

    @property
    def label(self) -> str:
        """The row and legend label: the selector, with the variant in brackets when there is one."""
        return f"{self.selector} [{self.variant}]" if self.variant else self.selector

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """Args:
            metric: a key of the rho entries (e.g. ``accuracy``, ``angular_distance``).

        Returns:
            (percents, values) for the percents where the metric is a finite number.
        """
        xs, ys = [], []
        for p in sorted(self.points):
            v = self.points[p].get(metric)
            if v is not None and math.isfinite(v):
                xs.append(p)
                ys.append(v)
        return xs, ys


def layer_data(entries: list[dict[str, Any]], hook: FigureHook) -> dict[int, dict[str, dict[str, float]]]:
    """The per-layer data of a method's rho entries, for :attr:`Series.layers`.

    Args:
        entries: rho entries (each with ``percent``); per percent the first one carrying the data counts
            (per-layer units are counts of one fit: the first seed's, not a blurred mean).
        hook: the method's figure hook.

    Returns:
        percent -> {``units``, ``coverage``}; empty when the hook declares no per-layer keys.
    """
    out: dict[int, dict[str, dict[str, float]]] = {}
    if not hook.layer_units:
        return out
    for e in entries:
        units = e.get(hook.layer_units)
        if isinstance(units, dict) and int(e[PERCENT]) not in out:
            coverage = e.get(hook.layer_coverage) if hook.layer_coverage else None
            out[int(e[PERCENT])] = {"units": dict(units), "coverage": dict(coverage or {})}
    return out


@dataclass
class Cell:
    """One Table 1 cell: Phi over the Table 1 ratios.

    Attributes:
        mean: mean of Phi (None when no ratio has a value).
        std: population standard deviation.
        n: how many ratios contributed.
        percents: which.
    """

    mean: float | None
    std: float | None
    n: int
    percents: list[int] = field(default_factory=list)
