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
as a ``wandb.Table`` when the sweep's jobs logged to W&B (through the W&B tracker).

Modules, one job each: :mod:`~coreset_interp.report.keys` (every result.json key read here and by the
figures), :mod:`~coreset_interp.report.load` (finding jobs, reading results and their config),
:mod:`~coreset_interp.report.series` (the data model), :mod:`~coreset_interp.report.aggregation` (series,
mean over seeds, cache use), :mod:`~coreset_interp.report.tables` (Table 1 and its companions),
:mod:`~coreset_interp.report.html` (report.html), :mod:`~coreset_interp.report.build` (writing it all) and
:mod:`~coreset_interp.report.cli` (the command).
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each public name lives. Loaded on first use, so that the figures (coreset_interp.viz) can read
# coreset_interp.report.keys and the data model without importing the report, which imports them.
_EXPORTS = {
    "build_report": "build",
    "Report": "build",
    "main": "cli",
    "load_results": "load",
    "JobResult": "load",
    "selector_label": "load",
    "aggregate": "aggregation",
    "artifact_summary": "aggregation",
    "Series": "series",
    "Cell": "series",
    "table1": "tables",
    "write_table1": "tables",
    "cell_text": "tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Args:
        name: a public name of the package.

    Returns:
        It, from its module.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
