"""Figures of the reality checks (:mod:`coreset_interp.reality`).

- Fig. 4's reference bands: the noise floor and the null reference as horizontal bands (mean +- standard
  error over classes) behind each method's Phi curve, and the spread over selection seeds (mean +- std)
  as a band around each curve.
- The cascading-randomisation curve: Phi against the model with more and more of its top stages
  re-initialised, from the trained model (the noise floor) to the null model.

The report's tables of these checks (Table 1's companion, the cascade rows) are in
:mod:`coreset_interp.report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from coreset_interp.report import keys as K
from coreset_interp.viz import DPI, INTERPRETER_LABELS, finite_number

if TYPE_CHECKING:
    from coreset_interp.report.series import Series


def reference_summary(ref: dict[str, Any] | None) -> dict[str, float] | None:
    """Args:
        ref: a result.json ``noise_floor`` or ``null_reference`` entry.

    Returns:
        ``mean``, ``se`` (standard error over classes) or None when it holds no number.
    """
    if not isinstance(ref, dict) or finite_number(ref.get(K.PHI)) is None:
        return None
    vals = [v for v in (ref.get(K.PHI_PER_CLASS) or {}).values() if finite_number(v) is not None]
    se = float(np.std(vals) / math.sqrt(len(vals))) if len(vals) > 1 else 0.0
    return {"mean": float(ref[K.PHI]), "se": se}


def reference_bands(ax: Any, group: Sequence[Series], colors: dict[str, str], top: float) -> float:
    """Draw each model's floor band and null band behind the curves of a Fig. 4 panel (the y axis then
    spans the whole scale from 0 to the null, the scale a Phi is read on).

    Args:
        ax: the panel.
        group: its series.
        colors: model -> colour.
        top: the largest Phi drawn so far.

    Returns:
        The new top of the drawn values.
    """
    done: set[str] = set()
    for s in group:
        bands = s.reality
        if s.model in done or not bands:
            continue
        done.add(s.model)
        floor = bands.get("floor")
        if floor:
            lo, hi = floor["mean"] - floor["se"], floor["mean"] + floor["se"]
            ax.axhspan(max(lo, 0.0), max(hi, lo + 1e-3), color=colors[s.model], alpha=0.15, lw=0, zorder=0)
            ax.axhline(floor["mean"], color=colors[s.model], lw=0.8, ls=":", zorder=0)
            top = max(top, hi)
        null = bands.get("null")
        if null:
            lo, hi = null["mean"] - null["se"], null["mean"] + null["se"]
            ax.axhspan(lo, max(hi, lo + 1e-3), color=colors[s.model], alpha=0.1, lw=0, zorder=0, hatch="//")
            top = max(top, hi)
    return top


def seed_band(ax: Any, s: Series, color: str) -> None:
    """The spread over selection seeds (mean +- std) around a Phi curve, when a job had several.

    Args:
        ax: the panel.
        s: the series.
        color: its colour.
    """
    xs, ys = s.curve(K.PHI)
    stds = [finite_number(s.points[p].get(K.PHI_STD)) for p in xs]
    if not any(v for v in stds if v is not None):
        return
    sd = np.asarray([v or 0.0 for v in stds])
    y = np.asarray(ys)
    ax.fill_between(xs, y - sd, y + sd, color=color, alpha=0.18, lw=0)


def cascade_curve(payload: dict[str, Any]) -> tuple[list[str], list[float | None]]:
    """Args:
        payload: a result.json with ``cascade``.

    Returns:
        (x labels, Phi) per step: ``+head``, ``+layer4``, ... (cumulative re-initialisation).
    """
    steps = (payload.get(K.CASCADE) or {}).get(K.CASCADE_STEPS) or []
    labels = ["+" + str(st[K.CASCADE_REINIT][-1]) for st in steps]
    return labels, [finite_number(st.get(K.PHI)) for st in steps]


def cascade_figure(payloads: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """The cascading-randomisation curves (one per model x interpreter) over the noise floor (band) and
    the null reference (dashed).

    Args:
        payloads: completed results with a ``cascade`` entry.
        path: PNG to write.

    Returns:
        The PNG, or None when no payload holds a cascade.
    """
    payloads = [p for p in payloads if (p.get(K.CASCADE) or {}).get(K.CASCADE_STEPS)]
    if not payloads:
        return None
    fig = Figure(figsize=(7.5, 4.2), layout="constrained", dpi=DPI)
    ax = fig.subplots()
    seen: set[tuple[str, str]] = set()
    labels: list[str] = []
    for p in payloads:
        key = (str(p.get(K.MODEL)), str(p.get(K.INTERPRETER)))
        if key in seen:
            continue
        color = f"C{len(seen) % 10}"
        seen.add(key)
        labels, values = cascade_curve(p)
        x = np.arange(1, len(values) + 1)
        y = np.asarray([np.nan if v is None else v for v in values])
        name = f"{key[0]} / {INTERPRETER_LABELS.get(key[1], key[1])}"
        ax.plot(x, y, marker="o", color=color, label=name)
        floor = reference_summary(p.get(K.NOISE_FLOOR))
        if floor:
            lo, hi = max(floor["mean"] - floor["se"], 0.0), floor["mean"] + floor["se"]
            ax.axhspan(lo, max(hi, lo + 1e-3), color=color, alpha=0.15, lw=0, zorder=0)
            ax.axhline(floor["mean"], color=color, ls=":", lw=1, label=f"{name}: noise floor (± s.e.)")
        null = reference_summary(p.get(K.NULL_REFERENCE))
        if null:
            ax.axhline(null["mean"], color=color, ls="--", lw=1, label=f"{name}: null (random weights)")
    ax.set_xticks(np.arange(1, len(labels) + 1), labels, fontsize=8)
    ax.set_xlabel("re-initialised from the top down (cumulative)")
    ax.set_ylabel("Phi vs trained full-data fit (rad)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.suptitle("Cascading randomisation: Phi as more of the model is re-initialised")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def job_reality_figures(payload: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Args:
        payload: a finished job's result.
        folder: its folder (figures go to ``figures/``).

    Returns:
        name -> PNG (``cascade`` when the job ran the cascade).
    """
    path = cascade_figure([payload], Path(folder) / "figures" / "cascade.png")
    return {"cascade": path} if path is not None else {}
