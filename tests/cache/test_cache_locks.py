"""Locks that time out and heal: a wait ends naming the holder, a dead holder's lock (SIGKILLed here, or a
remote node whose heartbeat stopped) is broken, a live holder's heartbeat keeps its lock, and the loser of a
publish race succeeds with the winner's artifact."""

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

import pytest

from coreset_interp.cache import ArtifactCache, CacheDirError, LockTimeoutError, check_cache_dir, spec_key
from coreset_interp.locks import ArtifactLock, LockSettings, parse_duration, probe_flock
from coreset_interp.manifest import verify_manifest

# Holds one artifact's lock (its compute sleeps) until killed; prints "ready" once it holds it.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from coreset_interp.cache import ArtifactCache

    root, locking = sys.argv[1:3]

    def compute(folder):
        print("ready", flush=True)
        time.sleep(120)

    ArtifactCache(Path(root), locking=locking).get_or_compute("coreset", {"what": "held"}, compute)
    """
)

# Builds one artifact: compute prints "computing", sleeps, writes a file; prints what it got as JSON.
BUILDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from coreset_interp.cache import ArtifactCache

    root, sleep, stale_after, heartbeat = sys.argv[1:5]

    def compute(folder):
        print("computing", flush=True)
        time.sleep(float(sleep))
        (folder / "data.bin").write_bytes(b"same content from any builder")

    cache = ArtifactCache(Path(root), stale_after=float(stale_after), heartbeat=float(heartbeat))
    folder, computed = cache.get_or_compute("fit", {"what": "race"}, compute)
    print(json.dumps({"computed": computed, "data": (folder / "data.bin").read_text()}), flush=True)
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _start(tmp_path: Path, source: str, args: list[str], **env: str) -> subprocess.Popen[str]:
    script = tmp_path / f"child_{abs(hash(source)) % 10**6}.py"
    script.write_text(source)
    return subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(**env),
    )  # fmt: skip


def _wait_line(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert word in line, f"child said {line!r}: {proc.stderr.read() if proc.poll() is not None else ''}"


def test_parse_duration_units() -> None:
    assert parse_duration("90s") == 90 and parse_duration("10m") == 600 and parse_duration("6h") == 21600
    assert parse_duration(5) == 5.0 and parse_duration(-1) == -1 and parse_duration(None) == -1
    with pytest.raises(ValueError, match="cache.lock_timeout.*'ten minutes'"):
        parse_duration("ten minutes", "cache.lock_timeout")


def test_flock_probe_reports_one_line(tmp_path: Path) -> None:
    """On a local disk flock excludes a second process; the line says so and names the fallback between
    hosts. The cache check leaves no probe file behind."""
    works, line = probe_flock(tmp_path)
    assert works and "\n" not in line and str(tmp_path) in line and "lease" in line
    cache = ArtifactCache(tmp_path / "c")
    assert cache.check().startswith(f"cache {tmp_path / 'c'}: flock excludes") and cache.locking == "flock"
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("locking", ["flock", "lease"])
def test_timeout_names_the_holder_then_sigkill_frees_the_lock(tmp_path: Path, locking: str) -> None:
    """A waiter times out with one line naming host, pid and SLURM job id of the holder; after the holder is
    SIGKILLed its lock is broken at once (its pid is gone on this host), with or without flock."""
    root = tmp_path / "cache"
    slurm = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7", "SLURM_JOB_ID": "4250"}
    holder = _start(tmp_path, HOLDER, [str(root), locking], **slurm)
    try:
        _wait_line(holder, "ready")
        waiter = ArtifactCache(root, lock_timeout=0.5, locking=locking)
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            waiter.get_or_compute("coreset", {"what": "held"}, lambda folder: None)
        assert time.monotonic() - t0 < 5
        msg = str(info.value)
        assert "\n" not in msg
        assert f"host {socket.gethostname()} pid {holder.pid} job 4242_7" in msg, msg
        assert "cache.lock_timeout" in msg and f"coreset/{spec_key({'what': 'held'})}" in msg
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    lease = root / "coreset" / f".{spec_key({'what': 'held'})}.lease"
    assert lease.exists(), "the killed holder's lease should be left behind (nothing ran its cleanup)"
    # stale_after is long: only the dead pid can free the lock this fast.
    healer = ArtifactCache(root, lock_timeout=5, stale_after=3600, locking=locking)
    folder, computed = healer.get_or_compute("coreset", {"what": "held"}, lambda f: (f / "x").write_text("1"))
    assert computed and (folder / "x").read_text() == "1" and not lease.exists()


def _write_y(folder: Path) -> None:
    (folder / "y").write_text("2")


def _fake_lease(path: Path, host: str, age: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": 1, "start": None, "job_id": "777_1", "token": "t"}))
    old = time.time() - age
    os.utime(path, (old, old))


def test_remote_holder_with_aged_heartbeat_is_broken_fresh_one_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease from another host: kept while its heartbeat is fresh (the wait times out naming that host),
    broken once its heartbeat is older than stale_after."""
    root = tmp_path / "cache"
    key = spec_key({"what": "remote"})
    lease = root / "fit" / f".{key}.lease"
    _fake_lease(lease, "node-that-died", age=5)
    cache = ArtifactCache(root, lock_timeout=0.3, stale_after=60)
    with pytest.raises(LockTimeoutError, match=r"host node-that-died pid 1 job 777_1 \(heartbeat 5s ago\)"):
        cache.get_or_compute("fit", {"what": "remote"}, lambda f: None)

    _fake_lease(lease, "node-that-died", age=120)
    with caplog.at_level("WARNING", logger="coreset_interp.locks"):
        folder, computed = cache.get_or_compute("fit", {"what": "remote"}, _write_y)
    assert computed and (folder / "y").read_text() == "2"
    assert not lease.exists() and not list(lease.parent.glob("*.broken-*"))
    broken = [r.getMessage() for r in caplog.records if "breaking the lock" in r.getMessage()]
    assert len(broken) == 1 and "host node-that-died pid 1 job 777_1" in broken[0]
    assert "heartbeat stopped" in broken[0]


def test_heartbeat_keeps_a_live_holders_lock(tmp_path: Path) -> None:
    """A holder whose heartbeat runs keeps its lease past stale_after; one whose heartbeat is slower than
    stale_after loses it (same process here, so only the heartbeat can tell them apart)."""
    base = tmp_path / ".k"
    beating = ArtifactLock(base, LockSettings(timeout=-1, stale_after=0.6, heartbeat=0.1), False, "fit/k")
    waiter = ArtifactLock(base, LockSettings(timeout=1.5, stale_after=0.6, heartbeat=0.1), False, "fit/k")
    with beating, pytest.raises(LockTimeoutError, match=f"pid {os.getpid()}"):
        waiter.acquire()
    assert not Path(f"{base}.lease").exists()

    silent = ArtifactLock(base, LockSettings(timeout=-1, stale_after=0.6, heartbeat=60), False, "fit/k")
    silent.acquire()
    try:
        t0 = time.monotonic()
        waiter.acquire()  # breaks the silent holder's lease after ~0.6 s
        assert 0.5 < time.monotonic() - t0 < 1.5
        waiter.release()
    finally:
        silent.release()  # not its lease any more: leaves nothing and raises nothing
    assert not Path(f"{base}.lease").exists()


def test_publish_race_between_two_processes_both_succeed(tmp_path: Path) -> None:
    """A slow builder whose heartbeat is too slow for the other's stale_after loses its lock; both build,
    the second to publish finds the first's complete artifact and succeeds with it."""
    root = str(tmp_path / "cache")
    slow = _start(tmp_path, BUILDER, [root, "2.0", "3600", "600"])
    _wait_line(slow, "computing")
    fast = _start(tmp_path, BUILDER, [root, "0.2", "0.3", "600"])
    outs = []
    for proc in (fast, slow):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["computed"] for o in outs] == [True, True]
    assert {o["data"] for o in outs} == {"same content from any builder"}
    final = Path(root) / "fit" / spec_key({"what": "race"})
    assert verify_manifest(final) is None and (final / "manifest.json").is_file()
    assert not list((Path(root) / "fit").glob(".tmp-*"))
    assert not list((Path(root) / "fit").glob("*.lease"))


def test_unusable_cache_dir_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    """A cache_dir that is a file, or a folder nobody may write (here /proc/self, unwritable even to root)."""
    afile = tmp_path / "cache_is_a_file"
    afile.write_text("")
    with pytest.raises(CacheDirError, match=f"cache_dir {afile} is a file"):
        check_cache_dir(afile)
    with pytest.raises(CacheDirError, match="cache_dir /proc/self is not writable"):
        check_cache_dir(Path("/proc/self"))
    with pytest.raises(CacheDirError, match=f"cannot be created \\({afile} is not a writable folder"):
        check_cache_dir(afile / "sub" / "cache")
    # A folder that does not exist yet is checked through its parent and left uncreated.
    assert check_cache_dir(tmp_path / "new" / "cache") == tmp_path / "new" / "cache"
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(CacheDirError, match=f"cache_dir {ro} is not writable"):
            check_cache_dir(ro)


def test_cli_with_a_file_as_cache_dir_fails_at_start(tmp_path: Path) -> None:
    """The command exits 1 with one error line naming the cache folder, before any work."""
    afile = tmp_path / "cache_file"
    afile.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "coreset_interp.run", "logger=none", "progress=false", f"cache_dir={afile}",
         f"hydra.run.dir={tmp_path / 'job'}"],
        capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    want = f"error: CacheDirError: cache_dir {afile} is a file, not a folder; set cache_dir to a folder"
    assert errors == [want]
    assert json.loads((tmp_path / "job" / "result.json").read_text())["status"] == "failed"


def test_flock_that_errors_falls_back_to_lease_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system whose flock errors (ENOLCK, as some NFS mounts answer): the start line says so, and
    the cache locks with lease files alone (a second holder still waits, naming the first)."""
    import errno

    import coreset_interp.locks as locks

    def broken(fd: object, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", broken)
    cache = ArtifactCache(tmp_path / "c", lock_timeout=0.3)
    line = cache.check()
    want = "flock unavailable (No locks available); locking with lease files and heartbeats only"
    assert line == f"cache {tmp_path / 'c'}: {want}"
    assert cache.locking == "lease"
    with cache.lock("fit", "k"), pytest.raises(LockTimeoutError, match=f"pid {os.getpid()}"):
        ArtifactCache(tmp_path / "c", lock_timeout=0.3, locking="flock").lock("fit", "k").acquire()
