"""One GPU per parallel job: the device a job of a joblib sweep on a multi-GPU node runs on.

Hydra's joblib launcher runs ``n_jobs`` jobs at once in worker processes that it reuses for later jobs.
Each worker claims the first free GPU slot (an ``flock`` on ``<tmp>/coreset_interp-gpus-<launcher pid>/<i>``,
starting from the job's number modulo the GPU count) and keeps it for its lifetime, so jobs running at the
same time never share a GPU while there are at least as many GPUs as workers, and the kernel releases a
dead worker's slot. ``CUDA_VISIBLE_DEVICES`` narrows the GPUs as usual (slots index the visible ones).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

from coreset_interp.parallel import launcher_jobs

log = logging.getLogger(__name__)


class _SlotHolder:
    """The GPU slot this process holds (the open, locked file keeps it)."""

    def __init__(self) -> None:
        self.slot: int | None = None
        self.fd: int | None = None


_HELD = _SlotHolder()


def claim_slot(n_slots: int, lock_dir: Path, start: int = 0) -> tuple[int, int | None]:
    """Lock the first free slot of ``n_slots``, trying ``start``, ``start + 1``, ... (mod n_slots).

    Args:
        n_slots: number of slots (GPUs), >= 1.
        lock_dir: folder of the slot lock files (shared by the workers of one launcher).
        start: first slot to try.

    Returns:
        (slot, open file descriptor holding its lock; None when every slot was taken and ``start`` mod
        ``n_slots`` is shared).
    """
    if n_slots < 1:
        raise ValueError(f"n_slots must be >= 1, got {n_slots}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_slots):
        slot = (start + i) % n_slots
        fd = os.open(lock_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    return start % n_slots, None


def _job_num() -> int:
    from hydra.core.hydra_config import HydraConfig

    try:
        return int(HydraConfig.get().job.num)
    except Exception:  # noqa: BLE001 - not in a multirun job
        return 0


def job_gpu(n_gpus: int) -> int | None:
    """The GPU index this process should use, when it is a worker of a parallel joblib sweep.

    Args:
        n_gpus: GPUs visible to this process.

    Returns:
        The index (kept for the process's lifetime), or None outside a parallel joblib sweep or with
        fewer than 2 GPUs (then the default device is used).
    """
    if n_gpus < 2:
        return None
    jobs = launcher_jobs()
    if jobs is None or jobs < 2:
        return None
    if _HELD.slot is None:
        lock_dir = Path(tempfile.gettempdir()) / f"coreset_interp-gpus-{os.getppid()}"
        slot, fd = claim_slot(n_gpus, lock_dir, start=_job_num())
        if fd is None:
            log.warning("all %d GPU slots are taken (n_jobs > GPUs); sharing cuda:%d", n_gpus, slot)
        _HELD.slot, _HELD.fd = slot, fd
    return _HELD.slot
