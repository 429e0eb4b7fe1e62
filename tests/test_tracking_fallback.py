"""A tracker never loses a job: a bad W&B mode, a missing API key or an unreachable server (a closed port on
this machine, never a public host) fall back to an offline run with one warning naming the cause and the
valid modes; the job completes and writes its files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coreset_interp.trackers import TrackerFallbackWarning
from coreset_interp.trackers.wandb import WandbTracker

VALID = "online, offline, disabled"


def closed_port() -> int:
    """A loopback port verified closed (nothing listens: a connection is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as c, pytest.raises(ConnectionRefusedError):
        c.connect(("127.0.0.1", port))
    return port


def _job(tmp_path: Path) -> dict[str, Any]:
    return {"dir": tmp_path, "name": "t", "group": "g", "tags": [], "job_type": "ice"}


def _offline_runs(folder: Path) -> list[Path]:
    return sorted((folder / "wandb").glob("offline-run-*"))


def test_bad_mode_falls_back_to_offline(tmp_path: Path) -> None:
    tracker = WandbTracker(mode="onlin", init_timeout=30)
    with pytest.warns(TrackerFallbackWarning) as caught:
        tracker.start({"seed": 0}, _job(tmp_path))
    assert len(caught) == 1
    assert "'onlin'" in str(caught[0].message) and VALID in str(caught[0].message)
    tracker.log_ratio({"percent": 10, "angular_distance": 0.5})
    tracker.finish({"status": "completed"})
    assert len(_offline_runs(tmp_path)) == 1 and tracker.warnings == [str(caught[0].message)]


def test_online_without_api_key_falls_back_to_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    tracker = WandbTracker(mode="online", init_timeout=10)
    with pytest.warns(TrackerFallbackWarning) as caught:
        tracker.start({"seed": 0}, _job(tmp_path))
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "API key" in msgs[0] and VALID in msgs[0] and "offline" in msgs[0]
    tracker.finish({"status": "completed"})
    assert len(_offline_runs(tmp_path)) == 1


@pytest.mark.slow
def test_online_against_a_closed_port_completes_the_job_offline(
    digits_workspace: Any, session_cache_dir: Path, tmp_path: Path
) -> None:
    """The whole command with WANDB_MODE=online, an API key and a server that refuses connections: the job
    completes, its result.json names the fallback, and the run is kept offline for `wandb sync`."""
    port = closed_port()
    env = {
        **os.environ, "WANDB_MODE": "online", "WANDB_API_KEY": "k" * 40, "HOME": str(tmp_path / "home"),
        "WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_SILENT": "true",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }  # fmt: skip
    job = tmp_path / "job"
    proc = subprocess.run(
        [sys.executable, "-m", "coreset_interp.run", "logger=wandb", "logger.init_timeout=3",
         "progress=false", "interpreter.n_components=3", "interpreter.max_iter=30",
         "ratio.percents=[10]",
         "metric.null_reference=false", "selector=random", f"cache_dir={session_cache_dir}",
         f"hydra.run.dir={job}"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((job / "result.json").read_text())
    assert result["status"] == "completed"
    fallback = [w for w in result["warnings"] if "W&B online run could not start" in w]
    assert len(fallback) == 1, result["warnings"]
    assert VALID in fallback[0] and f"127.0.0.1:{port}" in fallback[0]
    assert len(_offline_runs(job)) == 1 and (job / "metrics.jsonl").is_file()
