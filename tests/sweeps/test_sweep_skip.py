"""Sweeps that survive preemption: a resubmitted sweep skips its completed jobs (their result.json untouched,
byte for byte and mtime), a job is rerun when its config or code differs, and a job whose heartbeat stopped
is reported ``killed``, not ``running``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from coreset_interp.jobstate import code_version, completed_result, liveness
from coreset_interp.report import load_results

TINY = [
    "logger=none", "progress=false", "interpreter=ice", "interpreter.n_components=3",
    "interpreter.max_iter=30", "ratio.percents=[10]", "metric.null_reference=false",
    "hydra.callbacks.report.enabled=false",
]  # fmt: skip
ENV = {
    **os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
    "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
}  # fmt: skip


def _snapshot(sweep: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(sweep.glob("*/result.json"))}


@pytest.mark.slow
def test_resubmitted_sweep_skips_completed_jobs(
    digits_workspace: Any, session_cache_dir: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "coreset_interp.run", "-m", *TINY, "selector=random,moderate",
           f"cache_dir={session_cache_dir}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _snapshot(sweep)
    assert len(before) == 2
    assert all(json.loads(b)["status"] == "completed" for b, _ in before.values())
    assert all(json.loads(b)["code"] == code_version() for b, _ in before.values())

    # The same sweep resubmitted, with a setting that cannot change a number (progress bars on).
    again = subprocess.run([*cmd, "progress=true"], capture_output=True, text=True, timeout=600, env=ENV,
                           cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    skips = [line for line in again.stdout.splitlines() if line.startswith("skip: ")]
    assert len(skips) == 2 and all("already completed" in line for line in skips), again.stdout[-2000:]
    assert _snapshot(sweep) == before, "a skipped job's result.json was rewritten"


def test_skip_needs_the_same_result_config_and_code(tmp_path: Path, make_config: Any) -> None:
    """Only a completed result.json for the same result-relevant config and code version is reused."""
    cfg = make_config([o for o in TINY if not o.startswith("hydra.")])
    code = code_version()
    path = tmp_path / "result.json"
    payload = {"status": "completed", "config": json.loads(json.dumps(cfg)), "code": code}
    path.write_text(json.dumps(payload))
    assert completed_result(path, cfg, code) == payload
    assert completed_result(path, {**cfg, "progress": True, "logger": {"name": "wandb"}}, code) == payload
    assert completed_result(path, {**cfg, "seed": 107}, code) is None
    # Values the report merges on purpose (rho, seeds) still make another job.
    assert completed_result(path, {**cfg, "ratio": {"percents": [77]}}, code) is None
    assert completed_result(path, {**cfg, "batch_size": 7}, code) == payload
    other = {**cfg, "interpreter": {**cfg["interpreter"], "name": "topic"}}
    assert completed_result(path, other, code) is None
    assert completed_result(path, cfg, {**code, "commit": "0" * 40}) is None
    assert completed_result(path, cfg, {**code, "version": "9.9"}) is None
    path.write_text(json.dumps({**payload, "status": "failed"}))
    assert completed_result(path, cfg, code) is None
    path.write_text("{truncated")
    assert completed_result(path, cfg, code) is None


# A job's files and heartbeat as run_job keeps them, in a process the test kills.
BEATING = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from coreset_interp.jobstate import JobHeartbeat
    from coreset_interp.tracking import JobFiles

    files = JobFiles(Path(sys.argv[1]))
    payload = {"status": "running", "error": None, "config": {}, "job": {"name": "victim"}}
    with JobHeartbeat(files.write_result, payload, {"interval": 0.1, "stale_after": 3600}):
        files.write_result(payload)
        print("ready", flush=True)
        time.sleep(120)
    """
)


def test_killed_job_is_reported_killed(tmp_path: Path) -> None:
    """SIGKILL a running job: the report says killed (its pid is gone on this host); a job on another host
    whose heartbeat aged past stale_after is killed too; a live one stays running."""
    sweep = tmp_path / "sweep"
    script = tmp_path / "beating.py"
    script.write_text(BEATING)
    cmd = [sys.executable, str(script), str(sweep / "0")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None and "ready" in proc.stdout.readline()
        first = json.loads((sweep / "0" / "result.json").read_text())["heartbeat"]["time"]
        time.sleep(0.5)
        beat = json.loads((sweep / "0" / "result.json").read_text())["heartbeat"]
        assert beat["time"] > first and beat["pid"] == proc.pid and beat["host"] == socket.gethostname()
        assert [r.status for r in load_results(sweep)] == ["running"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert json.loads((sweep / "0" / "result.json").read_text())["status"] == "running"
    assert [r.status for r in load_results(sweep)] == ["killed"]

    remote = {"host": "node-gone", "pid": 1, "start": None, "time": time.time() - 700, "stale_after": 600}
    (sweep / "1").mkdir()
    (sweep / "1" / "result.json").write_text(json.dumps({"status": "running", "heartbeat": remote}))
    assert liveness({"status": "running", "heartbeat": {**remote, "time": time.time()}}) == "running"
    assert liveness({"status": "running"}) == "running"  # from before heartbeats: cannot tell
    assert liveness({"status": "completed", "heartbeat": remote}) == "completed"
    assert sorted(r.status for r in load_results(sweep)) == ["killed", "killed"]


def test_skipping_loads_no_torch(tmp_path: Path, make_config: Any) -> None:
    """The resubmitted job is skipped by the command before torch is imported (cheap on a GPU allocation)."""
    cfg = make_config([o for o in TINY if not o.startswith("hydra.")])
    job = tmp_path / "job"
    job.mkdir()
    payload = {"status": "completed", "config": json.loads(json.dumps(cfg)), "code": code_version()}
    (job / "result.json").write_text(json.dumps(payload))
    overrides = [o for o in TINY if not o.startswith("hydra.")] + [f"cache_dir={cfg['cache_dir']}"]
    probe = (
        "import sys; from coreset_interp.run import main; sys.argv = ['x', *sys.argv[1:]]\n"
        "try:\n main()\nfinally:\n print('torch loaded' if 'torch' in sys.modules else 'no torch')"
    )
    cmd = [sys.executable, "-c", probe, *overrides, f"hydra.run.dir={job}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skip: {job} already completed" in proc.stdout and proc.stdout.strip().endswith("no torch")
    assert json.loads((job / "result.json").read_text()) == payload
