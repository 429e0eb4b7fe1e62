"""The CPUs a job may use, and per-class work spread over them.

A job's CPU budget is the smallest of: the CPUs its process may run on (``os.sched_getaffinity``),
SLURM's ``SLURM_CPUS_PER_TASK`` when set, and, when Hydra's joblib launcher runs ``J`` jobs side by side on
one node, the job's share ``cpus // J``. :func:`parallel_map` runs independent per-class work on ``n_jobs``
workers with ``threads = budget // n_jobs`` BLAS/torch threads each, so that jobs x threads = cores and the
machine is never oversubscribed. Every item's result depends only on the item (and the thread count), so a
parallel run returns what a sequential run with the same threads per item returns.

Torch and BLAS kernels release the GIL, so threads (the default) run them concurrently without copying the
data to other processes; ``backend="processes"`` (joblib's loky) is there for pure-Python work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("threads", "processes")


def _affinity_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _slurm_cpus() -> int | None:
    """SLURM's cpus-per-task of this job step, when it runs under SLURM with that option."""
    raw = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        log.warning("ignoring SLURM_CPUS_PER_TASK=%r (not an integer)", raw)
        return None
    return value if value >= 1 else None


def launcher_jobs(cpus: int | None = None) -> int | None:
    """How many jobs Hydra's joblib launcher runs side by side, when this process is one of them.

    Args:
        cpus: the CPUs joblib's negative ``n_jobs`` counts from (default: this process's affinity).

    Returns:
        The launcher's effective ``n_jobs`` (joblib semantics: ``-1`` = all CPUs, ``-2`` = all but one),
        or None outside a joblib multirun.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return None
    raw = launcher.get("n_jobs")
    if raw is None:
        return None
    n = int(raw)
    total = cpus if cpus is not None else _affinity_cpus()
    if n < 0:
        n = total + 1 + n
    return max(1, n)


def available_cpus(jobs_on_node: int | None = None) -> int:
    """The CPUs this job may use.

    Args:
        jobs_on_node: jobs sharing this job's CPUs (default: the joblib launcher's ``n_jobs`` when this is
            one of its jobs, else 1).

    Returns:
        min(affinity, ``SLURM_CPUS_PER_TASK``) divided by the jobs sharing them, at least 1.
    """
    cpus = _affinity_cpus()
    slurm = _slurm_cpus()
    if slurm is not None:
        cpus = min(cpus, slurm)
    jobs = jobs_on_node if jobs_on_node is not None else launcher_jobs(cpus)
    if jobs is not None and jobs > 1:
        cpus = max(1, cpus // min(jobs, cpus))
    return cpus


def resolve_n_jobs(value: Any) -> int:
    """Turn the ``n_jobs`` config value into a worker count.

    Args:
        value: ``auto`` (or None, or -1) = :func:`available_cpus`; a positive integer = that many workers.

    Returns:
        The number of workers, >= 1.
    """
    if value is None or value == "auto" or (type(value) is int and value == -1):
        return available_cpus()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"n_jobs must be 'auto', -1 or a positive integer, got {value!r}")
    return value


def threads_per_job(n_jobs: int, cpus: int | None = None) -> int:
    """Args:
        n_jobs: workers running at once.
        cpus: the CPU budget (default: :func:`available_cpus`).

    Returns:
        BLAS/torch threads per worker so that workers x threads <= cpus (at least 1).
    """
    budget = cpus if cpus is not None else available_cpus()
    return max(1, budget // max(1, n_jobs))


@contextmanager
def thread_budget(threads: int) -> Iterator[None]:
    """Limit torch's intra-op threads and every BLAS/OpenMP pool of this process, then restore them.

    Args:
        threads: threads per kernel, >= 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def _run_threads(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int,
    threads: int,
    on_result: Callable[[int, R], None] | None,
    bar: Any,
) -> list[R]:
    out: list[Any] = [None] * len(items)

    def task(i: int) -> tuple[int, R]:
        # torch's thread count is per OpenMP caller thread: set it in the worker itself.
        torch.set_num_threads(threads)
        return i, fn(items[i])

    with thread_budget(threads), ThreadPoolExecutor(max_workers=n_jobs) as pool:
        pending: set[Future[tuple[int, R]]] = set()
        nxt = 0
        # At most n_jobs items in flight: a worker's inputs (one class) are only loaded when it starts.
        while nxt < len(items) or pending:
            while nxt < len(items) and len(pending) < n_jobs:
                pending.add(pool.submit(task, nxt))
                nxt += 1
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            failed: BaseException | None = None
            # Finished items are handed on even when another one failed (they may be checkpointed).
            for fut in done:
                if fut.exception() is not None:
                    failed = failed or fut.exception()
                    continue
                i, res = fut.result()
                out[i] = res
                if on_result is not None:
                    on_result(i, res)
                bar.update(1)
            if failed is not None:
                for fut in pending:
                    fut.cancel()
                raise failed
    return out


def _call_indexed(fn: Callable[[T], R], i: int, item: T, threads: int) -> tuple[int, R]:
    with thread_budget(threads):
        return i, fn(item)


def _run_processes(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int,
    threads: int,
    on_result: Callable[[int, R], None] | None,
    bar: Any,
) -> list[R]:
    from joblib import Parallel, delayed

    out: list[Any] = [None] * len(items)
    results = Parallel(
        n_jobs=n_jobs, backend="loky", return_as="generator_unordered", inner_max_num_threads=threads
    )(delayed(_call_indexed)(fn, i, item, threads) for i, item in enumerate(items))
    for i, res in results:
        out[i] = res
        if on_result is not None:
            on_result(i, res)
        bar.update(1)
    return out


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int = 1,
    *,
    backend: str = "threads",
    cpus: int | None = None,
    on_result: Callable[[int, R], None] | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on ``n_jobs`` workers, with jobs x threads = the CPU budget.

    Args:
        fn: the per-item work (for ``processes``, a picklable top-level function).
        items: the inputs.
        n_jobs: workers (1 = in this thread, still under the thread budget).
        backend: ``threads`` (torch/BLAS kernels, which release the GIL) or ``processes`` (joblib loky).
        cpus: the CPU budget (default: :func:`available_cpus`).
        on_result: called in the calling thread as ``on_result(index, result)`` as each item finishes
            (e.g. to checkpoint it), in completion order.
        progress: show a progress bar.
        desc: its label.

    Returns:
        The results, in the order of ``items``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"parallel backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    items = list(items)
    n_jobs = max(1, min(n_jobs, len(items)))
    threads = threads_per_job(n_jobs, cpus)
    with tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
        if n_jobs == 1 or backend == "threads":
            if n_jobs == 1:
                out: list[R] = []
                with thread_budget(threads):
                    for i, item in enumerate(items):
                        res = fn(item)
                        out.append(res)
                        if on_result is not None:
                            on_result(i, res)
                        bar.update(1)
                return out
            return _run_threads(fn, items, n_jobs, threads, on_result, bar)
        return _run_processes(fn, items, n_jobs, threads, on_result, bar)
