"""The `coreset-interp` command as a user runs it: a real subprocess with Hydra overrides, W&B offline.
Every test here starts Python with torch (10-40 s on a loaded 2-core machine), hence all marked slow.

The jobs reuse the session cache (trained model, activations, and the pipeline tests' coresets and fits),
so they measure the command's plumbing rather than retrain."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RESULT_KEYS = {"status", "error", "config", "model_accuracy", "full", "ratios", "table1"}


# The console script the README gives (other tests start `python -m coreset_interp.run`): it finds the
# configs from any working directory.
COMMAND = Path(sys.executable).with_name("coreset-interp")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Hydra's flags (-m) must come before the overrides.
    return subprocess.run(
        [str(COMMAND), *args, "progress=false"],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _offline_runs(job_dir: Path) -> list[Path]:
    return sorted((job_dir / "wandb").glob("offline-run-*"))


def _check_complete(result: dict[str, Any], percents: list[int]) -> None:
    assert result["status"] == "completed", result.get("error")
    assert result.keys() >= RESULT_KEYS
    assert [e["percent"] for e in result["ratios"]] == percents
    for e in result["ratios"]:
        assert math.isfinite(e["accuracy"]) and 0.0 <= e["angular_distance"] <= math.pi


@pytest.mark.slow
def test_single_job_with_wandb_offline(digits_workspace, session_cache_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _run(
        ["logger=wandb", "ratio.percents=[20]", f"cache_dir={session_cache_dir}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The command says where its result is.
    assert f"result: {run_dir / 'result.json'} (completed)" in proc.stdout
    result = json.loads((run_dir / "result.json").read_text())
    _check_complete(result, [20])
    assert result["config"]["cache_dir"] == str(session_cache_dir)
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # One offline W&B run per job, in the job's folder, with its binary log.
    runs = _offline_runs(run_dir)
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))


@pytest.mark.slow
def test_bad_value_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # A relative cache_dir resolves against the directory the command starts from.
    proc = _run(
        ["logger=none", "ratio.percents=[0]", "cache_dir=rel_cache", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: ConfigError: ratio must be in (0, 1]: got 0% (ratio.percents are integer percentages)"
    ]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["error"] == errors[0].removeprefix("error: ")
    assert result["config"]["cache_dir"] == str(tmp_path / "rel_cache")
    # Validation comes before any work: nothing was cached.
    assert not (tmp_path / "rel_cache").exists()


@pytest.mark.slow
def test_unresolvable_config_still_writes_result_json(tmp_path: Path) -> None:
    # A missing mandatory value fails while resolving the config, before the job proper starts.
    run_dir = tmp_path / "run"
    proc = _run(["logger=none", "model.weights=???", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: MissingMandatoryValue: Missing mandatory value: weights")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "model.weights" in result["error"]


@pytest.mark.slow
def test_old_params_override_is_a_one_line_error_naming_the_new_path(tmp_path: Path) -> None:
    # Checked before Hydra composes the config: Hydra's own error for the unknown key spans many lines.
    for old, new in (
        ("selector.params.k=10", "selector.k"),
        ("interpreter.params.n_components=5", "interpreter.n_components"),
        ("model@selector.params.source_model=vgg19", "model@selector.source_model"),
    ):
        proc = _run(["selector=dgpruning", old], tmp_path)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert lines == [
            f"error: {old.split('=')[0]} is the old config shape; fields are flat now, use {new}=..."
        ]
    # Added with `+`, the old block reaches the selector registry, which names the new path in one line.
    run_dir = tmp_path / "run"
    proc = _run(
        ["logger=none", "selector=dgpruning", "+selector.params.k=10", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert (
        "selector.params is the old config shape" in errors[0]
        and "selector.params.k -> selector.k" in errors[0]
    )
    # The new path works: the composed job carries the flat field.
    proc = _run(["--cfg", "job", "selector=dgpruning", "selector.k=10"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "k: 10" in proc.stdout


@pytest.mark.slow
def test_unknown_selector_is_hydras_clear_error(tmp_path: Path) -> None:
    proc = _run(["selector=nope", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'selector/nope'" in proc.stderr
    # Hydra lists the valid choices.
    assert "moderate" in proc.stderr and "random" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_multirun_writes_one_result_per_job(
    digits_workspace, session_cache_dir: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    proc = _run(
        [
            "-m",
            "selector=random,moderate",
            "ratio.percents=[5,95]",
            f"cache_dir={session_cache_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    selectors = {}
    for job in ("0", "1"):
        result = json.loads((sweep / job / "result.json").read_text())
        _check_complete(result, [5, 95])
        phi = {e["percent"]: e["angular_distance"] for e in result["ratios"]}
        assert phi[95] < phi[5]
        selectors[result["selector"]] = job
        assert f"result: {sweep / job / 'result.json'} (completed)" in proc.stdout
        # The default logger is W&B (offline): one run per job of the sweep.
        assert len(_offline_runs(sweep / job)) == 1
    assert selectors == {"random": "0", "moderate": "1"}
