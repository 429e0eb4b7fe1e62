"""Concurrent jobs and the artifact cache: processes racing for one missing artifact compute it once,
and a writer killed by SIGKILL mid-write leaves nothing valid-looking; a clean rerun then resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from filelock import FileLock

from coreset_interp.cache import ArtifactCache, spec_key

# A child process: waits for the go-file, asks the cache for one artifact whose compute appends a line to a
# shared counter file (so the test counts computes across processes), and prints what it got.
RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from coreset_interp.cache import ArtifactCache

    root, counter, go = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.005)

    def compute():
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(1.0)  # long enough that the other racers arrive while this one computes
        return {"answer": 42, "pid": os.getpid()}

    cache = ArtifactCache(Path(root))
    value, computed = cache.get_or_compute_pickle("fit_full", {"what": "race"}, compute)
    rec = cache.records[-1]
    print(json.dumps({"value": value, "computed": computed, "record_computed": rec.computed}))
    """
)

# A child process that dies mid-write: writes part of an artifact, signals the test, then waits to be killed.
VICTIM = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from coreset_interp.cache import ArtifactCache

    root, ready, kind = sys.argv[1:4]

    def compute(folder):
        (folder / "part.bin").write_bytes(b"x" * 1_000_000)
        if kind == "pickle":
            (folder / "object.pkl").write_bytes(b"\\x80\\x05 truncated")
        Path(ready).write_text(str(folder))
        time.sleep(120)

    ArtifactCache(Path(root)).get_or_compute("coreset", {"what": "victim"}, compute)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_racing_processes_compute_once(tmp_path: Path) -> None:
    """Three processes ask for the same missing artifact at once: one computes, two wait and reuse it."""
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    counter, go = tmp_path / "computes.txt", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(counter), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(3)
    ]
    time.sleep(0.5)  # let the interpreters start so that they really race after the go signal
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))

    assert len(counter.read_text().splitlines()) == 1, "the artifact was computed more than once"
    assert sum(o["computed"] for o in outs) == 1
    assert [o["record_computed"] for o in outs] == [o["computed"] for o in outs]
    # Every process got the same object: the computing one from memory, the others from disk.
    assert len({json.dumps(o["value"], sort_keys=True) for o in outs}) == 1
    assert outs[0]["value"]["answer"] == 42
    assert not list((tmp_path / "cache" / "fit_full").glob(".tmp-*"))


@pytest.mark.parametrize("kind", ["dir", "pickle"])
def test_sigkilled_writer_leaves_nothing_valid_and_rerun_resumes(tmp_path: Path, kind: str) -> None:
    """SIGKILL a writer mid-write: no complete artifact appears, the lock is free, a rerun recomputes."""
    root, ready = tmp_path / "cache", tmp_path / "ready"
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(ready), kind], env=_env())
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, "the writer died before writing"
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.05)
    # While the writer holds the lock, a reader waits instead of reading a half-written artifact.
    waiting = ArtifactCache(root, lock_timeout=0.3)
    with pytest.raises(Exception, match="(?i)lock"):
        waiting.get_or_compute("coreset", {"what": "victim"}, lambda folder: None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    cache = ArtifactCache(root, lock_timeout=5)
    key = spec_key({"what": "victim"})
    assert not cache.exists("coreset", key)
    assert not cache.path("coreset", key).exists()
    leftovers = list((root / "coreset").glob(f".tmp-{key}-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "part.bin").exists()
    # The kernel released the dead writer's lock.
    with FileLock(str(root / "coreset" / f".{key}.lock"), timeout=1):
        pass

    def compute(folder: Path) -> None:
        (folder / "part.bin").write_bytes(b"ok")

    folder, computed = cache.get_or_compute("coreset", {"what": "victim"}, compute)
    assert computed and (folder / "part.bin").read_bytes() == b"ok"
    assert json.loads((folder / "spec.json").read_text()) == {"what": "victim"}
    assert not list((root / "coreset").glob(".tmp-*")), "the dead writer's temporary folder was kept"
    # A second rerun reuses it.
    again = ArtifactCache(root)
    assert again.get_or_compute("coreset", {"what": "victim"}, compute) == (folder, False)
