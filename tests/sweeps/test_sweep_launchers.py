"""Real multiruns on the embedded default at a tiny size, through every launcher the README names.

Each test starts ``python -m coreset_interp.run -m ...`` in a subprocess (so the launches are real) with
the session's artifact cache, which already holds the trained model and its activations; a test-specific
``seed`` makes its coresets and fits cold, so the runs prove what they compute and what they share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A tiny job: 3-component ICE on 10 and 20 % coresets, no W&B, no null reference.
TINY = [
    "logger=none",
    "progress=false",
    "interpreter=ice",
    "interpreter.n_components=3",
    "interpreter.max_iter=30",
    "ratio.percents=[10,20]",
    "metric.null_reference=false",
]


@pytest.fixture(scope="module")
def trained_cache(digits_workspace: Any, session_cache_dir: Path) -> Path:
    """The session cache, with the embedded default's trained model and activations in it."""
    return session_cache_dir


def run_sweep(args: list[str], sweep_dir: Path, cache_dir: Path, timeout: float = 600) -> str:
    """Run one multirun to completion.

    Args:
        args: overrides after the tiny defaults.
        sweep_dir: ``hydra.sweep.dir``.
        cache_dir: the artifact cache.
        timeout: seconds.

    Returns:
        The command's combined output (the test fails with it when the command fails).
    """
    cmd = [
        sys.executable,
        "-m",
        "coreset_interp.run",
        "-m",
        *TINY,
        f"cache_dir={cache_dir}",
        f"hydra.sweep.dir={sweep_dir}",
        *args,
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=sweep_dir.parent, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Args:
        sweep_dir: a sweep folder.

    Returns:
        The result.json of every job folder, by job number.
    """
    paths = sorted(sweep_dir.glob("*/result.json"), key=lambda p: p.parent.name)
    return [
        json.loads(p.read_text()) | {"_mtime": p.stat().st_mtime} for p in paths if p.parent.name.isdigit()
    ]


def assert_report(sweep_dir: Path, n_rows: int) -> None:
    """The callback wrote Table 1 with ``n_rows`` rows, the figures and the HTML page."""
    report = sweep_dir / "report"
    for name in (
        "table1.md",
        "table1.csv",
        "table1.tex",
        "fig2_accuracy.png",
        "fig4_phi.png",
        "cost.png",
        "report.html",
    ):
        assert (report / name).is_file(), f"missing {name}"
    lines = [x for x in (report / "table1.md").read_text().splitlines() if x.startswith("| resnet18")]
    assert len(lines) == n_rows


def assert_full_fit_once(res: list[dict[str, Any]]) -> None:
    """The full-data reference of each (model, interpreter) is computed by exactly one job."""
    by_pair: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for r in res:
        for rec in r["artifacts"]:
            if rec["kind"] == "fit_full":
                by_pair.setdefault((r["model"], r["interpreter"]), []).append((rec["key"], rec["computed"]))
    assert by_pair
    for pair, recs in by_pair.items():
        assert len({k for k, _ in recs}) == 1, f"{pair}: jobs used different full-data references"
        assert sum(c for _, c in recs) == 1, (
            f"{pair}: full-data reference computed {sum(c for _, c in recs)}x"
        )


@pytest.mark.slow
def test_basic_launcher_sweep_with_wandb(trained_cache: Path, tmp_path: Path) -> None:
    """The default (sequential) launcher with the W&B logger, offline: every job completes, the full fit
    is shared, each job's run holds its per-rho metrics, Table 1 summary and figure, and the report's run
    holds Table 1 as a wandb.Table (checked in the offline run files)."""
    sweep = tmp_path / "basic"
    run_sweep(["seed=101", "selector=random,moderate", "logger=wandb"], sweep, trained_cache)
    res = results(sweep)
    assert [r["status"] for r in res] == ["completed", "completed"]
    assert [r["selector"] for r in res] == ["random", "moderate"]
    assert_full_fit_once(res)
    # The W&B run name is the override string, without the cache folder.
    name = res[1]["job"]["name"]
    assert "selector=moderate" in name and "seed=101" in name and "cache_dir" not in name
    assert all((sweep / str(i) / "metrics.jsonl").read_text().count("\n") == 2 for i in range(2))
    assert_report(sweep, 2)

    for i in range(2):
        runs = list((sweep / str(i) / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1, "expected one offline run in the job folder"
        data = runs[0].read_bytes()
        for key in (
            b"coreset/angular_distance",  # per-rho line chart ...
            b"coreset/accuracy",
            b"coreset/fit_seconds",
            b"percent",  # ... against x = rho in percent
            b"table1/mean",  # summary = the job's Table 1 entry
            b"table1/std",
            b"full/accuracy",
            b"summary",  # the job's figure
            sweep.name.encode(),  # group = the sweep
            f"selector={res[i]['selector']}".encode(),  # name and tags
        ):
            assert key in data, f"{key!r} not in job {i}'s W&B run"
        assert (sweep / str(i) / "figures" / "summary.png").is_file()

    reports = list((sweep / "report" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(reports) == 1, "the sweep report did not log its W&B run"
    data = reports[0].read_bytes()
    for key in (b"table1", b"figures/fig4_phi", b"report", sweep.name.encode()):
        assert key in data, f"{key!r} not in the report's W&B run"
    # The table's rows live in a media file next to the run, referenced from the .wandb log.
    tables = list((sweep / "report" / "wandb").glob("offline-run-*/files/media/table/table1_*.table.json"))
    assert tables, "the wandb.Table file is missing"
    table = json.loads(tables[0].read_text())
    assert table["columns"][:6] == ["dataset", "model", "selector", "interpreter", "phi_mean", "phi_std"]
    assert [row[1:4] for row in table["data"]] == [
        ["resnet18", "random", "ice"],
        ["resnet18", "moderate", "ice"],
    ]


@pytest.mark.slow
def test_joblib_two_workers_share_one_cache(trained_cache: Path, tmp_path: Path) -> None:
    """joblib with 2 workers: jobs overlap in time, compute the full-data fit once, and a job that fails
    later in the same sweep folder is listed by the report that the sweep's end writes."""
    sweep = tmp_path / "joblib"
    run_sweep(
        ["seed=102", "selector=random,moderate,kcenter", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        sweep,
        trained_cache,
    )
    res = results(sweep)
    assert [r["status"] for r in res] == ["completed"] * 3
    assert_full_fit_once(res)
    # Two workers: some pair of jobs ran at the same time (start = end - wall time).
    spans = sorted((r["_mtime"] - r["wall_seconds"], r["_mtime"]) for r in res)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
    # Everything but the coresets of each selector came from the cache or from the other worker.
    waited_or_reused = [rec for r in res for rec in r["artifacts"] if rec["kind"] == "fit_full"]
    assert sum(not rec["computed"] for rec in waited_or_reused) == 2
    assert_report(sweep, 3)

    # A failing job (a ratio of 150 %) added to the same folder: the sweep still ends with a report.
    run_sweep(
        ["seed=102", "selector=random", "ratio.percents=[150]", "hydra.sweep.subdir=bad"],
        sweep,
        trained_cache,
    )
    bad = json.loads((sweep / "bad" / "result.json").read_text())
    assert bad["status"] == "failed" and "150" in bad["error"]
    html = (sweep / "report" / "report.html").read_text()
    assert "Jobs that did not complete" in html and "150" in html
    summary = json.loads((sweep / "report" / "summary.json").read_text())
    assert summary["counts"] == {"completed": 3, "failed": 1}


@pytest.mark.slow
def test_submitit_preset_on_the_local_executor(trained_cache: Path, tmp_path: Path) -> None:
    """The submitit presets' settings through submitit's local executor (each job pickled to a process)."""
    sweep = tmp_path / "submitit"
    run_sweep(["seed=103", "selector=random,moderate", "hydra/launcher=slurm_local"], sweep, trained_cache)
    res = results(sweep)
    assert [r["status"] for r in res] == ["completed", "completed"]
    assert_full_fit_once(res)
    assert list((sweep / ".submitit").glob("*/*_result.pkl")), "submitit did not run the jobs"
    assert_report(sweep, 2)


@pytest.fixture
def local_ray() -> Iterator[str]:
    """A local Ray instance started by the test (2 CPUs, no dashboard); yields its address."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_cluster_preset_on_a_local_instance(trained_cache: Path, tmp_path: Path, local_ray: str) -> None:
    """The ray_cluster preset connects to a running Ray instance by address and runs the jobs on it."""
    sweep = tmp_path / "ray"
    run_sweep(
        [
            "seed=104",
            "selector=random,moderate",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={local_ray}",
            "hydra.launcher.ray.remote.num_cpus=1",
            # The preset asks a GPU and 48 GiB per job; this machine's instance has neither.
            "hydra.launcher.ray.remote.num_gpus=0",
            "~hydra.launcher.ray.remote.memory",
        ],
        sweep,
        trained_cache,
    )
    res = results(sweep)
    assert [r["status"] for r in res] == ["completed", "completed"]
    assert_full_fit_once(res)
    assert_report(sweep, 2)
