"""Building a sweep's report: Table 1, the figures, summary.json, report.html and the W&B run."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreset_interp.heatmaps import VizConfig
from coreset_interp.report.aggregation import aggregate, artifact_summary
from coreset_interp.report.html import CASCADE_PNG, extras_html, page
from coreset_interp.report.load import JobResult, job_row, load_results, table1_percents, wandb_target
from coreset_interp.report.series import Series
from coreset_interp.report.tables import Rows, cascade_rows, cell_text, companion_rows, table1, write_table1
from coreset_interp.viz import accuracy_figure, cost_figure, phi_figure
from coreset_interp.viz_heatmaps import report_heatmap_figures
from coreset_interp.viz_layers import layer_figure
from coreset_interp.viz_reality import cascade_figure

log = logging.getLogger(__name__)

#: The extra figures a report may write; an old one this report did not draw is removed.
_EXTRA_PATTERNS = ("heatmaps_*.png", "fig8_vebi_new_units_*.png", CASCADE_PNG)


@dataclass
class Report:
    """What :func:`build_report` produced.

    Attributes:
        out: the output folder.
        files: name -> path of every file written.
        table1: (dataset, model, selector) -> interpreter -> cell.
        counts: jobs per status.
        series: the aggregated series.
        wandb_run: the W&B run folder, when a run was logged.
    """

    out: Path
    files: dict[str, Path]
    table1: Rows
    counts: dict[str, int]
    series: list[Series]
    wandb_run: Path | None = None


def build_report(
    sweep_dir: Path,
    out: Path | None = None,
    wandb_mode: str = "auto",
    vebi_percent: int | None = None,
) -> Report:
    """Aggregate a sweep folder into Table 1, figures and ``report.html``.

    Args:
        sweep_dir: the multirun folder (or any folder holding job folders with ``result.json``).
        out: output folder (default ``<sweep_dir>/report``).
        wandb_mode: ``auto`` (log a W&B run when the jobs used the ``wandb`` logger, in their mode),
            ``offline``, ``online`` or ``disabled``.
        vebi_percent: the rho (%) of the per-layer units figure (default: the smallest of 10..50 present).

    Returns:
        The :class:`Report`.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no such sweep folder: {sweep_dir}")
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(sweep_dir, exclude=[out])
    counts = dict(Counter(r.status for r in results))
    series = aggregate(results)
    percents = table1_percents(results)
    rows = table1(series, percents)
    files = write_table1(rows, percents, out)
    figures: dict[str, Path | None] = {
        "fig2_accuracy.png": accuracy_figure(series, out / "fig2_accuracy.png"),
        "fig3_vebi_units.png": layer_figure(series, out / "fig3_vebi_units.png", vebi_percent),
        "fig4_phi.png": phi_figure(series, out / "fig4_phi.png"),
        "cost.png": cost_figure(series, out / "cost.png"),
    }
    for name, path in figures.items():
        if path is not None:
            files[name] = path
        elif (out / name).exists():
            (out / name).unlink()  # a stale figure from an earlier report would contradict this one
    completed = [r for r in results if r.status == "completed"]
    extra = _extra_figures(completed, out)
    for name, _, path in extra:
        figures[name] = path
        files[name] = path
    companion = companion_rows(series, percents)
    cascades = cascade_rows([r.payload for r in completed])
    artifacts = artifact_summary(results)
    summary = {
        "sweep_dir": str(sweep_dir),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "counts": counts,
        "table1_percents": list(percents),
        "table1": [
            {"dataset": d, "model": m, "selector": s, "interpreter": i, **cell.__dict__}
            for (d, m, s), cells in rows.items()
            for i, cell in cells.items()
        ],
        # One entry per configuration; `identity` holds every value that can change its numbers.
        "series": [_series_entry(s) for s in series],
        "artifacts": artifacts,
        "jobs": [job_row(r) for r in results],
        "reality": companion,
        "cascade": cascades,
        "heatmap_figures": sorted(name for name, _, _ in extra),
    }
    files["summary.json"] = out / "summary.json"
    files["summary.json"].write_text(json.dumps(summary, indent=1, default=str))
    files["report.html"] = out / "report.html"
    sections = extras_html(companion, percents, cascades, extra)
    files["report.html"].write_text(
        page(sweep_dir, results, rows, percents, figures, artifacts, series, sections)
    )
    report = Report(out, files, rows, counts, series)
    target = wandb_target(results, wandb_mode, sweep_dir.name)
    if target["mode"] != "disabled" and rows:
        try:
            report.wandb_run = upload(target, rows, percents, figures, sweep_dir, out)
        except Exception as err:  # noqa: BLE001 - the files above are the report; W&B is extra
            log.warning("W&B table not logged: %s", err)
    return report


def _series_entry(s: Series) -> dict[str, Any]:
    return {
        "label": s.label,
        "dataset": s.dataset,
        "model": s.model,
        "selector": s.selector,
        "interpreter": s.interpreter,
        "variant": s.variant,
        "percents": sorted(s.points),
        "jobs": len(s.jobs),
        "identity": s.identity,
    }


def _extra_figures(completed: Sequence[JobResult], out: Path) -> list[tuple[str, str, Path]]:
    """The heatmap grids (Figs. 6-8) from the jobs' saved arrays and the cascade figure (no model needed);
    (file name, title, PNG) each. Old extra figures this report did not draw are removed."""
    cfg = next((r.config for r in reversed(completed) if r.config), None)
    try:
        vcfg = VizConfig.from_cfg(cfg)
    except ValueError:
        vcfg = VizConfig()
    figures = report_heatmap_figures(
        [r.path.parent for r in completed], out, vcfg.heatmap_percent, vcfg.colormap, vcfg.alpha
    )
    casc = cascade_figure([r.payload for r in completed], out / CASCADE_PNG)
    if casc is not None:
        figures.append((CASCADE_PNG, "Cascading randomisation (model-parameter randomisation test)", casc))
    produced = {name for name, _, _ in figures}
    for pattern in _EXTRA_PATTERNS:
        for stale in out.glob(pattern):
            if stale.name not in produced:
                stale.unlink()  # a figure from an earlier report would contradict this one
    return figures


def upload(
    target: dict[str, Any],
    rows: Rows,
    percents: Sequence[int],
    figures: dict[str, Path | None],
    sweep_dir: Path,
    out: Path,
) -> Path | None:
    """Log Table 1 as one ``wandb.Table`` (and the figures) in a run of the sweep's group, through the
    W&B tracker (:meth:`coreset_interp.trackers.wandb.WandbTracker.upload_report`).

    Args:
        target: from :func:`~coreset_interp.report.load.wandb_target` (mode, project, entity, group).
        rows: Table 1.
        percents: the Table 1 ratios.
        figures: figure name -> PNG (or None).
        sweep_dir: the sweep folder.
        out: the report folder (the run's files go to ``<out>/wandb``).

    Returns:
        The run's local folder.
    """
    from coreset_interp.trackers.wandb import WandbTracker

    columns = ["dataset", "model", "selector", "interpreter", "phi_mean", "phi_std", "n", "cell"]
    data = [
        [d, m, s, interp, cell.mean, cell.std, cell.n, cell_text(cell, len(percents))]
        for (d, m, s), cells in rows.items()
        for interp, cell in cells.items()
    ]
    tracker = WandbTracker(mode=target["mode"], project=target["project"], entity=target["entity"])
    return tracker.upload_report(
        group=target["group"],
        name=f"table1 {target['group']}",
        table=(columns, data),
        images={name: p for name, p in figures.items() if p},
        config={"sweep_dir": str(sweep_dir), "table1_percents": list(percents)},
        folder=out,
    )
