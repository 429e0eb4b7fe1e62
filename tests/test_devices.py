"""One GPU per parallel job of a joblib sweep (slot claiming; the joblib_gpus launcher preset)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from coreset_interp import devices
from coreset_interp.devices import claim_slot, job_gpu

CONF = Path(__file__).resolve().parents[1] / "conf"


def _hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_slots_are_exclusive_while_held_and_free_when_released(tmp_path: Path) -> None:
    a, fd_a = claim_slot(3, tmp_path, start=1)
    b, fd_b = claim_slot(3, tmp_path, start=1)  # slot 1 is held: the next free one
    c, fd_c = claim_slot(3, tmp_path, start=1)
    assert (a, b, c) == (1, 2, 0) and None not in (fd_a, fd_b, fd_c)
    # All taken: the start slot is shared, and no lock is held for it.
    assert claim_slot(3, tmp_path, start=4) == (1, None)
    os.close(fd_b)  # a worker dies: the kernel releases its slot
    d, fd_d = claim_slot(3, tmp_path, start=0)
    assert d == 2 and fd_d is not None
    for fd in (fd_a, fd_c, fd_d):
        os.close(fd)
    with pytest.raises(ValueError, match="n_slots"):
        claim_slot(0, tmp_path)


def test_joblib_gpus_preset_composes_and_workers_get_a_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_GPUS_ON_NODE", raising=False)
    monkeypatch.setenv("CORESET_INTERP_GPUS", "4")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(devices, "_HELD", devices._SlotHolder())
    assert job_gpu(4) is None  # not a Hydra job
    cfg = _hydra(["hydra/launcher=joblib_gpus"])
    assert "JoblibLauncher" in cfg.hydra.launcher._target_ and int(cfg.hydra.launcher.n_jobs) == 4
    HydraConfig.instance().set_config(cfg)
    try:
        assert job_gpu(1) is None  # one GPU: nothing to assign
        slot = job_gpu(4)
        assert slot == 0 and job_gpu(4) == 0  # kept for the worker's lifetime
        # Another worker of the same launcher (another process: here another holder) gets another GPU.
        monkeypatch.setattr(devices, "_HELD", devices._SlotHolder())
        assert job_gpu(4) == 1
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs at least 2 CUDA devices (none here)")
def test_resolve_device_gives_a_worker_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coreset_interp.pipeline import resolve_device

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(devices, "_HELD", devices._SlotHolder())
    HydraConfig.instance().set_config(_hydra(["hydra/launcher=joblib_gpus", "hydra.launcher.n_jobs=2"]))
    try:
        first = resolve_device("auto")
        monkeypatch.setattr(devices, "_HELD", devices._SlotHolder())
        second = resolve_device("cuda")
        assert first.type == second.type == "cuda" and first.index != second.index
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]
