"""W&B, offline: each job's run holds the per-rho metrics, its Table 1 summary and its figures, and the
report's run holds Table 1 as a wandb.Table (checked in the binary .wandb files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_offline_runs_contain_the_logged_metrics(
    digits_workspace: Any, session_cache_dir: Path, tmp_path: Path
) -> None:
    """A one-job multirun with logger=wandb: job run and report run files carry the metric names."""
    sweep = tmp_path / "wandb_sweep"
    cmd = [
        sys.executable, "-m", "coreset_interp.run", "-m", "logger=wandb", "progress=false", "interpreter=ice",
        "interpreter.params.n_components=3", "interpreter.params.max_iter=30", "ratio.percents=[10,20]",
        "metric.null_reference=false", "seed=106", "selector=random", f"cache_dir={session_cache_dir}",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "completed"

    runs = list((sweep / "0" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "expected one offline run in the job folder"
    data = runs[0].read_bytes()
    for name in (
        b"coreset/angular_distance",  # per-rho line chart ...
        b"coreset/accuracy",
        b"coreset/fit_seconds",
        b"percent",  # ... against x = rho in percent
        b"table1/mean",  # summary = the job's Table 1 entry
        b"table1/std",
        b"full/accuracy",
        b"summary",  # the job's figure
        sweep.name.encode(),  # group = the sweep
        b"selector=random",  # name / tags
    ):
        assert name in data, f"{name!r} not in the job's W&B run"
    assert (sweep / "0" / "figures" / "summary.png").is_file()

    reports = list((sweep / "report" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(reports) == 1, "the sweep report did not log its W&B run"
    data = reports[0].read_bytes()
    for name in (b"table1", b"figures/fig4_phi", b"report", sweep.name.encode()):
        assert name in data, f"{name!r} not in the report's W&B run"
    # The table's rows live in a media file next to the run, referenced from the .wandb log.
    tables = list((sweep / "report" / "wandb").glob("offline-run-*/files/media/table/table1_*.table.json"))
    assert tables, "the wandb.Table file is missing"
    table = json.loads(tables[0].read_text())
    assert table["columns"][:6] == ["dataset", "model", "selector", "interpreter", "phi_mean", "phi_std"]
    assert table["data"][0][1:4] == ["resnet18", "random", "ice"]
