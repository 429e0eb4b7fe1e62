"""The CPUs a job may use and per-item work on several workers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from coreset_interp.parallel import (
    available_cpus,
    launcher_jobs,
    parallel_map,
    resolve_n_jobs,
    thread_budget,
    threads_per_job,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_available_cpus_follows_affinity_slurm_and_the_job_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert available_cpus() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert available_cpus() == 6
    # Three jobs sharing the six CPUs get two each; more jobs than CPUs still get one.
    assert available_cpus(jobs_on_node=3) == 2
    assert available_cpus(jobs_on_node=50) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")  # cannot exceed the affinity
    assert available_cpus() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "many")
    assert available_cpus() == 8
    assert resolve_n_jobs("auto") == resolve_n_jobs(None) == resolve_n_jobs(-1) == 8
    assert resolve_n_jobs(3) == 3
    assert threads_per_job(3, cpus=8) == 2 and threads_per_job(16, cpus=8) == 1
    for bad in [0, -2, 1.5, "all", True]:
        with pytest.raises(ValueError, match="n_jobs"):
            resolve_n_jobs(bad)


def test_joblib_launcher_share_is_read_from_the_hydra_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert launcher_jobs() is None  # not inside a Hydra job

    def hydra_cfg(n_jobs: int):
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            return compose(
                config_name="config",
                overrides=["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"],
                return_hydra_config=True,
            )

    try:
        HydraConfig.instance().set_config(hydra_cfg(4))
        assert launcher_jobs() == 4
        assert available_cpus() == 2
        HydraConfig.instance().set_config(hydra_cfg(-1))  # joblib: all CPUs -> one each
        assert launcher_jobs() == 8 and available_cpus() == 1
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def _square_sum(seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(300, 200, generator=g, dtype=torch.float64)
    return float((a @ a.T).sum())


@pytest.mark.parametrize("backend", ["threads", pytest.param("processes", marks=pytest.mark.slow)])
def test_parallel_results_equal_sequential_in_item_order(backend: str) -> None:
    items = list(range(7))
    with thread_budget(1):
        expected = [_square_sum(i) for i in items]
    seen: list[int] = []
    out = parallel_map(_square_sum, items, 2, backend=backend, cpus=2, on_result=lambda i, _r: seen.append(i))
    assert out == expected
    assert sorted(seen) == items


def test_thread_budget_limits_and_restores() -> None:
    before = torch.get_num_threads()
    inside: list[int] = []
    parallel_map(lambda _x: inside.append(torch.get_num_threads()), range(4), 2, cpus=2)
    assert set(inside) == {1}
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="backend"):
        parallel_map(abs, [1], 1, backend="mpi")
    with pytest.raises(ValueError, match="n_jobs"):
        parallel_map(abs, [1], 0)


def test_a_failing_item_raises_after_the_finished_ones_are_handed_on() -> None:
    started = threading.Event()

    def work(i: int) -> int:
        if i == 3:
            started.wait(5)
            raise RuntimeError("item 3 failed")
        if i == 0:
            started.set()
        return i * i

    handed: dict[int, int] = {}
    with pytest.raises(RuntimeError, match="item 3 failed"):
        parallel_map(work, list(range(6)), 2, cpus=2, on_result=lambda i, r: handed.__setitem__(i, r))
    # Everything that finished before the failure was handed on (and could be checkpointed).
    assert {0, 1, 2} <= set(handed) and all(handed[i] == i * i for i in handed) and 3 not in handed
    assert np.all(np.asarray(list(handed)) != 3)
