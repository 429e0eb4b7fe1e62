"""A job's state across preemption: skip a job already completed for the same config and code, keep a
heartbeat (host, pid, time) in a running job's ``result.json``, and tell a killed job from a live one."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coreset_interp import __version__
from coreset_interp.identity import NON_RESULT_KEYS, can_change_a_number, flatten
from coreset_interp.locks import job_id, parse_duration, process_alive, process_start


def code_version(repo: Path | None = None) -> dict[str, Any]:
    """The code a job runs: package version, git commit and whether the work tree had changes.

    Args:
        repo: the source checkout (default: the one this package was imported from).

    Returns:
        ``version``, ``commit`` (None outside git), ``changes``: a hash of the uncommitted changes to the
        package and its configs (None when there are none, or outside git).
    """
    repo = Path(repo or Path(__file__).resolve().parents[1])
    out: dict[str, Any] = {"version": __version__, "commit": None, "changes": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        )
        if commit.returncode == 0:
            out["commit"] = commit.stdout.strip()
            # Uncommitted edits of the package or its configs change what a job computes; outputs do not.
            diff = subprocess.run(
                ["git", "-C", str(repo), "diff", "HEAD", "--", "coreset_interp", "conf"],
                capture_output=True, timeout=30,
            )  # fmt: skip
            if diff.returncode == 0 and diff.stdout:
                out["changes"] = hashlib.sha256(diff.stdout).hexdigest()[:16]
    except (OSError, subprocess.SubprocessError):
        return out  # no git here, or it failed: the version alone identifies the code
    return out


def result_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that determines a job's results.

    Args:
        cfg: the resolved job config.

    Returns:
        ``cfg`` flattened to dotted keys, without :data:`coreset_interp.identity.NON_RESULT_KEYS` (the one
        list of what cannot change a number).
    """
    flat = flatten(cfg)
    return {k: flat[k] for k in sorted(flat) if can_change_a_number(k, NON_RESULT_KEYS)}


def completed_result(path: Path, cfg: dict[str, Any], code: dict[str, Any]) -> dict[str, Any] | None:
    """The existing result of a job that completed for the same config and code, if any.

    Args:
        path: the job's ``result.json``.
        cfg: the resolved config of the new submission.
        code: :func:`code_version` of the new submission.

    Returns:
        The stored payload when the job can be skipped, else None (missing, unreadable, not completed,
        another config or another code version).
    """
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("status") != "completed":
        return None
    if payload.get("code") != code:
        return None
    old = payload.get("config")
    if not isinstance(old, dict):
        return None
    # Through JSON like the stored one, so tuples, NaN and numpy scalars compare alike.
    from coreset_interp.tracking import finite_json

    new = json.loads(json.dumps(finite_json(result_config(cfg)), default=str))
    return payload if result_config(old) == new else None


def skip_completed(
    cfg: dict[str, Any], folder: Path, code: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Skip a job already completed for this config and code (when ``skip_completed`` is on), in one line.

    Args:
        cfg: the resolved job config.
        folder: the job's output folder.
        code: :func:`code_version` (computed when None).

    Returns:
        The stored payload when the job is skipped (its files untouched), else None.
    """
    if "skip_completed" not in cfg:
        from coreset_interp.config import ConfigError

        raise ConfigError("config has no 'skip_completed' (its default belongs in conf/)")
    if not cfg["skip_completed"]:
        return None
    done = completed_result(Path(folder) / "result.json", cfg, code_version() if code is None else code)
    if done is not None:
        print(f"skip: {folder} already completed for this config and code (result.json kept; "
              "skip_completed=false reruns it)", flush=True)  # fmt: skip
    return done


class JobHeartbeat:
    """Rewrites ``result.json`` with a fresh ``heartbeat`` every ``interval`` seconds while a job runs.

    Args:
        write: writes the payload atomically (``JobFiles.write_result``).
        payload: the job's payload (shared with the job; its ``heartbeat`` entry is refreshed).
        settings: ``interval`` and ``stale_after`` (durations) from ``job_heartbeat``.
    """

    def __init__(self, write: Any, payload: dict[str, Any], settings: Mapping[str, Any]) -> None:
        self.write = write
        self.payload = payload
        self.interval = parse_duration(_setting(settings, "interval"), "job_heartbeat.interval")
        self.stale_after = parse_duration(_setting(settings, "stale_after"), "job_heartbeat.stale_after")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat()

    def beat(self) -> None:
        """Put a fresh heartbeat into the payload (written by the next write)."""
        pid = os.getpid()
        self.payload["heartbeat"] = {
            "host": socket.gethostname(),
            "pid": pid,
            "start": process_start(pid),
            "job_id": job_id(),
            "time": time.time(),
            "interval": self.interval,
            "stale_after": self.stale_after,
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                self.write(self.payload)
            except (OSError, RuntimeError, ValueError, TypeError):
                continue  # the payload was being updated, or a file system hiccup: the next beat retries

    def __enter__(self) -> JobHeartbeat:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="job heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _setting(settings: Mapping[str, Any], key: str) -> Any:
    if key not in settings:
        from coreset_interp.config import ConfigError

        raise ConfigError(f"config has no 'job_heartbeat.{key}' (its default belongs in conf/)")
    return settings[key]


def liveness(payload: dict[str, Any], now: float | None = None) -> str:
    """A stored status, with ``running`` turned into ``killed`` when the job's heartbeat stopped.

    Args:
        payload: a ``result.json`` payload.
        now: the time to judge at (default: now).

    Returns:
        The status: ``killed`` for a running job whose process is gone on this host or whose heartbeat is
        older than its ``stale_after``; otherwise the stored status.
    """
    status = str(payload.get("status", "unreadable"))
    beat = payload.get("heartbeat")
    if status != "running" or not isinstance(beat, dict):
        return status
    if process_alive(beat) is False:
        return "killed"
    try:
        age = (time.time() if now is None else now) - float(beat["time"])
        stale = float(beat.get("stale_after") or 600)
    except (KeyError, TypeError, ValueError):
        return status
    return "killed" if age > stale else status
