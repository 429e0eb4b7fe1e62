"""``coreset-interp-cache`` on a small cache: ls/du/verify tell what is there, gc removes old or unused
artifacts and never one whose lock a running job holds, nor a live writer's temporary folder."""

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

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.cache_cli import folder_size, main

SPECS = {
    "old": ("coreset", {"selector": {"name": "random"}, "ratio": 0.1, "seed": 0}),
    "used": ("fit", {"interpreter": {"name": "ice"}, "coreset": "c1", "seed": 0}),
    "spare": ("fit", {"interpreter": {"name": "vebi"}, "coreset": "c2", "seed": 1}),
}


def _write(n: int) -> Any:
    def compute(folder: Path) -> None:
        (folder / "data.bin").write_bytes(bytes(range(256)) * n)

    return compute


@pytest.fixture()
def small_cache(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "cache"
    cache = ArtifactCache(root)
    paths = {}
    for i, (name, (kind, spec)) in enumerate(SPECS.items()):
        paths[name], _ = cache.get_or_compute(kind, spec, _write(4 * (i + 1)))
    old = time.time() - 40 * 86400
    os.utime(paths["old"], (old, old))
    return root, paths


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_ls_du_verify(small_cache: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]) -> None:
    root, paths = small_cache
    code, out = _run(capsys, "--cache-dir", str(root), "ls")
    assert code == 0 and "3 artifacts in" in out
    line = next(x for x in out.splitlines() if paths["old"].name in x)
    assert line.split()[0] == "coreset" and "40.0d" in line and "selector=random" in line and "seed=0" in line
    code, out = _run(capsys, "--cache-dir", str(root), "ls", "--json", "--kind", "fit")
    listed = json.loads(out)
    assert {a["key"] for a in listed} == {paths["used"].name, paths["spare"].name}
    assert all(a["bytes"] == folder_size(root / "fit" / a["key"]) and a["verified"] for a in listed)
    assert {a["spec"]["interpreter"]["name"] for a in listed} == {"ice", "vebi"}

    code, out = _run(capsys, "--cache-dir", str(root), "du")
    total = sum(folder_size(p) for p in paths.values())
    assert code == 0 and "coreset" in out and "fit" in out and out.splitlines()[-1].split()[1] == "3"
    assert f"{total / 1024:.1f} KB" in out.splitlines()[-1]

    code, out = _run(capsys, "--cache-dir", str(root), "verify")
    assert code == 0 and "3 ok, 0 damaged" in out
    with open(paths["spare"] / "data.bin", "r+b") as fh:
        fh.truncate(10)
    code, out = _run(capsys, "--cache-dir", str(root), "verify")
    assert code == 1 and "2 ok, 1 damaged" in out
    assert f"DAMAGED    fit/{paths['spare'].name}: {paths['spare'] / 'data.bin'} has 10 bytes" in out


def test_gc_older_than_and_unused_by(
    small_cache: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, paths = small_cache
    code, out = _run(capsys, "--cache-dir", str(root), "gc", "--older-than", "30d", "--dry-run")
    assert code == 0 and f"would remove coreset/{paths['old'].name}" in out and paths["old"].is_dir()
    code, out = _run(capsys, "--cache-dir", str(root), "gc", "--older-than", "30d")
    assert code == 0 and not paths["old"].exists() and paths["used"].is_dir() and paths["spare"].is_dir()
    assert not list((root / "coreset").glob(".trash-*"))

    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    record = {"kind": "fit", "key": paths["used"].name, "computed": True, "seconds": 1.0}
    (sweep / "0" / "result.json").write_text(json.dumps({"status": "completed", "artifacts": [record]}))
    # A job of the sweep still running (fresh heartbeat, this live process): its artifacts are not known yet.
    beat = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "stale_after": 600}
    (sweep / "1").mkdir()
    (sweep / "1" / "result.json").write_text(json.dumps({"status": "running", "heartbeat": beat}))
    code, out = _run(capsys, "--cache-dir", str(root), "gc", "--unused-by", str(sweep))
    assert code == 2 and "still running" in out and paths["spare"].is_dir()

    (sweep / "1" / "result.json").write_text(json.dumps({"status": "failed", "artifacts": []}))
    code, out = _run(capsys, "--cache-dir", str(root), "gc", "--unused-by", str(sweep))
    assert code == 0 and paths["used"].is_dir() and not paths["spare"].exists()
    assert "removed 1 artifacts" in out


# Holds the lock of an existing artifact and builds another one (a live temporary folder) until killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from coreset_interp.cache import ArtifactCache

    root, key = sys.argv[1:3]
    cache = ArtifactCache(Path(root))

    def compute(folder):
        (folder / "part.bin").write_bytes(b"x" * 100)
        print("ready", flush=True)
        time.sleep(120)

    with cache.lock("fit", key):
        cache.get_or_compute("fit", {"being": "built"}, compute)
    """
)


def test_gc_never_removes_what_a_running_job_holds(
    small_cache: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, paths = small_cache
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    dead_tmp = root / "fit" / f".tmp-{spec_key({'x': 1})}-deadbeef-{dead}@{socket.gethostname()}"
    dead_tmp.mkdir()
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(root), paths["spare"].name],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None and "ready" in proc.stdout.readline()
        code, out = _run(capsys, "--cache-dir", str(root), "gc", "--older-than", "0")
        assert code == 0
        assert f"kept fit/{paths['spare'].name}: in use (host {socket.gethostname()} pid {proc.pid}" in out
        assert paths["spare"].is_dir() and not paths["used"].exists() and not paths["old"].exists()
        live = list((root / "fit").glob(f".tmp-{spec_key({'being': 'built'})}-*"))
        assert len(live) == 1 and (live[0] / "part.bin").is_file(), "a running writer's folder was removed"
        assert not dead_tmp.exists(), "a dead writer's temporary folder was kept"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_module_entry_point_runs(small_cache: tuple[Path, dict[str, Path]]) -> None:
    root, _ = small_cache
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "coreset_interp.cache_cli", "--cache-dir", str(root), "du"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "total" in proc.stdout
