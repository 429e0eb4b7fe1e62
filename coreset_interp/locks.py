"""Artifact locks that time out and heal: an ``flock`` where it works, plus a lease file with a heartbeat.

A holder creates ``<name>.lease`` with ``O_EXCL`` (atomic on local disks, NFSv3+, Lustre and GPFS) and writes
who it is (host, pid, the process's start time, SLURM job id); a background thread touches the file every
``heartbeat`` seconds. A waiter breaks a lease whose heartbeat is older than ``stale_after`` (a dead or hung
remote holder) or whose process is gone on the waiter's own host, and gives up after ``timeout`` with one line
naming the holder.

Where ``flock`` excludes across processes (probed once per cache by :func:`probe_flock`), a holder also takes
an ``flock`` on ``<name>.lock`` before its lease, so that waiters on one host queue in the kernel. ``flock``
alone is not trusted across hosts: Lustre's node-local ``localflock`` grants it on every node at once, which
no probe on one node can detect, so the lease decides between hosts. Where ``flock`` is missing or errors
(some NFS mounts, FUSE), the lease files are the only lock.

A broken lease can, in a rare race, let two jobs build one artifact; the cache's publish step tolerates that
(the second finds the finished artifact and counts it as success), so a race costs time, never correctness.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


class LockTimeoutError(TimeoutError):
    """A lock was not acquired within the configured timeout (the message names the holder)."""


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from a config value: a number (seconds) or a string such as ``90s``, ``10m``, ``6h``, ``1d``.

    Args:
        value: the config value (``-1`` or ``null`` = forever, returned as -1).
        name: the config key, for the error message.

    Returns:
        Seconds (-1 for forever).
    """
    if value is None:
        return -1.0
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration (e.g. 30s, 10m, 6h), got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*", str(value))
    if not match:
        raise ValueError(f"{name} must be a duration (e.g. 30s, 10m, 6h, 1d or seconds), got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def job_id() -> str | None:
    """Returns:
    The scheduler's id of this job (``<array job>_<task>`` for a SLURM array task), None outside SLURM.
    """
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (``/proc/<pid>/stat`` field 22), to tell a reused pid apart.

    Args:
        pid: process id.

    Returns:
        The start time in clock ticks since boot, or None when unknown (no such process, no /proc).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def holder_identity() -> dict[str, Any]:
    """Returns:
    host, pid, process start time and job id of this process.
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid), "job_id": job_id()}


def process_alive(info: dict[str, Any]) -> bool | None:
    """Whether the process named by ``info`` (host, pid, start) still runs.

    Args:
        info: a holder's identity.

    Returns:
        True/False on this host; None when it ran on another host (cannot be told from here).
    """
    if info.get("host") != socket.gethostname():
        return None
    try:
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError):
        return False
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    start = info.get("start")
    return not (start is not None and process_start(pid) not in (None, start))


def describe_holder(info: dict[str, Any] | None, age: float | None = None) -> str:
    """One phrase naming a holder: ``host node7 pid 1234 job 99_3 (heartbeat 12s ago)``.

    Args:
        info: the holder's identity (None = unknown).
        age: seconds since its last heartbeat.

    Returns:
        The phrase.
    """
    if not info:
        return "an unknown process (no lease file)"
    text = f"host {info.get('host')} pid {info.get('pid')} job {info.get('job_id') or '-'}"
    return text if age is None else f"{text} (heartbeat {age:.0f}s ago)"


@dataclass(frozen=True)
class LockSettings:
    """How long to wait and when a holder counts as gone.

    Attributes:
        timeout: seconds to wait for a lock (-1 = forever).
        stale_after: a lease whose heartbeat is older than this many seconds is broken.
        heartbeat: seconds between a holder's heartbeats (well below ``stale_after``).
        poll: seconds between a waiter's looks at the lease.
    """

    timeout: float = -1.0
    stale_after: float = 600.0
    heartbeat: float = 30.0
    poll: float = 0.1


def probe_flock(folder: Path) -> tuple[bool, str]:
    """Test whether ``flock`` on ``folder``'s file system excludes a second process.

    Args:
        folder: an existing, writable folder (the cache root).

    Returns:
        (flock usable, one line saying what was found and which lock is used).
    """
    probe = Path(folder) / f".flock-probe-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                return False, (
                    f"cache {folder}: flock unavailable ({os.strerror(err.errno or 0) or err}); "
                    "locking with lease files and heartbeats only"
                )
            child = (
                "import fcntl,sys\nf=open(sys.argv[1],'a')\n"
                "try:\n fcntl.flock(f,fcntl.LOCK_EX|fcntl.LOCK_NB);print('acquired')\n"
                "except BlockingIOError:\n print('blocked')\n"
                "except OSError as e:\n print('error',e)\n"
            )
            out = subprocess.run(
                [sys.executable, "-S", "-c", child, str(probe)], capture_output=True, text=True, timeout=60
            ).stdout.strip()
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if out == "blocked":
        return True, (
            f"cache {folder}: flock excludes across processes (used on this host); lease files with "
            "heartbeats decide between hosts (a node-local flock such as Lustre localflock cannot be "
            "detected from one node)"
        )
    return False, (
        f"cache {folder}: flock does not exclude a second process ({out or 'no answer'}); "
        "locking with lease files and heartbeats only"
    )


class ArtifactLock:
    """One artifact's lock: ``<base>.lock`` (flock) and ``<base>.lease`` (holder + heartbeat).

    Args:
        base: path prefix of the lock files (``<kind folder>/.<key>``).
        settings: timeouts.
        use_flock: also take an ``flock`` (see :func:`probe_flock`).
        label: the artifact's name in messages.
    """

    def __init__(self, base: Path, settings: LockSettings, use_flock: bool, label: str) -> None:
        self.lock_path = Path(f"{base}.lock")
        self.lease_path = Path(f"{base}.lease")
        self.settings = settings
        self.use_flock = use_flock
        self.label = label
        self.token = uuid.uuid4().hex
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lease file -----------------------------------------------------------------------------------
    def read_lease(self) -> tuple[dict[str, Any] | None, float | None]:
        """Returns:
        (the current holder's identity, seconds since its heartbeat), (None, None) without a lease.
        """
        return read_lease(self.lease_path)

    def _stale_reason(self, info: dict[str, Any], age: float | None) -> str | None:
        alive = process_alive(info)
        if alive is False:
            return "its process is gone"
        if age is not None and age > self.settings.stale_after:
            return f"its heartbeat stopped {age:.0f}s ago (cache.stale_after={self.settings.stale_after:g}s)"
        return None

    def _break(self, info: dict[str, Any], reason: str) -> None:
        """Move a stale lease away; restore it if it turned out to be a fresh one (a concurrent breaker)."""
        aside = self.lease_path.with_name(f"{self.lease_path.name}.broken-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.lease_path, aside)
        except FileNotFoundError:
            return
        try:
            taken = json.loads(aside.read_text() or "{}")
        except (OSError, ValueError):
            taken = {}
        if taken.get("token") not in (None, info.get("token")):
            with contextlib.suppress(OSError):
                os.link(aside, self.lease_path)
        else:
            log.warning("breaking the lock on %s held by %s: %s", self.label, describe_holder(info), reason)
        with contextlib.suppress(OSError):
            aside.unlink()

    def _create_lease(self) -> bool:
        # The lease appears complete or not at all: a holder killed while writing it would otherwise leave
        # an empty lease that names no process, which waiters could only break after stale_after.
        body = json.dumps({**holder_identity(), "token": self.token, "since": time.time()})
        draft = self.lease_path.with_name(f"{self.lease_path.name}.draft-{uuid.uuid4().hex[:8]}")
        try:
            with open(draft, "w") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(draft, self.lease_path)
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this file system (some FUSE mounts): exclusive create, then write.
            return self._create_lease_in_place(body)
        finally:
            with contextlib.suppress(OSError):
                draft.unlink()
        return True

    def _create_lease_in_place(self, body: str) -> bool:
        try:
            fd = os.open(self.lease_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat):
            try:
                info, _ = self.read_lease()
                if not info or info.get("token") != self.token:
                    log.warning("the lock on %s was broken by another job while this one held it", self.label)
                    return
                os.utime(self.lease_path)
            except OSError as err:  # a file system hiccup: try again at the next beat
                log.debug("heartbeat of %s failed: %s", self.lease_path, err)

    # -- flock ----------------------------------------------------------------------------------------
    def _try_flock(self) -> bool:
        if self._fd is None:
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                log.warning("flock failed on %s (%s): using its lease file only", self.lock_path, err)
                self.use_flock = False
                self._close_fd()
                return True
            raise

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing releases the flock
            self._fd = None

    # -- public ---------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Wait for the lock, breaking stale leases; raise :class:`LockTimeoutError` naming the holder."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        have_flock = broke = False
        try:
            while True:
                if self.use_flock and not have_flock:
                    have_flock = self._try_flock()
                info, age = self.read_lease()
                if info is not None:
                    reason = self._stale_reason(info, age)
                    if reason is not None:
                        self._break(info, reason)
                        # A hung holder may keep its flock: the lease alone decides from here on.
                        broke = True
                        continue
                elif (have_flock or broke or not self.use_flock) and self._create_lease():
                    break
                waited = time.monotonic() - start
                if 0 <= self.settings.timeout <= waited:
                    raise LockTimeoutError(
                        f"timed out after {waited:.0f}s waiting for the lock on {self.label} held by "
                        f"{describe_holder(info, age)}; raise cache.lock_timeout, or remove "
                        f"{self.lease_path} if that job is gone"
                    )
                time.sleep(self.settings.poll)
        except BaseException:
            self._close_fd()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.label}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat, remove this holder's lease (only its own) and drop the flock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        info, _ = self.read_lease()
        if info and info.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.lease_path.unlink()
        self._close_fd()

    def __enter__(self) -> ArtifactLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lease(path: Path) -> tuple[dict[str, Any] | None, float | None]:
    """Read a lease file.

    Args:
        path: the ``.lease`` file.

    Returns:
        (holder identity, seconds since its last heartbeat), or (None, None) when there is none. A lease
        caught half-written counts as held by an unknown holder whose age is the file's.
    """
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    try:
        info = json.loads(text) if text.strip() else {}
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    return info, age
