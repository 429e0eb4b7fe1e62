"""report.html: one self-contained page (figures embedded) with Table 1, the figures, the reality checks,
the cache's use and every job's status."""

from __future__ import annotations

import base64
import html
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coreset_interp import results
from coreset_interp.report import keys as K
from coreset_interp.report.load import JobResult, job_row
from coreset_interp.report.series import Series
from coreset_interp.report.tables import Rows, cell_text, columns
from coreset_interp.viz import INTERPRETER_LABELS, finite_number

#: How the normalised scale is explained in report.html (two sentences, as the issue asks).
SCALE_NOTE = (
    "phi_normalised = (Phi - floor) / (null - floor) puts a Phi on the scale between the method's own "
    "run-to-run noise (the floor: Phi between fits on two bootstrap resamples of the full train split, 0) "
    "and an unrelated model (the null: the same architecture with random weights, 1). A coreset near 0 is "
    "as good as a fresh sample of the full data; one near 1 finds features as unrelated as a random model's."
)
#: The cascade figure's file name (the other extra figures are heatmap grids).
CASCADE_PNG = "cascade.png"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020} .running{color:#8a6d00} .completed{color:#1b5e20}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0} pre{white-space:pre-wrap;font-size:12px}
.note{color:#555;font-size:13px}
"""


def page(
    sweep_dir: Path,
    results: Sequence[JobResult],
    rows: Rows,
    percents: Sequence[int],
    figures: dict[str, Path | None],
    artifacts: dict[str, Any],
    series: Sequence[Series],
    extra_html: str = "",
) -> str:
    """The self-contained report.html (figures embedded as base64 PNGs).

    Args:
        sweep_dir: the sweep folder.
        results: every loaded job result.
        rows: Table 1.
        percents: the Table 1 ratios.
        figures: the paper figures, file name -> PNG (None = not drawn).
        artifacts: from :func:`~coreset_interp.report.aggregation.artifact_summary`.
        series: the aggregated series (for the ICE accuracy table).
        extra_html: the reality-check and heatmap sections (:func:`extras_html`).

    Returns:
        The page.
    """
    e = html.escape
    counts = Counter(r.status for r in results)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>coreset-interp report: {e(sweep_dir.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Sweep report: {e(sweep_dir.name)}</h1>",
        f"<p class='note'>{e(str(sweep_dir))} &middot; generated {e(time.strftime('%Y-%m-%d %H:%M:%S'))}"
        f" &middot; {len(results)} job(s): "
        + ", ".join(f"<span class='{e(k)}'>{v} {e(k)}</span>" for k, v in sorted(counts.items()))
        + "</p>",
    ]
    parts += _failed_jobs(results)
    parts += _table1_section(rows, percents)
    parts += _figure_sections(figures)
    parts.append(extra_html)
    if ice := _ice_accuracy_html(series):
        parts.append(ice)
    parts += _cache_section(artifacts)
    parts += _jobs_section(results)
    return "\n".join(parts)


def _failed_jobs(results: Sequence[JobResult]) -> list[str]:
    """The jobs that did not complete, with their errors (nothing when all did)."""
    e = html.escape
    parts: list[str] = []
    bad = [r for r in results if r.status != "completed"]
    if not bad:
        return parts
    parts.append("<h2>Jobs that did not complete</h2>")
    parts.append(
        "<p class='note'>Status <b>running</b>: the job's heartbeat is fresh; <b>killed</b>: it stopped; "
        "rerun the same command to finish the sweep (complete artifacts are reused).</p>"
    )
    parts.append("<table><tr><th>job</th><th>status</th><th>error</th><th>folder</th></tr>")
    for r in bad:
        tb = r.payload.get(K.TRACEBACK)
        err = e(str(r.payload.get(K.ERROR) or ""))
        if tb:
            err += f"<details><summary>traceback</summary><pre>{e(str(tb))}</pre></details>"
        parts.append(
            f"<tr><td>{e(r.name)}</td><td class='{e(r.status)}'>{e(r.status)}</td>"
            f"<td>{err}</td><td>{e(str(r.path.parent))}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _table1_section(rows: Rows, percents: Sequence[int]) -> list[str]:
    """Table 1 as an HTML table."""
    e = html.escape
    parts: list[str] = []
    parts.append("<h2>Table 1</h2>")
    parts.append(
        f"<p class='note'>Angular distance Phi (rad) between coreset and full-data relevant "
        f"features: mean &plusmn; std over rho = {e(', '.join(map(str, percents)))} %. Lower is "
        f"closer to the full data; (n=k) marks cells with fewer ratios.</p>"
    )
    if rows:
        cols = columns(rows)
        parts.append(
            "<table><tr><th>dataset</th><th>model</th><th>selector</th>"
            + "".join(f"<th>{e(INTERPRETER_LABELS.get(c, c))}</th>" for c in cols)
            + "</tr>"
        )
        for (dataset, model, selector), cells in rows.items():
            parts.append(
                f"<tr><td>{e(dataset)}</td><td>{e(model)}</td><td>{e(selector)}</td>"
                + "".join(f"<td class='num'>{e(cell_text(cells.get(c), len(percents)))}</td>" for c in cols)
                + "</tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No completed job yet.</p>")
    return parts


def _figure_sections(figures: dict[str, Path | None]) -> list[str]:
    """The paper figures that were drawn, embedded."""
    e = html.escape
    parts: list[str] = []
    titles = {
        "fig2_accuracy.png": "Fig. 2: accuracy on the relevant features",
        "fig4_phi.png": "Fig. 4: similarity to the full-data features",
        "fig3_vebi_units.png": "Fig. 3: VEBI units per layer and coverage",
        "cost.png": "Cost (Sec. 4.6): fit time and speed-up",
    }
    for name, title in titles.items():
        path = figures.get(name)
        if path is None:
            continue
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<h2>{e(title)}</h2><img alt='{e(name)}' src='data:image/png;base64,{data}'>")
    return parts


def _cache_section(artifacts: dict[str, Any]) -> list[str]:
    """How the jobs used the artifact cache."""
    e = html.escape
    parts: list[str] = []
    parts.append("<h2>Artifact cache</h2>")
    parts.append(
        "<p class='note'>From the <code>artifacts</code> records of each result.json: how many "
        "uses built an artifact and how many reused one.</p>"
    )
    parts.append("<table><tr><th>kind</th><th>computed</th><th>reused</th><th>compute s</th></tr>")
    for kind, k in sorted(artifacts["kinds"].items()):
        parts.append(
            f"<tr><td>{e(kind)}</td><td class='num'>{int(k['computed'])}</td>"
            f"<td class='num'>{int(k['reused'])}</td>"
            f"<td class='num'>{k['compute_seconds']:.1f}</td></tr>"
        )
    parts.append("</table>")
    if artifacts["fit_full"]:
        parts.append(
            "<table><tr><th>full-data fit</th><th>model</th><th>interpreter</th><th>role</th>"
            "<th>computed in</th><th>used by</th></tr>"
        )
        for key, f in artifacts["fit_full"].items():
            parts.append(
                f"<tr><td><code>{e(key)}</code></td><td>{e(str(f['model']))}</td>"
                f"<td>{e(str(f['interpreter']))}</td><td>{e(str(f['role']))}</td>"
                f"<td>{e(', '.join(f['computed_in']) or '(earlier sweep)')}</td>"
                f"<td class='num'>{f['used_by']} job(s)</td></tr>"
            )
        parts.append("</table>")
    if artifacts["duplicates"]:
        parts.append(f"<p class='failed'>Computed more than once: {e(str(artifacts['duplicates']))}</p>")
    return parts


def _jobs_section(results: Sequence[JobResult]) -> list[str]:
    """Every job's status, wall time and artifacts, closing the page."""
    e = html.escape
    parts: list[str] = []
    parts.append(
        "<h2>Jobs</h2><table><tr><th>job</th><th>status</th><th>wall s</th>"
        "<th>artifacts computed / reused</th><th>folder</th></tr>"
    )
    for r in results:
        row = job_row(r)
        wall = finite_number(row["wall_seconds"])
        parts.append(
            f"<tr><td>{e(row['name'])}</td><td class='{e(r.status)}'>{e(r.status)}</td>"
            f"<td class='num'>{'' if wall is None else f'{wall:.1f}'}</td>"
            f"<td class='num'>{row['computed']} / {row['reused']}</td><td>{e(row['dir'])}</td></tr>"
        )
    parts.append("</table></body></html>")
    return parts


def _ice_accuracy_html(series: Sequence[Series]) -> str:
    """The two accuracies per rho of the series that report a true-class accuracy (ICE) beside the
    intact model's; empty when no series carries both."""
    e = html.escape
    rows = [s for s in series if s.curve(K.ACCURACY_TRUE_CLASS)[0]]
    if not rows:
        return ""
    percents = sorted({p for s in rows for p in s.points})
    parts = [
        "<h2>ICE accuracy: label-free and true class</h2>",
        "<p class='note'>Each cell: <b>accuracy</b> (label-free: each val image is reconstructed with the "
        "components of the intact model's top-k classes and the smallest reconstruction error wins) / "
        "<b>accuracy_true_class</b> (the image's ground-truth class's components: <b>sees the label</b>), "
        "in %.</p>",
        "<table><tr><th>model</th><th>series</th>"
        + "".join(f"<th>{p} %</th>" for p in percents)
        + "<th>full data</th><th>intact model</th></tr>",
    ]

    def pair(values: dict[str, float]) -> str:
        a, t = values.get(K.ACCURACY), values.get(K.ACCURACY_TRUE_CLASS)
        return f"{_pct(a)} / {_pct(t)}"

    for s in rows:
        cells = "".join(f"<td class='num'>{e(pair(s.points.get(p, {})))}</td>" for p in percents)
        parts.append(
            f"<tr><td>{e(s.model)}</td><td>{e(s.label)}</td>{cells}<td class='num'>{e(pair(s.full))}</td>"
            f"<td class='num'>{e(_pct(s.model_accuracy))}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def img(title: str, name: str, path: Path) -> str:
    """Args:
        title: the section heading.
        name: the PNG's file name (its alt text).
        path: the PNG.

    Returns:
        A heading and the image, embedded.
    """
    e = html.escape
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<h2>{e(title)}</h2><img alt='{e(name)}' src='data:image/png;base64,{data}'>"


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
        norm = _f(r[results.PHI_NORMALISED]) + (
            f" ± {_f(r['phi_normalised_std'])}" if r[results.PHI_NORMALISED] is not None else ""
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


def cascade_html(rows: Sequence[dict[str, Any]]) -> str:
    """Args:
        rows: from :func:`~coreset_interp.report.tables.cascade_rows`.

    Returns:
        The cascading-randomisation section.
    """
    e = html.escape

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    parts = [
        "<h2>Cascading randomisation</h2>",
        "<p class='note'>Phi between the trained model's full-data interpretation and that of the same "
        "model with its head, then also its last conv stages re-initialised (cumulative, top down; the "
        "last step re-initialises everything, which is the null model).</p>",
    ]
    for r in rows:
        label = INTERPRETER_LABELS.get(str(r["interpreter"]), str(r["interpreter"]))
        parts.append(
            f"<p><b>{e(str(r['model']))} / {e(label)}</b></p><table><tr>"
            + "".join(f"<th>{e(s)}</th>" for s in r["steps"])
            + "<th>noise floor</th><th>null</th></tr><tr>"
            + "".join(f"<td class='num'>{num(v)}</td>" for v in r["phi"])
            + f"<td class='num'>{num(r['floor'])}</td><td class='num'>{num(r['null'])}</td></tr></table>"
        )
    return "\n".join(parts)


def extras_html(
    companion: Sequence[dict[str, Any]],
    percents: Sequence[int],
    cascades: Sequence[dict[str, Any]],
    figures: Sequence[tuple[str, str, Path]],
) -> str:
    """The reality-check and heatmap sections of report.html.

    Args:
        companion: Table 1's companion rows (shown when a series has a noise floor).
        percents: the Table 1 ratios.
        cascades: cascading-randomisation rows.
        figures: (file name, title, PNG) of the heatmap grids and the cascade figure.

    Returns:
        The sections.
    """
    parts = [companion_html(companion, percents)] if any(r["floor"] is not None for r in companion) else []
    if cascades:
        parts.append(cascade_html(cascades))
    if any(name != CASCADE_PNG for name, _, _ in figures):
        parts.append(
            "<p class='note'>Heatmaps (Sec. 4.7): for each val image and fit, the k interpretation maps with "
            "the largest sums, their element-wise maximum resized bilinearly to the input and overlaid on "
            "the un-normalised image; one colour scale per row.</p>"
        )
    parts += [img(title, name, path) for name, title, path in figures]
    return "\n".join(parts)
