"""``coreset-interp-report`` on hand-made sweep folders: Table 1 numbers, partial sweeps, failed jobs."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coreset_interp.report import build_report, main

LAYERS = ["layer1.0.relu#0", "layer2.0.relu#1", "layer3.0.relu#2", "layer4.1.relu#3"]


def payload(
    model: str,
    selector: str,
    interp: str,
    phis: dict[int, float],
    *,
    seed: int = 0,
    status: str = "completed",
    logger: str = "none",
) -> dict[str, Any]:
    """A result.json like the pipeline writes, with accuracy falling and Phi as given per percent."""
    ratios = []
    for p, phi in phis.items():
        entry: dict[str, Any] = {
            "ratio": p / 100,
            "percent": p,
            "n_selected": 14 * p,
            "accuracy": 0.9 + p / 1000,
            "angular_distance": phi,
            "angular_distance_per_class": {"0": phi * 0.9, "1": phi * 1.1},
            "select_seconds": 0.01,
            "fit_seconds": 0.05 * p,
            "speedup": 100 / p,
        }
        if interp == "vebi":
            entry["vebi_units_per_layer"] = {name: i + p // 10 for i, name in enumerate(LAYERS)}
            entry["vebi_coverage_per_layer"] = {
                name: min(100.0, 20.0 * i + p) for i, name in enumerate(LAYERS)
            }
        ratios.append(entry)
    full: dict[str, Any] = {"accuracy": 0.97, "fit_seconds": 5.0}
    if interp == "vebi":
        full["vebi_units_per_layer"] = {name: i + 5 for i, name in enumerate(LAYERS)}
    return {
        "status": status,
        "error": None,
        "config": {
            "seed": seed,
            "selector": {"name": selector},
            "logger": {"name": logger},
            "metric": {"table1_percents": [10, 20, 30, 40, 50]},
        },
        "job": {"name": f"model={model},selector={selector},interpreter={interp}", "group": "g"},
        "model": model,
        "dataset": "digits",
        "selector": selector,
        "interpreter": interp,
        "model_accuracy": 0.99,
        "full": full,
        "ratios": ratios,
        "null_reference": {"angular_distance": 1.2},
        "artifacts": [
            {
                "kind": "fit_full",
                "key": f"k-{model}-{interp}",
                "computed": selector == "random",
                "seconds": 5.0,
            }
        ],
        "wall_seconds": 3.0,
    }


def write_job(sweep: Path, name: str, body: dict[str, Any] | str) -> None:
    folder = sweep / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(body if isinstance(body, str) else json.dumps(body))


PHI = {5: 0.5, 10: 0.4, 20: 0.3, 30: 0.25, 40: 0.2, 50: 0.1, 95: 0.05}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep with 2 models x 2 selectors x 2 interpreters, one failed, one running and one garbled job."""
    root = tmp_path / "sweep"
    n = 0
    for model in ("resnet18", "vgg19"):
        for selector in ("random", "moderate"):
            for interp in ("ice", "vebi"):
                scale = 1.0 if interp == "ice" else 0.1
                write_job(
                    root, str(n), payload(model, selector, interp, {p: v * scale for p, v in PHI.items()})
                )
                n += 1
    failed = payload("resnet18", "dgpruning", "ice", {}, status="failed")
    failed.update(error="ConfigError: boom <b>", traceback="Traceback ...\nConfigError: boom")
    write_job(root, str(n), failed)
    write_job(root, str(n + 1), {"status": "running", "error": None, "job": {"name": "selector=kcenter"}})
    write_job(root, str(n + 2), '{"status": "compl')
    return root


def test_table1_cells_are_mean_and_std_over_10_to_50(sweep: Path) -> None:
    """Cells use rho 10..50 only (5 and 95 % are left out), population std, like the pipeline's own."""
    report = build_report(sweep, wandb_mode="disabled")
    values = [PHI[p] for p in (10, 20, 30, 40, 50)]
    cell = report.table1[("digits", "resnet18", "random")]["ice"]
    assert cell.n == 5 and cell.percents == [10, 20, 30, 40, 50]
    assert cell.mean == pytest.approx(np.mean(values)) and cell.std == pytest.approx(np.std(values))
    assert report.table1[("digits", "vgg19", "moderate")]["vebi"].mean == pytest.approx(0.1 * np.mean(values))
    rows = list(csv.DictReader((report.out / "table1.csv").open()))
    assert len(rows) == 8
    assert {r["interpreter"] for r in rows} == {"ice", "vebi"}
    md = (report.out / "table1.md").read_text()
    assert "| resnet18 | random | 0.25 ± 0.1 | 0.025 ± 0.01 |" in md
    # Rows: model x selector with random (the baseline) first; columns: interpreters.
    assert [line.split("|")[1:3] for line in md.splitlines() if line.startswith("| resnet18")] == [
        [" resnet18 ", " random "],
        [" resnet18 ", " moderate "],
    ]
    tex = (report.out / "table1.tex").read_text()
    assert r"$0.25 \pm 0.1$" in tex and r"\textbf{vgg19}" in tex and "\\begin{tabular}{lcc}" in tex


def test_report_lists_failed_running_and_unreadable_jobs(sweep: Path) -> None:
    """A partial sweep: numbers from completed jobs, every other job listed with its error."""
    report = build_report(sweep, wandb_mode="disabled")
    assert report.counts == {"completed": 8, "failed": 1, "running": 1, "unreadable": 1}
    html = (report.out / "report.html").read_text()
    assert "ConfigError: boom &lt;b&gt;" in html  # escaped
    assert "selector=kcenter" in html and "running" in html and "JSONDecodeError" in html
    assert "Jobs that did not complete" in html


def test_html_is_self_contained_with_every_figure(sweep: Path) -> None:
    """report.html embeds Table 1 and all four figures as base64 PNGs and references nothing outside."""
    report = build_report(sweep, wandb_mode="disabled")
    for name in ("fig2_accuracy.png", "fig3_vebi_units.png", "fig4_phi.png", "cost.png"):
        assert report.files[name].stat().st_size > 10_000, name
    html = (report.out / "report.html").read_text()
    sources = re.findall(r"src='([^']*)'", html)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "href=" not in html and "<table>" in html


def test_single_ratio_jobs_and_seeds_are_merged(tmp_path: Path) -> None:
    """A sweep over single ratios (ratio=p10,p20,...) gives the same Table 1 as one job with all of them;
    two seeds are averaged per rho; a rerun of a seed replaces the older job."""
    root = tmp_path / "split"
    for i, p in enumerate((10, 20, 30)):
        write_job(root, f"s0_{i}", payload("resnet18", "random", "ice", {p: PHI[p]}, seed=0))
        write_job(root, f"s1_{i}", payload("resnet18", "random", "ice", {p: PHI[p] + 0.1}, seed=1))
    report = build_report(root, wandb_mode="disabled")
    cell = report.table1[("digits", "resnet18", "random")]["ice"]
    merged = [PHI[p] + 0.05 for p in (10, 20, 30)]
    assert (
        cell.n == 3
        and cell.mean == pytest.approx(np.mean(merged))
        and cell.std == pytest.approx(np.std(merged))
    )
    assert "(n=3)" in (report.out / "table1.md").read_text()


def test_no_completed_job_still_reports(tmp_path: Path) -> None:
    """A sweep whose jobs all failed: the page lists them, no table rows and no figures."""
    root = tmp_path / "allfailed"
    write_job(root, "0", {"status": "failed", "error": "RuntimeError: no GPU", "job": {"name": "a"}})
    report = build_report(root, wandb_mode="disabled")
    assert report.table1 == {} and "fig2_accuracy.png" not in report.files
    assert "RuntimeError: no GPU" in (report.out / "report.html").read_text()


def test_command_line(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``coreset-interp-report DIR --out OUT`` prints Table 1 and the files; a missing folder is an error."""
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--wandb", "disabled"]) == 0
    printed = capsys.readouterr().out
    assert "| resnet18 | random |" in printed and str(out / "report.html") in printed
    assert (out / "table1.md").is_file() and not (sweep / "report").exists()
    assert main([str(tmp_path / "nope")]) == 2


def test_fit_full_records_are_summarised(sweep: Path) -> None:
    """summary.json says which job computed each full-data reference and how many jobs reused it."""
    report = build_report(sweep, wandb_mode="disabled")
    summary = json.loads(report.files["summary.json"].read_text())
    fit_full = summary["artifacts"]["fit_full"]
    assert set(fit_full) == {f"k-{m}-{i}" for m in ("resnet18", "vgg19") for i in ("ice", "vebi")}
    for entry in fit_full.values():
        assert len(entry["computed_in"]) == 1
    assert summary["artifacts"]["duplicates"] == {}
