"""Figures: one job's summary (attached to its W&B run) and a sweep's paper figures (Figs. 2-4, cost).

Everything is drawn with matplotlib's object-oriented API on :class:`~matplotlib.figure.Figure` objects
(no ``pyplot``), so no global figure registry or backend switch is involved and the functions are safe in
worker processes. The sweep figures take :class:`~coreset_interp.report.series.Series`, one per
configuration (dataset, model, selector, interpreter and every other value that can change a number), as
built by :mod:`coreset_interp.report`. What a method adds (VEBI's units per layer, the intact model as
Fig. 2's reference) comes from the hook it declares (:class:`~coreset_interp.interpreters.base.FigureHook`),
so no figure names a method.

Encoding (the paper's): colour = model, marker = selector, one panel per interpreter; the full-data
reference is a solid horizontal line in the model's colour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from coreset_interp.report import keys as K

if TYPE_CHECKING:
    from coreset_interp.report.series import Series

INTERPRETER_ORDER = ("ice", "topic", "vebi")
INTERPRETER_LABELS = {"ice": "ICE", "topic": "Topic-based", "vebi": "VEBI"}
SELECTOR_ORDER = ("random", "moderate", "dgpruning", "kcenter", "kernel_thinning", "full", "transfer")
SELECTOR_MARKERS = {
    "random": "o",
    "moderate": "s",
    "dgpruning": "^",
    "kcenter": "D",
    "kernel_thinning": "v",
    "full": "*",
}
_EXTRA_MARKERS = ("P", "X", "h", "<", ">", "p", "8")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 110
# Hollow markers keep every selector visible where curves coincide.
_HOLLOW: dict[str, Any] = {"lw": 1, "ms": 7, "mfc": "none", "mew": 1.4}


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """Args:
        names: names to order.
        order: the preferred order; other names follow alphabetically.

    Returns:
        Unique names, known ones first.
    """
    unique = set(names)
    known = [n for n in order if n in unique]
    return known + sorted(unique - set(known))


def _base_selector(label: str) -> str:
    # Transfer labels look like "moderate<-resnet50", variants "moderate [metric.alpha=0]": the marker
    # follows the choosing method.
    return label.split(" [")[0].split("<-")[0]


def styles(series: Sequence[Series]) -> tuple[dict[str, str], dict[str, str]]:
    """Args:
        series: the series of one figure.

    Returns:
        Colour per model and marker per series label (keyed by :attr:`Series.label`).
    """
    models = ordered((s.model for s in series), ())
    selectors = ordered((s.label for s in series), SELECTOR_ORDER)
    colors = {m: _COLORS[i % len(_COLORS)] for i, m in enumerate(models)}
    markers: dict[str, str] = {}
    extra = iter(_EXTRA_MARKERS * 4)
    for sel in selectors:
        base = _base_selector(sel)
        # Transfer coresets and variants get markers of their own: two configurations never look alike.
        plain = "<-" not in sel and " [" not in sel and base in SELECTOR_MARKERS
        markers[sel] = SELECTOR_MARKERS[base] if plain else next(extra)
    return colors, markers


def _legend(fig: Figure, colors: dict[str, str], markers: dict[str, str], extra: list[Line2D]) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=m) for m, c in colors.items()]
    handles += [
        Line2D([], [], color="0.3", marker=mk, ls="none", ms=7, label=sel) for sel, mk in markers.items()
    ]
    handles += extra
    fig.legend(
        handles=handles,
        loc="outside right center",
        frameon=False,
        fontsize=9,
    )


def _panels(n: int, height: float = 3.6, width: float = 4.2) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(width * n + 2.2, height), layout="constrained", dpi=DPI)
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig: Figure, path: Path) -> Path:
    """Args:
        fig: a finished figure.
        path: the PNG (its folder is created).

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _group(series: Sequence[Series]) -> dict[str, list[Series]]:
    by_interp: dict[str, list[Series]] = {}
    for s in series:
        by_interp.setdefault(s.interpreter, []).append(s)
    return {k: by_interp[k] for k in ordered(by_interp, INTERPRETER_ORDER)}


def _percent_axis(ax: Any, percents: Iterable[int]) -> None:
    ticks = sorted(set(percents))
    if ticks:
        ax.set_xticks(ticks)
        ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("coreset size rho (%)")
    ax.grid(alpha=0.3)


def accuracy_figure(series: Sequence[Series], path: Path) -> Path | None:
    """The paper's Fig. 2: accuracy of the model on the interpretation's relevant features vs rho.

    Args:
        series: aggregated results.
        path: PNG to write.

    Returns:
        The PNG path, or None when there is nothing to plot.
    """
    groups = _group([s for s in series if s.curve(K.ACCURACY)[0]])
    if not groups:
        return None
    colors, markers = styles([s for g in groups.values() for s in g])
    fig, axes = _panels(len(groups))
    true_drawn = intact_drawn = False
    for ax, (interp, group) in zip(axes, groups.items(), strict=True):
        full_drawn: set[str] = set()
        for s in group:
            xs, ys = s.curve(K.ACCURACY)
            ax.plot(xs, [100 * y for y in ys], color=colors[s.model], marker=markers[s.label], **_HOLLOW)
            tx, ty = s.curve(K.ACCURACY_TRUE_CLASS)
            if tx:
                # ICE's number that reads each image's label, drawn faintly beside the label-free one.
                ax.plot(tx, [100 * y for y in ty], color=colors[s.model], lw=0.8, ls="--", alpha=0.6)
                true_drawn = True
            if s.model not in full_drawn and s.full.get(K.ACCURACY) is not None:
                ax.axhline(100 * s.full[K.ACCURACY], color=colors[s.model], lw=1.8)
                full_drawn.add(s.model)
            if s.model_accuracy is not None and s.hook.intact_reference:
                ax.axhline(100 * s.model_accuracy, color=colors[s.model], lw=1, ls=":")
                intact_drawn = True
        _percent_axis(ax, [p for s in group for p in s.points])
        # Accuracy cannot exceed 100 %: do not let the automatic margin suggest it can.
        ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))
        ax.set_title(INTERPRETER_LABELS.get(interp, interp))
        suffix = next((s.hook.accuracy_label for s in group if s.hook.accuracy_label), "")
        ax.set_ylabel("accuracy (%)" + (f" {suffix}" if suffix else ""))
    extra = [Line2D([], [], color="0.3", lw=1.8, label="full data (100 %)")]
    if intact_drawn:
        extra.append(Line2D([], [], color="0.3", lw=1, ls=":", label="intact model"))
    if true_drawn:
        extra.append(Line2D([], [], color="0.3", lw=0.8, ls="--", label="ICE true class (sees the label)"))
    _legend(fig, colors, markers, extra)
    fig.suptitle("Accuracy on the relevant features vs coreset size (Fig. 2)")
    return save_figure(fig, path)


def phi_figure(series: Sequence[Series], path: Path) -> Path | None:
    """The paper's Fig. 4: angular distance Phi between coreset and full-data features vs rho.

    Args:
        series: aggregated results.
        path: PNG to write.

    Returns:
        The PNG path, or None when there is nothing to plot.
    """
    from coreset_interp.viz_reality import reference_bands, seed_band

    groups = _group([s for s in series if s.curve(K.PHI)[0]])
    if not groups:
        return None
    colors, markers = styles([s for g in groups.values() for s in g])
    fig, axes = _panels(len(groups))
    null_drawn = False
    for ax, (interp, group) in zip(axes, groups.items(), strict=True):
        nulls: dict[str, float] = {}
        top = 0.0
        for s in group:
            xs, ys = s.curve(K.PHI)
            ax.plot(xs, ys, color=colors[s.model], marker=markers[s.label], **_HOLLOW)
            seed_band(ax, s, colors[s.model])
            top = max([top, *ys])
            if s.null_phi is not None:
                nulls[s.model] = s.null_phi
        _percent_axis(ax, [p for s in group for p in s.points])
        top = reference_bands(ax, group, colors, top)
        title = INTERPRETER_LABELS.get(interp, interp)
        if nulls:
            # The null reference (random weights) puts Phi on a scale: drawn when it is near the curves,
            # otherwise only named in the title so the curves keep a readable scale.
            title += "\nnull (random weights): " + ", ".join(f"{m} {v:.3g}" for m, v in nulls.items())
            for model, value in nulls.items():
                if value <= 1.5 * top:
                    ax.axhline(value, color=colors[model], lw=1.2, ls="--")
                    null_drawn = True
                    top = max(top, value)
        ax.set_ylim(0, 1.1 * top if top > 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("angular distance Phi (rad)")
    extra = [Line2D([], [], color="0.3", lw=1.2, ls="--", label="null (random weights)")]
    extra = extra if null_drawn else []
    if any(s.reality.get("floor") for g in groups.values() for s in g):
        extra.append(Patch(color="0.3", alpha=0.25, label="noise floor (± s.e. over classes)"))
        extra.append(Patch(color="0.3", alpha=0.15, hatch="//", label="null band (± s.e.)"))
    _legend(fig, colors, markers, extra)
    fig.suptitle("Similarity of coreset and full-data relevant features, lower = closer (Fig. 4)")
    return save_figure(fig, path)


def cost_figure(series: Sequence[Series], path: Path) -> Path | None:
    """The cost of interpretation (Sec. 4.6): fit seconds and speed-up t_full / t_rho vs rho.

    Lines average the selectors of one (model, interpreter): the fit cost depends on the coreset's size,
    not on how it was chosen. The dashed grey curve is the ideal 1/rho speed-up of a cost linear in n.

    Args:
        series: aggregated results.
        path: PNG to write.

    Returns:
        The PNG path, or None when there is nothing to plot.
    """
    pairs: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        if s.curve(K.FIT_SECONDS)[0]:
            pairs.setdefault((s.model, s.interpreter), []).append(s)
    if not pairs:
        return None
    interps = ordered((i for _, i in pairs), INTERPRETER_ORDER)
    models = ordered((m for m, _ in pairs), ())
    icolor = {i: _COLORS[k % len(_COLORS)] for k, i in enumerate(interps)}
    mstyle = {m: ("-", "--", "-.", ":")[k % 4] for k, m in enumerate(models)}
    fig, (ax_t, ax_s) = _panels(2, width=4.6)
    all_p: set[int] = set()
    for (model, interp), group in pairs.items():
        fit = _mean_curves(group, K.FIT_SECONDS)
        speed = _mean_curves(group, K.SPEEDUP)
        xs = sorted(fit)
        all_p.update(xs)
        style = {"color": icolor[interp], "ls": mstyle[model], "marker": "o", "ms": 4}
        ax_t.plot(xs, [fit[p] for p in xs], **style)
        full = [s.full.get(K.FIT_SECONDS) for s in group if s.full.get(K.FIT_SECONDS)]
        if full:
            ax_t.axhline(float(np.mean(full)), color=icolor[interp], ls=mstyle[model], lw=0.8, alpha=0.6)
        sx = sorted(speed)
        ax_s.plot(sx, [speed[p] for p in sx], **style)
    grid = np.linspace(max(1, min(all_p)), max(all_p), 100)
    ax_s.plot(grid, 100.0 / grid, color="0.5", ls="--", lw=1)
    for ax, label in ((ax_t, "interpreter fit time (s)"), (ax_s, "speed-up t_full / t_rho")):
        _percent_axis(ax, all_p)
        ax.set_yscale("log")
        ax.set_ylabel(label)
    ax_t.set_title("fit time (thin line: full data)")
    ax_s.set_title("speed-up (dashed: ideal 1/rho)")
    handles = [Line2D([], [], color=icolor[i], lw=2, label=INTERPRETER_LABELS.get(i, i)) for i in interps]
    handles += [Line2D([], [], color="0.3", ls=mstyle[m], label=m) for m in models]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=9)
    fig.suptitle("Interpretation cost vs coreset size (Sec. 4.6)")
    return save_figure(fig, path)


def _mean_curves(group: Sequence[Series], metric: str) -> dict[int, float]:
    acc: dict[int, list[float]] = {}
    for s in group:
        for p, v in zip(*s.curve(metric), strict=True):
            acc.setdefault(p, []).append(v)
    return {p: float(np.mean(v)) for p, v in acc.items()}


def job_figures(payload: dict[str, Any], folder: Path) -> dict[str, Path]:
    """The figures of one finished job, for its folder and its W&B run.

    Args:
        payload: the job's result (``ratios``, ``full``, ``model_accuracy``, ...).
        folder: the job's output folder (figures go to ``<folder>/figures``).

    Returns:
        name -> PNG path (``summary``, and ``vebi_units`` when its method declares per-layer keys
        (:class:`~coreset_interp.interpreters.base.FigureHook`) and the job has them).
    """
    entries = [e for e in payload.get(K.RATIOS) or [] if isinstance(e, dict) and K.PERCENT in e]
    if not entries:
        return {}
    out: dict[str, Path] = {}
    xs = [int(e[K.PERCENT]) for e in entries]
    full = payload.get(K.FULL) or {}
    fig, (ax_a, ax_p, ax_t) = _panels(3, height=3.3, width=4.0)
    acc = [finite_number(e.get(K.ACCURACY)) for e in entries]
    ax_a.plot(xs, [100 * a if a is not None else np.nan for a in acc], marker="o", label="coreset")
    if finite_number(full.get(K.ACCURACY)) is not None:
        ax_a.axhline(100 * full[K.ACCURACY], color="k", lw=1.5, label="full data")
    if finite_number(payload.get(K.MODEL_ACCURACY)) is not None:
        ax_a.axhline(100 * payload[K.MODEL_ACCURACY], color="0.5", lw=1, ls=":", label="intact model")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.legend(fontsize=8, frameon=False)
    phi = [finite_number(e.get(K.PHI)) for e in entries]
    ax_p.plot(xs, [v if v is not None else np.nan for v in phi], marker="o", color="C1", label="mean")
    lo, hi = _per_class_band(entries)
    ax_p.fill_between(xs, lo, hi, color="C1", alpha=0.2, label="class range")
    ax_p.set_ylim(bottom=0)
    ax_p.set_ylabel("angular distance Phi (rad)")
    ax_p.legend(fontsize=8, frameon=False)
    fit = [finite_number(e.get(K.FIT_SECONDS)) for e in entries]
    ax_t.plot(xs, [v if v is not None else np.nan for v in fit], marker="o", color="C2", label="coreset fit")
    if finite_number(full.get(K.FIT_SECONDS)):
        ax_t.axhline(full[K.FIT_SECONDS], color="k", lw=1.5, label="full-data fit")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("fit time (s)")
    ax_t.legend(fontsize=8, frameon=False)
    for ax in (ax_a, ax_p, ax_t):
        _percent_axis(ax, xs)
    name = " / ".join(str(payload.get(k, "?")) for k in (K.MODEL, K.SELECTOR, K.INTERPRETER))
    fig.suptitle(name)
    out["summary"] = save_figure(fig, Path(folder) / "figures" / "summary.png")
    from coreset_interp.report.series import Series, figure_hook, layer_data
    from coreset_interp.viz_layers import layer_figure

    hook = figure_hook(str(payload.get(K.INTERPRETER, "")))
    if layers := layer_data(entries, hook):
        series = Series(
            str(payload.get(K.DATASET, "")),
            str(payload.get(K.MODEL, "")),
            str(payload.get(K.SELECTOR, "")),
            str(payload.get(K.INTERPRETER, "")),
            layers=layers,
            full_layer_units=dict(full.get(hook.layer_units) or {}),
            hook=hook,
        )
        path = layer_figure([series], Path(folder) / "figures" / "vebi_units.png")
        if path is not None:
            out["vebi_units"] = path
    return out


def finite_number(value: Any) -> float | None:
    """Args:
        value: anything read from a result.json.

    Returns:
        The value as a float when it is a finite number (not a bool), else None.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _per_class_band(entries: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    lo, hi = [], []
    for e in entries:
        vals = [v for v in (e.get(K.PHI_PER_CLASS) or {}).values() if finite_number(v) is not None]
        lo.append(min(vals) if vals else np.nan)
        hi.append(max(vals) if vals else np.nan)
    return lo, hi
