"""``coreset-interp-report SWEEP_DIR``: Table 1, the paper's figures and one HTML page for a sweep.

Reads every ``result.json`` below the sweep folder (finished, failed and still-running jobs alike), so it
works on a partial sweep and is also run by :class:`coreset_interp.callbacks.ReportCallback` when a
multirun ends. Only completed jobs contribute numbers; failed and running (or killed) jobs are listed
with their errors.

Aggregation: a series is one configuration: (dataset, model, selector, interpreter) and every other
resolved config value that can change a number (:func:`coreset_interp.identity.result_identity`; output
folders, logger, launcher, caches, worker counts and the seed are left out). Jobs of a series are merged
by rho, so a sweep may give each job all ratios (``ratio=paper``) or one ratio each (``ratio=p10,p20``).
Repeated jobs of one seed (reruns) keep the newest; several seeds are averaged per rho. Values that differ
between series of one (dataset, model, selector, interpreter) become part of the row label, e.g.
``moderate [metric.alpha=0]``, so a sweep over ``metric.alpha=0,1`` gives two rows, never one. A Table 1
cell is the mean and the (population) standard deviation of Phi over the rho of ``metric.table1_percents``
(10..50 %).

Outputs (in ``<SWEEP_DIR>/report`` unless ``--out``): ``table1.md``, ``table1.csv``, ``table1.tex``,
``fig2_accuracy.png``, ``fig3_vebi_units.png`` (with VEBI results), ``fig4_phi.png``, ``cost.png``,
``summary.json`` and ``report.html`` (self-contained, images embedded), plus one W&B run holding Table 1
as a ``wandb.Table`` when the sweep's jobs logged to W&B.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coreset_interp.identity import differing_keys, format_value, identity_key, result_identity
from coreset_interp.jobstate import liveness
from coreset_interp.report_extras import report_extras
from coreset_interp.viz import (
    INTERPRETER_LABELS,
    INTERPRETER_ORDER,
    SELECTOR_ORDER,
    Series,
    accuracy_figure,
    cost_figure,
    finite_number,
    ordered,
    phi_figure,
    vebi_figure,
)
from coreset_interp.viz_reality import series_bands

log = logging.getLogger(__name__)

DEFAULT_TABLE1_PERCENTS = (10, 20, 30, 40, 50)
# Metrics averaged per rho when several seeds (or reruns of other seeds) contribute.
POINT_METRICS = (
    "accuracy",
    "accuracy_true_class",
    "ablation_drop",
    "ablation_prob_drop",
    "angular_distance",
    "fit_seconds",
    "select_seconds",
    "speedup",
    "n_selected",
    "angular_distance_std",
    "phi_normalised",
)


@dataclass
class JobResult:
    """One job's ``result.json``.

    Attributes:
        path: the file.
        payload: its content.
    """

    path: Path
    payload: dict[str, Any]

    @property
    def status(self) -> str:
        """``completed``, ``failed``, ``running``, ``killed`` (its heartbeat stopped), or ``unreadable``."""
        return str(self.payload.get("status", "unreadable"))

    @property
    def name(self) -> str:
        """The job's override string (its W&B run name)."""
        job = self.payload.get("job") or {}
        return str(job.get("name") or self.path.parent.name)


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
    table1: dict[tuple[str, str, str], dict[str, Cell]]
    counts: dict[str, int]
    series: list[Series]
    wandb_run: Path | None = None


def load_results(sweep_dir: Path, exclude: Sequence[Path] = ()) -> list[JobResult]:
    """Read every ``result.json`` below a sweep folder, oldest first.

    Args:
        sweep_dir: the sweep (or any) folder.
        exclude: folders to skip (e.g. the report's own output).

    Returns:
        One entry per file; unreadable files (a job being written by a foreign tool) get status
        ``unreadable`` and the parse error.
    """
    skip = [Path(p).resolve() for p in exclude]
    found: list[tuple[float, JobResult]] = []
    for path in Path(sweep_dir).rglob("result.json"):
        resolved = path.resolve()
        if any(resolved.is_relative_to(s) for s in skip) or "wandb" in path.parts:
            continue
        try:
            payload = json.loads(path.read_text())
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
            # A "running" job whose heartbeat stopped (or whose pid is gone on this host) was killed.
            if (status := liveness(payload)) != payload.get("status"):
                payload = {**payload, "status": status}
        except (OSError, ValueError) as err:
            payload = {"status": "unreadable", "error": f"{type(err).__name__}: {err}"}
        found.append((path.stat().st_mtime, JobResult(path, payload)))
    found.sort(key=lambda item: (item[0], str(item[1].path)))
    return [r for _, r in found]


def selector_label(payload: dict[str, Any]) -> str:
    """The selector's row label: its name, or ``base<-source`` for a transfer coreset (Sec. 4.5).

    Args:
        payload: a job's result.

    Returns:
        The label.
    """
    name = str(payload.get("selector", "?"))
    scfg = (payload.get("config") or {}).get("selector") or {}
    params = scfg  # the selector's fields are flat in its node
    if name == "transfer" or "source_model" in params:
        source = params.get("source_model") or {}
        base = params.get("base", "?") if name == "transfer" else name
        return f"{base}<-{source.get('name', '?') if isinstance(source, dict) else source}"
    return name


def aggregate(results: Sequence[JobResult]) -> list[Series]:
    """Merge completed jobs into one :class:`Series` per configuration (see the module docstring).

    Args:
        results: loaded results, oldest first (newer jobs of the same seed and rho replace older ones).

    Returns:
        The series, in a stable order, each with its ``variant`` (the values that set it apart from the
        other series of its (dataset, model, selector, interpreter); empty when there is none).
    """
    # key -> percent -> seed -> entry
    raw: dict[tuple[str, str, str, str, str], dict[int, dict[int, dict[str, Any]]]] = {}
    meta: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    for res in results:
        p = res.payload
        if res.status != "completed":
            continue
        config = p.get("config") or {}
        key = (
            str(p.get("dataset", "?")),
            str(p.get("model", "?")),
            selector_label(p),
            str(p["interpreter"]),
            identity_key(config),
        )
        seed = int(config.get("seed", 0))
        for entry in p.get("ratios") or []:
            if isinstance(entry, dict) and "percent" in entry:
                raw.setdefault(key, {}).setdefault(int(entry["percent"]), {})[seed] = entry
        m = meta.setdefault(
            key,
            {"full": {}, "model_accuracy": [], "null": [], "jobs": [], "vebi_full": {}},
        )
        m["identity"] = result_identity(config)
        m["full"].setdefault(seed, {}).update(p.get("full") or {})
        m["jobs"].append(str(res.path.parent))
        m.setdefault("payloads", []).append(p)
        if finite_number(p.get("model_accuracy")) is not None:
            m["model_accuracy"].append(float(p["model_accuracy"]))
        null = p.get("null_reference") or {}
        if isinstance(null, dict) and finite_number(null.get("angular_distance")) is not None:
            m["null"].append(float(null["angular_distance"]))
        full_units = (p.get("full") or {}).get("vebi_units_per_layer")
        if isinstance(full_units, dict):
            m["vebi_full"] = full_units
    variants = _variants({k: meta[k]["identity"] for k in meta})
    out: list[Series] = []
    for key in _sorted_keys(raw.keys() | meta.keys()):
        m = meta[key]
        s = Series(
            *key[:4],
            jobs=m["jobs"],
            full_vebi_units=dict(m["vebi_full"]),
            variant=variants[key],
            identity=m["identity"],
        )
        for percent, by_seed in sorted(raw.get(key, {}).items()):
            entries = list(by_seed.values())
            s.points[percent] = {
                k: float(np.mean(vals))
                for k in POINT_METRICS
                if (vals := [v for e in entries if (v := finite_number(e.get(k))) is not None])
            }
            layered = [e for e in entries if isinstance(e.get("vebi_units_per_layer"), dict)]
            if layered:
                # Per-layer units are counts of one fit: show the first seed's rather than a blurred mean.
                s.vebi[percent] = {
                    "units": dict(layered[0]["vebi_units_per_layer"]),
                    "coverage": dict(layered[0].get("vebi_coverage_per_layer") or {}),
                }
        fulls = list(m["full"].values())
        s.full = {
            k: float(np.mean(vals))
            for k in ("accuracy", "accuracy_true_class", "fit_seconds")
            if (vals := [v for f in fulls if (v := finite_number(f.get(k))) is not None])
        }
        s.model_accuracy = float(np.mean(m["model_accuracy"])) if m["model_accuracy"] else None
        s.null_phi = float(np.mean(m["null"])) if m["null"] else None
        s.reality = series_bands(m["payloads"])
        out.append(s)
    return out


def _variants(identities: dict[tuple[str, ...], dict[str, Any]]) -> dict[tuple[str, ...], str]:
    """Per series key, ``k=v, ...`` of the values that differ between the series sharing its (dataset,
    model, selector, interpreter); empty for a series that is alone there."""
    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for key in identities:
        groups.setdefault(key[:4], []).append(key)
    out: dict[tuple[str, ...], str] = {}
    for keys in groups.values():
        differ = differing_keys(identities[k] for k in keys) if len(keys) > 1 else []
        for k in keys:
            ident = identities[k]
            out[k] = ", ".join(f"{d}={format_value(ident[d]) if d in ident else '-'}" for d in differ)
    return out


def _sorted_keys(keys: Any) -> list[tuple[str, str, str, str, str]]:
    keys = list(keys)
    sel_order = ordered((k[2].split("<-")[0] for k in keys), SELECTOR_ORDER)
    int_order = ordered((k[3] for k in keys), INTERPRETER_ORDER)
    return sorted(
        keys,
        key=lambda k: (k[0], k[1], sel_order.index(k[2].split("<-")[0]), k[2], k[4], int_order.index(k[3])),
    )


def table1(series: Sequence[Series], percents: Sequence[int]) -> dict[tuple[str, str, str], dict[str, Cell]]:
    """The paper's Table 1: mean +- std of Phi over the given ratios, rows = (dataset, model, selector
    label), one row per distinct configuration (the label carries the series' variant).

    Args:
        series: aggregated series.
        percents: the ratios (integer %) that enter each cell.

    Returns:
        row -> interpreter -> cell.
    """
    wanted = {int(p) for p in percents}
    rows: dict[tuple[str, str, str], dict[str, Cell]] = {}
    for s in series:
        used = [(p, v) for p, v in zip(*s.curve("angular_distance"), strict=True) if p in wanted]
        values = np.asarray([v for _, v in used], dtype=np.float64)
        cell = Cell(
            float(values.mean()) if len(values) else None,
            float(values.std()) if len(values) else None,
            len(values),
            [p for p, _ in used],
        )
        rows.setdefault((s.dataset, s.model, s.label), {})[s.interpreter] = cell
    return rows


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def cell_text(cell: Cell | None, expected: int, tex: bool = False) -> str:
    """Args:
        cell: a Table 1 cell (None = no job).
        expected: how many ratios a complete cell has.
        tex: LaTeX math instead of plain text.

    Returns:
        ``mean ± std``, with ``(n=k)`` when fewer ratios than expected contributed.
    """
    if cell is None or cell.mean is None:
        return "n/a"
    pm = r" \pm " if tex else " ± "
    text = f"{_fmt(cell.mean)}{pm}{_fmt(cell.std)}"
    if tex:
        text = f"${text}$"
    return text + (f" (n={cell.n})" if cell.n < expected else "")


def _columns(rows: dict[tuple[str, str, str], dict[str, Cell]]) -> list[str]:
    return ordered((i for cells in rows.values() for i in cells), INTERPRETER_ORDER)


def write_table1(
    rows: dict[tuple[str, str, str], dict[str, Cell]], percents: Sequence[int], out: Path
) -> dict[str, Path]:
    """Write Table 1 as Markdown, CSV and LaTeX.

    Args:
        rows: from :func:`table1`.
        percents: the Table 1 ratios (for the caption and the completeness mark).
        out: output folder.

    Returns:
        ``table1.md``, ``table1.csv``, ``table1.tex`` paths.
    """
    cols = _columns(rows)
    multi_dataset = len({r[0] for r in rows}) > 1
    expected = len(percents)
    caption = (
        f"Angular distance Phi (rad) between coreset and full-data relevant features, mean ± std over "
        f"rho = {', '.join(str(p) for p in percents)} %. Lower = closer to the full data."
    )
    md = [caption, ""]
    head = (["Dataset"] if multi_dataset else []) + ["Model", "Selector"]
    head += [INTERPRETER_LABELS.get(c, c) for c in cols]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model, selector), cells in rows.items():
        lead = ([dataset] if multi_dataset else []) + [model, selector]
        md.append("| " + " | ".join(lead + [cell_text(cells.get(c), expected) for c in cols]) + " |")
    paths = {
        "table1.md": out / "table1.md",
        "table1.csv": out / "table1.csv",
        "table1.tex": out / "table1.tex",
    }
    paths["table1.md"].write_text("\n".join(md) + "\n")

    with open(paths["table1.csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["dataset", "model", "selector", "interpreter", "phi_mean", "phi_std", "n", "percents"]
        )
        for (dataset, model, selector), cells in rows.items():
            for interp in cols:
                c = cells.get(interp)
                if c is not None:
                    writer.writerow(
                        [dataset, model, selector, interp, c.mean, c.std, c.n, " ".join(map(str, c.percents))]
                    )

    tex = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _tex_escape(caption) + "}",
        r"\begin{tabular}{l" + "c" * len(cols) + "}",
        r"\toprule",
        "Selector & " + " & ".join(_tex_escape(INTERPRETER_LABELS.get(c, c)) for c in cols) + r" \\",
    ]
    current = None
    for (dataset, model, selector), cells in rows.items():
        group = f"{dataset} / {model}" if multi_dataset else model
        if group != current:
            tex += [
                r"\midrule",
                r"\multicolumn{" + str(len(cols) + 1) + "}{l}{\\textbf{" + _tex_escape(group) + r"}} \\",
            ]
            current = group
        texcells = [cell_text(cells.get(c), expected, tex=True) for c in cols]
        tex.append(_tex_escape(selector) + " & " + " & ".join(texcells) + r" \\")
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    paths["table1.tex"].write_text("\n".join(tex) + "\n")
    return paths


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("±", r"$\pm$"),
        ("<-", r"$\leftarrow$"),
    ):
        text = text.replace(a, b)
    return text


def artifact_summary(results: Sequence[JobResult]) -> dict[str, Any]:
    """How the sweep's jobs used the cache, from the ``artifacts`` records of their result.json.

    Args:
        results: loaded results.

    Returns:
        ``kinds``: kind -> {computed, reused, compute_seconds}; ``fit_full``: one entry per full-data fit
        key with the (model, interpreter), its ``role`` (``reference``, or ``null`` for the random-weights
        reference of SPEC 5, read from the cache's spec files when the cache is reachable), the jobs that
        computed it and how many used it; ``duplicates``: keys computed by more than one job (none when
        the lock works).
    """
    kinds: dict[str, dict[str, float]] = {}
    computed_by: dict[tuple[str, str], list[str]] = {}
    fit_full: dict[str, dict[str, Any]] = {}
    for res in results:
        p = res.payload
        cache_dir = (p.get("config") or {}).get("cache_dir")
        for rec in p.get("artifacts") or []:
            kind, key, computed = str(rec.get("kind")), str(rec.get("key")), bool(rec.get("computed"))
            k = kinds.setdefault(kind, {"computed": 0, "reused": 0, "compute_seconds": 0.0})
            k["computed" if computed else "reused"] += 1
            if computed:
                k["compute_seconds"] += float(rec.get("seconds") or 0.0)
                computed_by.setdefault((kind, key), []).append(res.name)
            if kind == "fit_full":
                if key not in fit_full:
                    fit_full[key] = {
                        "model": p.get("model"),
                        "interpreter": p.get("interpreter"),
                        "role": _fit_role(cache_dir, key),
                        "computed_in": [],
                        "used_by": 0,
                    }
                fit_full[key]["used_by"] += 1
                if computed:
                    fit_full[key]["computed_in"].append(res.name)
    duplicates = {f"{kind}/{key}": jobs for (kind, key), jobs in computed_by.items() if len(jobs) > 1}
    return {"kinds": kinds, "fit_full": fit_full, "duplicates": duplicates}


def _fit_role(cache_dir: str | None, key: str) -> str:
    """``reference`` or ``null`` (a fit on the random-weights model), from the cache's spec files."""
    if not cache_dir:
        return "unknown"
    try:
        spec = json.loads((Path(cache_dir) / "fit_full" / key / "spec.json").read_text())
        acts = json.loads((Path(cache_dir) / "activations" / str(spec["train"]) / "spec.json").read_text())
    except (OSError, ValueError, KeyError):
        return "unknown"
    return "null" if (acts.get("model") or {}).get("weights") == "random" else "reference"


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
        vebi_percent: the rho (%) of the VEBI units figure (default: the smallest of 10..50 present).

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
    percents = _table1_percents(results)
    rows = table1(series, percents)
    files = write_table1(rows, percents, out)
    figures = {
        "fig2_accuracy.png": accuracy_figure(series, out / "fig2_accuracy.png"),
        "fig3_vebi_units.png": vebi_figure(series, out / "fig3_vebi_units.png", vebi_percent),
        "fig4_phi.png": phi_figure(series, out / "fig4_phi.png"),
        "cost.png": cost_figure(series, out / "cost.png"),
    }
    for name, path in figures.items():
        if path is not None:
            files[name] = path
        elif (out / name).exists():
            (out / name).unlink()  # a stale figure from an earlier report would contradict this one
    extra = report_extras(results, series, percents, out)
    for name, _, path in extra.figures:
        figures[name] = path
        files[name] = path
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
        "series": [
            {
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
            for s in series
        ],
        "artifacts": artifacts,
        "jobs": [_job_row(r) for r in results],
        **extra.summary,
    }
    files["summary.json"] = out / "summary.json"
    files["summary.json"].write_text(json.dumps(summary, indent=1, default=str))
    files["report.html"] = out / "report.html"
    page = _html(sweep_dir, results, rows, percents, figures, artifacts, counts, extra.html)
    files["report.html"].write_text(page.replace("<h2>Artifact cache</h2>", _ice_accuracy_html(series), 1))
    report = Report(out, files, rows, counts, series)
    mode = _wandb_mode(results, wandb_mode)
    if mode != "disabled" and rows:
        try:
            report.wandb_run = log_wandb_table(results, rows, percents, figures, sweep_dir, out, mode)
        except Exception as err:  # noqa: BLE001 - the files above are the report; W&B is extra
            log.warning("W&B table not logged: %s", err)
    return report


def _ice_accuracy_html(series: Sequence[Series]) -> str:
    """ICE's two accuracies per rho beside the intact model's, followed by the Artifact cache heading
    (the page's next section); only that heading when no ICE series carries both."""
    e = html.escape
    rows = [s for s in series if s.interpreter == "ice" and s.curve("accuracy_true_class")[0]]
    tail = "<h2>Artifact cache</h2>"
    if not rows:
        return tail
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
        a, t = values.get("accuracy"), values.get("accuracy_true_class")
        return f"{_pct(a)} / {_pct(t)}"

    for s in rows:
        cells = "".join(f"<td class='num'>{e(pair(s.points.get(p, {})))}</td>" for p in percents)
        parts.append(
            f"<tr><td>{e(s.model)}</td><td>{e(s.label)}</td>{cells}<td class='num'>{e(pair(s.full))}</td>"
            f"<td class='num'>{e(_pct(s.model_accuracy))}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts) + "\n" + tail


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _table1_percents(results: Sequence[JobResult]) -> list[int]:
    for r in reversed(results):
        metric = (r.payload.get("config") or {}).get("metric") or {}
        if metric.get("table1_percents"):
            return [int(p) for p in metric["table1_percents"]]
    return list(DEFAULT_TABLE1_PERCENTS)


def _job_row(r: JobResult) -> dict[str, Any]:
    p = r.payload
    recs = p.get("artifacts") or []
    return {
        "dir": str(r.path.parent),
        "name": r.name,
        "status": r.status,
        "wall_seconds": p.get("wall_seconds"),
        "computed": sum(bool(x.get("computed")) for x in recs),
        "reused": sum(not x.get("computed") for x in recs),
        "error": p.get("error"),
    }


def _wandb_mode(results: Sequence[JobResult], requested: str) -> str:
    if requested != "auto":
        return requested
    for r in reversed(results):
        logger = (r.payload.get("config") or {}).get("logger") or {}
        if logger.get("name") == "wandb":
            return str(logger.get("mode") or os.environ.get("WANDB_MODE", "offline"))
    return "disabled"


def log_wandb_table(
    results: Sequence[JobResult],
    rows: dict[tuple[str, str, str], dict[str, Cell]],
    percents: Sequence[int],
    figures: dict[str, Path | None],
    sweep_dir: Path,
    out: Path,
    mode: str,
) -> Path | None:
    """Log Table 1 as one ``wandb.Table`` (and the figures) in a run of the sweep's group.

    Args:
        results: loaded results (for the project and group the jobs used).
        rows: Table 1.
        percents: the Table 1 ratios.
        figures: figure name -> PNG (or None).
        sweep_dir: the sweep folder (the group's fallback name).
        out: the report folder (the run's files go to ``<out>/wandb``).
        mode: ``offline`` or ``online``.

    Returns:
        The run's local folder.
    """
    import wandb

    logger: dict[str, Any] = {}
    groups: Counter[str] = Counter()
    for r in results:
        logger = (r.payload.get("config") or {}).get("logger") or logger
        group = (r.payload.get("job") or {}).get("group")
        if group:
            groups[str(group)] += 1
    group = groups.most_common(1)[0][0] if groups else sweep_dir.name
    columns = ["dataset", "model", "selector", "interpreter", "phi_mean", "phi_std", "n", "cell"]
    table = wandb.Table(columns=columns)
    for (dataset, model, selector), cells in rows.items():
        for interp, cell in cells.items():
            table.add_data(
                dataset, model, selector, interp, cell.mean, cell.std, cell.n, cell_text(cell, len(percents))
            )
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        mode=mode,
        project=str(logger.get("project") or "coreset_interp"),
        entity=logger.get("entity"),
        group=group,
        job_type="report",
        name=f"table1 {group}",
        tags=["report"],
        dir=str(out),
        config={"sweep_dir": str(sweep_dir), "table1_percents": list(percents)},
        reinit="finish_previous",
    )
    try:
        data: dict[str, Any] = {"table1": table}
        data.update({f"figures/{Path(name).stem}": wandb.Image(str(p)) for name, p in figures.items() if p})
        run.log(data)
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020} .running{color:#8a6d00} .completed{color:#1b5e20}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0} pre{white-space:pre-wrap;font-size:12px}
.note{color:#555;font-size:13px}
"""


def _html(
    sweep_dir: Path,
    results: Sequence[JobResult],
    rows: dict[tuple[str, str, str], dict[str, Cell]],
    percents: Sequence[int],
    figures: dict[str, Path | None],
    artifacts: dict[str, Any],
    counts: dict[str, int],
    extra_html: str = "",
) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>coreset-interp report: {e(sweep_dir.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Sweep report: {e(sweep_dir.name)}</h1>",
        f"<p class='note'>{e(str(sweep_dir))} &middot; generated {e(time.strftime('%Y-%m-%d %H:%M:%S'))}"
        f" &middot; {len(results)} job(s): "
        + ", ".join(f"<span class='{e(k)}'>{v} {e(k)}</span>" for k, v in sorted(counts.items()))
        + "</p>",
    ]
    bad = [r for r in results if r.status != "completed"]
    if bad:
        parts.append("<h2>Jobs that did not complete</h2>")
        parts.append(
            "<p class='note'>Status <b>running</b>: the job's heartbeat is fresh; <b>killed</b>: it stopped; "
            "rerun the same command to finish the sweep (complete artifacts are reused).</p>"
        )
        parts.append("<table><tr><th>job</th><th>status</th><th>error</th><th>folder</th></tr>")
        for r in bad:
            tb = r.payload.get("traceback")
            err = e(str(r.payload.get("error") or ""))
            if tb:
                err += f"<details><summary>traceback</summary><pre>{e(str(tb))}</pre></details>"
            parts.append(
                f"<tr><td>{e(r.name)}</td><td class='{e(r.status)}'>{e(r.status)}</td>"
                f"<td>{err}</td><td>{e(str(r.path.parent))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Table 1</h2>")
    parts.append(
        f"<p class='note'>Angular distance Phi (rad) between coreset and full-data relevant "
        f"features: mean &plusmn; std over rho = {e(', '.join(map(str, percents)))} %. Lower is "
        f"closer to the full data; (n=k) marks cells with fewer ratios.</p>"
    )
    if rows:
        cols = _columns(rows)
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
    parts.append(extra_html)
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
    parts.append(
        "<h2>Jobs</h2><table><tr><th>job</th><th>status</th><th>wall s</th>"
        "<th>artifacts computed / reused</th><th>folder</th></tr>"
    )
    for r in results:
        row = _job_row(r)
        wall = finite_number(row["wall_seconds"])
        parts.append(
            f"<tr><td>{e(row['name'])}</td><td class='{e(r.status)}'>{e(r.status)}</td>"
            f"<td class='num'>{'' if wall is None else f'{wall:.1f}'}</td>"
            f"<td class='num'>{row['computed']} / {row['reused']}</td><td>{e(row['dir'])}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``coreset-interp-report`` command.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status (0, or 2 when the folder holds no result.json).
    """
    parser = argparse.ArgumentParser(
        prog="coreset-interp-report",
        description="Aggregate a (finished or partial) sweep folder into Table 1, the paper's figures and "
        "report.html.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. outputs/multirun/<date>")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "offline", "online", "disabled"],
        help="log Table 1 as a wandb.Table; auto = as the jobs' logger config (default)",
    )
    parser.add_argument("--vebi-percent", type=int, default=None, help="rho (%%) of the VEBI units figure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.sweep_dir.is_dir():
        print(f"error: no such folder: {args.sweep_dir}", file=sys.stderr)
        return 2
    report = build_report(args.sweep_dir, args.out, args.wandb, args.vebi_percent)
    if not sum(report.counts.values()):
        print(f"error: no result.json below {args.sweep_dir}", file=sys.stderr)
        return 2
    print(f"jobs: {report.counts}")
    print(report.files["table1.md"].read_text())
    for name, path in report.files.items():
        print(f"{name}: {path}")
    if report.wandb_run is not None:
        print(f"W&B run: {report.wandb_run} (upload with `wandb sync {report.wandb_run}` when offline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
