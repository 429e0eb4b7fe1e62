"""Kill a worker mid-sweep, rerun the same command: the sweep finishes, reuses the complete artifacts and
gives the same Table 1 as an uninterrupted sweep (tiny size, joblib with 2 workers)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TINY = [
    "logger=none",
    "progress=false",
    "interpreter=ice",
    "interpreter.n_components=3",
    "interpreter.max_iter=30",
    "ratio.percents=[10,20]",
    "metric.null_reference=false",
    "seed=105",
    "selector=random,moderate,kcenter,kernel_thinning",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def trained_cache(digits_workspace: Any, session_cache_dir: Path) -> Path:
    """The session cache, with the embedded default's trained model and activations in it."""
    return session_cache_dir


def seeded_cache(source: Path, target: Path) -> Path:
    """A new cache holding only the trained model and its activations (coresets and fits stay cold)."""
    for kind in ("checkpoint", "activations"):
        for folder in (source / kind).iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                shutil.copytree(folder, target / kind / folder.name)
    return target


def command(sweep_dir: Path, cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "coreset_interp.run", "-m", *TINY, f"cache_dir={cache_dir}",
            f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip


def run(sweep_dir: Path, cache_dir: Path) -> None:
    proc = subprocess.run(command(sweep_dir, cache_dir), env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc), children first."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        out += children
        frontier = children
    return out


def statuses(sweep_dir: Path) -> list[str]:
    out = []
    for path in sorted(sweep_dir.glob("*/result.json")):
        try:
            out.append(json.loads(path.read_text())["status"])
        except (OSError, ValueError, KeyError):
            out.append("unreadable")
    return out


def table1(sweep_dir: Path) -> dict[tuple[str, str], tuple[float, float, int]]:
    rows = csv.DictReader((sweep_dir / "report" / "table1.csv").open())
    return {
        (r["selector"], r["interpreter"]): (float(r["phi_mean"]), float(r["phi_std"]), int(r["n"]))
        for r in rows
    }


@pytest.mark.slow
def test_kill_a_worker_then_rerun_matches_an_uninterrupted_sweep(trained_cache: Path, tmp_path: Path) -> None:
    """SIGKILL one joblib worker once the first job is done; the rerun completes from the cache."""
    reference = tmp_path / "reference"
    run(reference, seeded_cache(trained_cache, tmp_path / "cache_ref"))

    cache = seeded_cache(trained_cache, tmp_path / "cache_kill")
    sweep = tmp_path / "killed"
    proc = subprocess.Popen(command(sweep, cache), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if "completed" in statuses(sweep):
                workers = [p for p in descendants(proc.pid) if b"LokyProcess" in _cmdline(p)]
                if workers:
                    killed = workers[0]
                    os.kill(killed, signal.SIGKILL)
                    break
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=300)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            _kill_quietly(pid)
    assert killed is not None, "no worker to kill: the sweep ended first"
    assert proc.returncode != 0, out.decode()[-3000:]
    before = statuses(sweep)
    assert before.count("completed") < 4, before
    leftovers = [p.name for p in cache.glob("*/.tmp-*")]
    finished = [p for p in sweep.glob("*/result.json") if json.loads(p.read_text())["status"] == "completed"]
    done = {p: p.read_bytes() for p in finished}

    run(sweep, cache)  # the same command again
    assert statuses(sweep) == ["completed"] * 4
    # Completed jobs are skipped (skip_completed), their result.json untouched; the others reuse the cache.
    assert {p: p.read_bytes() for p in done} == done
    rerun = [p for p in sweep.glob("*/result.json") if p not in done]
    records = [r for p in rerun for r in json.loads(p.read_text())["artifacts"]]
    assert any(r["kind"] == "fit_full" and not r["computed"] for r in records), "the full fit was not reused"
    assert not any(r["kind"] == "fit_full" and r["computed"] for r in records)
    assert not list(cache.glob("*/.tmp-*")), "a killed writer's temporary folder survived the rerun"

    assert table1(sweep) == table1(reference)
    reused = sum(not r["computed"] for r in records)
    print(
        f"killed worker {killed}; before the rerun: {before}, temporary folders {leftovers}; "
        f"rerun built {len(records) - reused} artifacts and reused {reused}; Table 1 = {table1(sweep)}"
    )
    assert len(table1(sweep)) == 4


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
