"""Table 1 (mean +- std of Phi over the Table 1 ratios) as Markdown, CSV and LaTeX, its companion of
normalised Phi (reality checks) and the cascading-randomisation rows."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coreset_interp import results
from coreset_interp.report import keys as K
from coreset_interp.report.series import Cell, Series
from coreset_interp.viz import INTERPRETER_LABELS, INTERPRETER_ORDER, finite_number, ordered
from coreset_interp.viz_reality import cascade_curve

Rows = dict[tuple[str, str, str], dict[str, Cell]]


def table1(series: Sequence[Series], percents: Sequence[int]) -> Rows:
    """The paper's Table 1: mean +- std of Phi over the given ratios, rows = (dataset, model, selector
    label), one row per distinct configuration (the label carries the series' variant).

    Args:
        series: aggregated series.
        percents: the ratios (integer %) that enter each cell.

    Returns:
        row -> interpreter -> cell.
    """
    wanted = {int(p) for p in percents}
    rows: Rows = {}
    for s in series:
        used = [(p, v) for p, v in zip(*s.curve(K.PHI), strict=True) if p in wanted]
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


def columns(rows: Rows) -> list[str]:
    return ordered((i for cells in rows.values() for i in cells), INTERPRETER_ORDER)


def write_table1(rows: Rows, percents: Sequence[int], out: Path) -> dict[str, Path]:
    """Write Table 1 as Markdown, CSV and LaTeX.

    Args:
        rows: from :func:`table1`.
        percents: the Table 1 ratios (for the caption and the completeness mark).
        out: output folder.

    Returns:
        ``table1.md``, ``table1.csv``, ``table1.tex`` paths.
    """
    cols = columns(rows)
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
        phis = [v for pt in pts if (v := finite_number(pt.get(K.PHI))) is not None]
        norms = [v for pt in pts if (v := finite_number(pt.get(K.PHI_NORMALISED))) is not None]
        stds = [v for pt in pts if (v := finite_number(pt.get(K.PHI_STD))) is not None]
        bands = s.reality
        floor, null = bands.get("floor"), bands.get("null")
        rows.append(
            {
                "dataset": s.dataset,
                "model": s.model,
                "selector": s.selector,
                "interpreter": s.interpreter,
                "phi": float(np.mean(phis)) if phis else None,
                results.PHI_NORMALISED: float(np.mean(norms)) if norms else None,
                "phi_normalised_std": float(np.std(norms)) if norms else None,
                "seed_std": float(np.mean(stds)) if stds else None,
                "floor": floor["mean"] if floor else None,
                "null": null["mean"] if null else None,
                "n": len(phis),
            }
        )
    return rows


def cascade_rows(payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cascading-randomisation table: one row per (model, interpreter), the first job's.

    Args:
        payloads: completed results.

    Returns:
        ``model``, ``interpreter``, ``steps`` (labels), ``phi`` per step, ``null`` and ``floor``.
    """
    out, seen = [], set()
    for p in payloads:
        if not (p.get(K.CASCADE) or {}).get(K.CASCADE_STEPS):
            continue
        key = (p.get(K.MODEL), p.get(K.INTERPRETER))
        if key in seen:
            continue
        seen.add(key)
        labels, values = cascade_curve(p)
        null = (p.get(K.NULL_REFERENCE) or {}).get(K.PHI)
        floor = (p.get(K.NOISE_FLOOR) or {}).get(K.PHI)
        out.append(
            {
                "model": p.get(K.MODEL),
                "interpreter": p.get(K.INTERPRETER),
                "steps": [s.replace("\n", " ") for s in labels],
                "phi": values,
                "null": null,
                "floor": floor,
            }
        )
    return out
