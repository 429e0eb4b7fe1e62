"""The report's heatmap and reality-check sections: figures from the jobs' saved arrays and results (no
model needed), the HTML they add to report.html and their part of summary.json."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coreset_interp.heatmaps import VizConfig
from coreset_interp.viz import INTERPRETER_LABELS, Series
from coreset_interp.viz_heatmaps import report_heatmap_figures
from coreset_interp.viz_reality import cascade_curve, cascade_figure, companion_html, companion_rows

_PATTERNS = ("heatmaps_*.png", "fig8_vebi_new_units_*.png", "cascade.png")


@dataclass
class Extras:
    """What the heatmaps and reality checks add to a report.

    Attributes:
        figures: (file name, title, PNG) per figure.
        html: the sections for report.html.
        summary: keys for summary.json.
    """

    figures: list[tuple[str, str, Path]] = field(default_factory=list)
    html: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def _img(title: str, name: str, path: Path) -> str:
    e = html.escape
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<h2>{e(title)}</h2><img alt='{e(name)}' src='data:image/png;base64,{data}'>"


def report_extras(
    results: Sequence[Any], series: Sequence[Series], percents: Sequence[int], out: Path
) -> Extras:
    """Build the heatmap grids (Figs. 6-8), the cascade figure and Table 1's companion.

    Args:
        results: the loaded job results (:class:`~coreset_interp.report.JobResult`).
        series: the aggregated series.
        percents: the Table 1 ratios.
        out: the report folder.

    Returns:
        The extras.
    """
    completed = [r for r in results if r.status == "completed"]
    cfg = next((r.payload.get("config") for r in reversed(completed) if r.payload.get("config")), None)
    try:
        vcfg = VizConfig.from_cfg(cfg)
    except ValueError:
        vcfg = VizConfig()
    extras = Extras()
    extras.figures = report_heatmap_figures(
        [r.path.parent for r in completed], out, vcfg.heatmap_percent, vcfg.colormap, vcfg.alpha
    )
    payloads = [r.payload for r in completed]
    casc = cascade_figure(payloads, out / "cascade.png")
    if casc is not None:
        extras.figures.append(
            ("cascade.png", "Cascading randomisation (model-parameter randomisation test)", casc)
        )
    produced = {name for name, _, _ in extras.figures}
    for pattern in _PATTERNS:
        for stale in out.glob(pattern):
            if stale.name not in produced:
                stale.unlink()  # a figure from an earlier report would contradict this one
    rows = companion_rows(series, percents)
    parts = [companion_html(rows, percents)] if any(r["floor"] is not None for r in rows) else []
    cascades = _cascade_rows(payloads)
    if cascades:
        parts.append(_cascade_html(cascades))
    heat = [f for f in extras.figures if f[0] != "cascade.png"]
    if heat:
        parts.append(
            "<p class='note'>Heatmaps (Sec. 4.7): for each val image and fit, the k interpretation maps with "
            "the largest sums, their element-wise maximum resized bilinearly to the input and overlaid on "
            "the un-normalised image; one colour scale per row.</p>"
        )
    parts += [_img(title, name, path) for name, title, path in extras.figures]
    extras.html = "\n".join(parts)
    extras.summary = {"reality": rows, "cascade": cascades, "heatmap_figures": sorted(produced)}
    return extras


def _cascade_rows(payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out, seen = [], set()
    for p in payloads:
        if not (p.get("cascade") or {}).get("steps"):
            continue
        key = (p.get("model"), p.get("interpreter"))
        if key in seen:
            continue
        seen.add(key)
        labels, values = cascade_curve(p)
        null = (p.get("null_reference") or {}).get("angular_distance")
        floor = (p.get("noise_floor") or {}).get("angular_distance")
        out.append(
            {
                "model": p.get("model"),
                "interpreter": p.get("interpreter"),
                "steps": [s.replace("\n", " ") for s in labels],
                "phi": values,
                "null": null,
                "floor": floor,
            }
        )
    return out


def _cascade_html(rows: Sequence[dict[str, Any]]) -> str:
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
