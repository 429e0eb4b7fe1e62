"""Figures and report sections of the reality checks (:mod:`coreset_interp.reality`).

- Fig. 4's reference bands: the noise floor and the null reference as horizontal bands (mean +- standard
  error over classes) behind each method's Phi curve, and the spread over selection seeds (mean +- std)
  as a band around each curve.
- The cascading-randomisation curve: Phi against the model with more and more of its top stages
  re-initialised, from the trained model (the noise floor) to the null model.
- The companion of Table 1: phi_normalised = (Phi - floor) / (null - floor) per cell, with the floor, the
  null and the selection-seed spread.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from coreset_interp.viz import DPI, INTERPRETER_LABELS, Series, finite_number

#: How the normalised scale is explained in report.html (two sentences, as the issue asks).
SCALE_NOTE = (
    "phi_normalised = (Phi - floor) / (null - floor) puts a Phi on the scale between the method's own "
    "run-to-run noise (the floor: Phi between fits on two bootstrap resamples of the full train split, 0) "
    "and an unrelated model (the null: the same architecture with random weights, 1). A coreset near 0 is "
    "as good as a fresh sample of the full data; one near 1 finds features as unrelated as a random model's."
)


def reference_summary(ref: dict[str, Any] | None) -> dict[str, float] | None:
    """Args:
        ref: a result.json ``noise_floor`` or ``null_reference`` entry.

    Returns:
        ``mean``, ``se`` (standard error over classes) or None when it holds no number.
    """
    if not isinstance(ref, dict) or finite_number(ref.get("angular_distance")) is None:
        return None
    vals = [v for v in (ref.get("angular_distance_per_class") or {}).values() if finite_number(v) is not None]
    se = float(np.std(vals) / math.sqrt(len(vals))) if len(vals) > 1 else 0.0
    return {"mean": float(ref["angular_distance"]), "se": se}


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
        bands = getattr(s, "reality", None) or {}
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
    xs, ys = s.curve("angular_distance")
    stds = [finite_number(s.points[p].get("angular_distance_std")) for p in xs]
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
    steps = (payload.get("cascade") or {}).get("steps") or []
    labels = ["+" + str(st["reinit"][-1]) for st in steps]
    return labels, [finite_number(st.get("angular_distance")) for st in steps]


def cascade_figure(payloads: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """The cascading-randomisation curves (one per model x interpreter) over the noise floor (band) and
    the null reference (dashed).

    Args:
        payloads: completed results with a ``cascade`` entry.
        path: PNG to write.

    Returns:
        The PNG, or None when no payload holds a cascade.
    """
    payloads = [p for p in payloads if (p.get("cascade") or {}).get("steps")]
    if not payloads:
        return None
    fig = Figure(figsize=(7.5, 4.2), layout="constrained", dpi=DPI)
    ax = fig.subplots()
    seen: set[tuple[str, str]] = set()
    labels: list[str] = []
    for p in payloads:
        key = (str(p.get("model")), str(p.get("interpreter")))
        if key in seen:
            continue
        color = f"C{len(seen) % 10}"
        seen.add(key)
        labels, values = cascade_curve(p)
        x = np.arange(1, len(values) + 1)
        y = np.asarray([np.nan if v is None else v for v in values])
        name = f"{key[0]} / {INTERPRETER_LABELS.get(key[1], key[1])}"
        ax.plot(x, y, marker="o", color=color, label=name)
        floor = reference_summary(p.get("noise_floor"))
        if floor:
            lo, hi = max(floor["mean"] - floor["se"], 0.0), floor["mean"] + floor["se"]
            ax.axhspan(lo, max(hi, lo + 1e-3), color=color, alpha=0.15, lw=0, zorder=0)
            ax.axhline(floor["mean"], color=color, ls=":", lw=1, label=f"{name}: noise floor (± s.e.)")
        null = reference_summary(p.get("null_reference"))
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


def series_bands(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The floor and null of a series' jobs (they are per model x interpreter, so the jobs agree).

    Args:
        payloads: the series' completed results.

    Returns:
        ``floor`` and ``null`` summaries (each absent when no job computed it).
    """
    out: dict[str, Any] = {}
    for p in payloads:
        for key, name in (("floor", "noise_floor"), ("null", "null_reference")):
            if key not in out and (summary := reference_summary(p.get(name))) is not None:
                out[key] = summary
    return out


def companion_rows(series: Sequence[Series], percents: Sequence[int]) -> list[dict[str, Any]]:
    """Table 1's companion: per series, the Table 1 mean of Phi, of phi_normalised, the floor, the null
    and the mean selection-seed std over the Table 1 ratios.

    Args:
        series: aggregated series (with ``reality`` bands).
        percents: the Table 1 ratios.

    Returns:
        One dict per series.
    """
    wanted = {int(p) for p in percents}
    rows = []
    for s in series:
        pts = [s.points[p] for p in sorted(s.points) if p in wanted]
        phis = [v for pt in pts if (v := finite_number(pt.get("angular_distance"))) is not None]
        norms = [v for pt in pts if (v := finite_number(pt.get("phi_normalised"))) is not None]
        stds = [v for pt in pts if (v := finite_number(pt.get("angular_distance_std"))) is not None]
        bands = getattr(s, "reality", None) or {}
        floor, null = bands.get("floor"), bands.get("null")
        rows.append(
            {
                "dataset": s.dataset,
                "model": s.model,
                "selector": s.selector,
                "interpreter": s.interpreter,
                "phi": float(np.mean(phis)) if phis else None,
                "phi_normalised": float(np.mean(norms)) if norms else None,
                "phi_normalised_std": float(np.std(norms)) if norms else None,
                "seed_std": float(np.mean(stds)) if stds else None,
                "floor": floor["mean"] if floor else None,
                "null": null["mean"] if null else None,
                "n": len(phis),
            }
        )
    return rows


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def companion_html(rows: Sequence[dict[str, Any]], percents: Sequence[int]) -> str:
    """Args:
        rows: from :func:`companion_rows`.
        percents: the Table 1 ratios.

    Returns:
        The report section (heading, the two-sentence scale note, the table).
    """
    e = html.escape
    parts = [
        "<h2>Table 1 companion: normalised Phi (reality checks)</h2>",
        f"<p class='note'>{e(SCALE_NOTE)}</p>",
        f"<p class='note'>Means over rho = {e(', '.join(map(str, percents)))} %; floor and null are per "
        "model x interpreter; the selection-seed std is the mean over those ratios of the std of Phi over "
        "<code>selection_seeds</code> (blank with one seed).</p>",
        "<table><tr><th>dataset</th><th>model</th><th>selector</th><th>interpreter</th><th>Phi</th>"
        "<th>phi_normalised</th><th>floor</th><th>null</th><th>selection-seed std</th></tr>",
    ]
    for r in rows:
        norm = _f(r["phi_normalised"]) + (
            f" ± {_f(r['phi_normalised_std'])}" if r["phi_normalised"] is not None else ""
        )
        seed_std = "" if not r["seed_std"] else _f(r["seed_std"])
        parts.append(
            f"<tr><td>{e(r['dataset'])}</td><td>{e(r['model'])}</td><td>{e(r['selector'])}</td>"
            f"<td>{e(INTERPRETER_LABELS.get(r['interpreter'], r['interpreter']))}</td>"
            f"<td class='num'>{_f(r['phi'])}</td><td class='num'>{e(norm)}</td>"
            f"<td class='num'>{_f(r['floor'])}</td><td class='num'>{_f(r['null'])}</td>"
            f"<td class='num'>{seed_std}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)
