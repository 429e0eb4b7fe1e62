"""Report series never merge configurations: a series is every resolved config value that can change a
number (``coreset_interp.identity``), except the seed; values that differ become part of the row label."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coreset_interp.identity import NON_RESULT_KEYS, SERIES_EXCLUDED, can_change_a_number, result_identity
from coreset_interp.report import build_report
from coreset_interp.viz import styles
from tests.report.test_report_tables import PHI, payload, write_job

REPO = Path(__file__).resolve().parents[2]


def _with_config(body: dict[str, Any], **values: Any) -> dict[str, Any]:
    """``body`` with dotted config values set (e.g. ``**{"metric.alpha": 0.0}``)."""
    for dotted, value in values.items():
        node = body["config"]
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return body


def test_result_identity_keeps_every_value_that_can_change_a_number() -> None:
    """Protects the one list of keys that cannot change a number: outputs, logger, launcher, progress,
    caches, worker counts, extraction/planning/parallelism settings and the seeds are left out;
    method, metric, model and data values (including ones added later) stay in."""
    config = {
        "seed": 3,
        "selection_seeds": [0, 1],
        "cache_dir": "/tmp/c",
        "cache": {"lock_timeout": 5},
        "skip_completed": True,
        "job_heartbeat": {"interval": "60s"},
        "logger": {"name": "wandb", "mode": "offline"},
        "hydra": {"launcher": {"n_jobs": 2}},
        "progress": False,
        "num_workers": 4,
        "batch_size": 256,
        "n_jobs": 2,
        "extract": {"num_shards": 4, "chunk_size": 512, "autocast": True},
        "plan": {"budget": 1},
        "experiment_name": "quick",
        "ratio": {"percents": [10, 30]},
        "device": "cpu",
        "activation_dtype": "float16",
        "metric": {"alpha": 0.0, "null_reference": True, "table1_percents": [10]},
        "model": {"name": "resnet18", "train": {"seed": 1}},
        "selector": {"name": "kcenter", "k": 5},
        "interpreter": {"name": "topic", "batch_size": 64, "working_set": 9, "new_knob": 1},
    }
    ident = result_identity(config)
    assert ident == {
        "activation_dtype": "float16",
        "extract.autocast": True,
        "device": "cpu",
        "interpreter.name": "topic",
        "interpreter.batch_size": 64,
        "interpreter.new_knob": 1,
        "metric.alpha": 0.0,
        "model.name": "resnet18",
        "model.train.seed": 1,
        "selector.name": "kcenter",
        "selector.k": 5,
    }
    assert not can_change_a_number("parallel.n_jobs") and can_change_a_number("model.train.seed")
    assert "seed" in SERIES_EXCLUDED and "seed" not in NON_RESULT_KEYS and "cache.*" in NON_RESULT_KEYS


def test_sweep_over_alpha_gives_one_row_per_configuration(tmp_path: Path) -> None:
    """Protects Table 1, the figures and summary.json against merged configurations: two values of
    metric.alpha (each with two seeds) and two checkpoints give one labelled row each, where the first
    version kept one row and let the later job replace the earlier one. Jobs differing only in seed are
    averaged; jobs differing only in cache_dir, logger or batch_size are the same configuration."""
    root = tmp_path / "sweep"
    for alpha, shift in ((0.0, 0.0), (1.0, 0.2)):
        for seed in (0, 1):
            body = payload(
                "resnet18", "moderate", "ice", {p: PHI[p] + shift + 0.02 * seed for p in PHI}, seed=seed
            )
            write_job(root, f"a{alpha}_s{seed}", _with_config(body, **{"metric.alpha": alpha}))
    for n, (train_seed, cache, batch) in enumerate(((0, "/c1", 128), (0, "/c2", 64), (1, "/c1", 128))):
        body = payload("resnet18", "random", "vebi", PHI, logger="wandb" if n else "none")
        extra = {"model.train.seed": train_seed, "cache_dir": cache, "batch_size": batch}
        write_job(root, f"m{n}", _with_config(body, **extra))
    report = build_report(root, wandb_mode="disabled")
    rows = report.table1
    assert set(rows) == {
        ("digits", "resnet18", "moderate [metric.alpha=0]"),
        ("digits", "resnet18", "moderate [metric.alpha=1]"),
        ("digits", "resnet18", "random [model.train.seed=0]"),
        ("digits", "resnet18", "random [model.train.seed=1]"),
    }
    values = [PHI[p] for p in (10, 20, 30, 40, 50)]
    a0 = rows[("digits", "resnet18", "moderate [metric.alpha=0]")]["ice"]
    a1 = rows[("digits", "resnet18", "moderate [metric.alpha=1]")]["ice"]
    # Mean over the two seeds (+0 and +0.02) at every rho.
    assert a0.mean == pytest.approx(sum(values) / 5 + 0.01)
    assert a1.mean == pytest.approx(sum(values) / 5 + 0.21)
    csv_rows = list(csv.DictReader((report.out / "table1.csv").open()))
    assert len(csv_rows) == 4 and len({r["selector"] for r in csv_rows}) == 4
    assert "| resnet18 | moderate [metric.alpha=0] |" in (report.out / "table1.md").read_text()
    summary = json.loads(report.files["summary.json"].read_text())
    assert len(summary["series"]) == 4 and len(summary["table1"]) == 4
    (m0,) = [s for s in summary["series"] if s["label"] == "random [model.train.seed=0]"]
    assert m0["jobs"] == 2 and m0["identity"]["model.train.seed"] == 0
    # Figs. 2-4 draw every series with a marker of its own.
    ice = [s for s in report.series if s.interpreter == "ice"]
    assert len(ice) == 2 and len({styles(ice)[1][s.label] for s in ice}) == 2


@pytest.mark.slow
def test_multirun_over_alpha_gives_two_rows_and_two_fig4_series(
    digits_workspace, session_cache_dir: Path, tmp_path: Path
) -> None:
    """``coreset-interp -m metric.alpha=0,1 ratio.percents=[10,30] logger=none`` (kept small: few NMF
    iterations, no null reference): two rows in table1.csv and two series in Fig. 4."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "coreset_interp.run",
            "-m",
            "metric.alpha=0,1",
            "ratio.percents=[10,30]",
            "logger=none",
            "progress=false",
            "interpreter.max_iter=20",
            "metric.null_reference=false",
            f"cache_dir={session_cache_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "report" / "table1.csv").open()))
    assert sorted(r["selector"] for r in rows) == ["moderate [metric.alpha=0]", "moderate [metric.alpha=1]"]
    assert rows[0]["phi_mean"] != rows[1]["phi_mean"]
    summary = json.loads((sweep / "report" / "summary.json").read_text())
    phi_series = [s for s in summary["series"] if s["percents"] == [10, 30]]
    assert len(phi_series) == 2 and (sweep / "report" / "fig4_phi.png").stat().st_size > 10_000
