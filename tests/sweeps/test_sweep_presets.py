"""Experiment and launcher presets compose into valid sweeps (fast: composition only, no jobs run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def _compose(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def _grid(cfg: Any) -> dict[str, list[str]]:
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) or {}
    return {k: [v.strip() for v in str(val).split(",")] for k, val in params.items()}


def _names(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml")}


def test_quick_covers_every_selector_and_interpreter() -> None:
    """quick sweeps every coreset chooser and every interpreter YAML present, at integer percents."""
    cfg = _compose(["experiment=quick"])
    grid = _grid(cfg)
    assert set(grid["interpreter"]) == _names("interpreter")
    # full = the reference inside every job; transfer needs a second model (the transfer preset).
    assert set(grid["selector"]) == _names("selector") - {"full", "transfer"}
    assert cfg.dataset.name == "digits" and cfg.model.name == "resnet18"
    percents = list(cfg.ratio.percents)
    assert percents and all(isinstance(p, int) and 0 < p <= 100 for p in percents)
    assert any(p in cfg.metric.table1_percents for p in percents)
    assert cfg.experiment_name == "quick"


def test_paper_is_the_papers_grid() -> None:
    """paper: 3 models x random/moderate/dgpruning x ICE/topic/VEBI x 5..50 % and 95 %."""
    cfg = _compose(["experiment=paper"])
    grid = _grid(cfg)
    assert set(grid["model"]) == {"resnet18", "resnet50", "vgg19"}
    assert set(grid["selector"]) == {"random", "moderate", "dgpruning"}
    assert set(grid["interpreter"]) == {"ice", "topic", "vebi"}
    assert list(cfg.ratio.percents) == [5, 10, 20, 30, 40, 50, 95]
    assert cfg.experiment_name == "paper"


def test_transfer_uses_resnet50_coresets_for_the_other_models() -> None:
    """transfer (Sec. 4.5): coresets chosen on resnet50 features interpret resnet18 and vgg19."""
    cfg = _compose(["experiment=transfer"])
    grid = _grid(cfg)
    assert cfg.selector.name == "transfer"
    assert cfg.selector.source_model.name == "resnet50"
    assert set(grid["model"]) == {"resnet18", "vgg19"}
    assert set(grid["selector.base"]) == {"random", "moderate", "dgpruning"}
    assert set(grid["interpreter"]) == {"ice", "vebi"}


def test_command_line_overrides_win_over_a_preset() -> None:
    """A user narrows a preset from the command line (e.g. a smoke run of the paper grid on digits)."""
    cfg = _compose(["experiment=paper", "dataset=digits", "ratio.percents=[10]"])
    assert cfg.dataset.name == "digits" and list(cfg.ratio.percents) == [10]


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("joblib", "JoblibLauncher"),
        ("slurm", "SlurmLauncher"),
        ("slurm_local", "LocalLauncher"),
        ("submitit_local", "LocalLauncher"),
        ("ray_local", "RayLauncher"),
        ("ray_cluster", "RayLauncher"),
    ],
)
def test_launcher_presets_compose(launcher: str, target: str) -> None:
    """Every launcher choice the README names resolves to its plugin's launcher class."""
    cfg = _compose([f"hydra/launcher={launcher}"])
    assert str(cfg.hydra.launcher._target_).endswith(target)
    assert cfg.hydra.callbacks.report._target_ == "coreset_interp.callbacks.ReportCallback"


def test_slurm_preset_is_a_valid_sbatch_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slurm preset's settings map onto sbatch options the way hydra-submitit-launcher passes them."""
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm import slurm

    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    cfg = _compose(["hydra/launcher=slurm", "hydra.sweep.dir=" + str(tmp_path)])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(params, dict)
    params.pop("_target_")
    params.pop("submitit_folder")
    assert params.pop("max_num_timeout") == 3  # requeued on timeout (preemptions do not count)
    # The launcher passes generic (BaseQueueConf) keys through submitit's equivalence table.
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    names = slurm.SlurmExecutor._equivalence_dict()
    sbatch: dict[str, Any] = {}
    for key, value in params.items():
        if key in generic:
            if names.get(key):
                sbatch[names[key]] = value
        else:
            sbatch[key] = value
    sbatch["mem"] = slurm._convert_mem(sbatch["mem"])
    text = slurm._make_sbatch_string(command="python -m x", folder=tmp_path, **sbatch)
    assert "#SBATCH --partition=gpu" in text
    assert "#SBATCH --gpus-per-node=1" in text
    assert "#SBATCH --time=480" in text
    assert "#SBATCH --cpus-per-task=10" in text
    assert "#SBATCH --mem=64GB" in text
    assert "#SBATCH --requeue" in text
    assert "#SBATCH --signal=USR2@300" in text
    assert "#SBATCH --job-name=coreset-interp" in text


def test_ray_presets_resources() -> None:
    """The cluster preset asks a GPU and memory per job; the local one stays CPU-only (the suite runs it)."""
    cluster = _compose(["hydra/launcher=ray_cluster"]).hydra.launcher.ray.remote
    assert cluster.num_gpus == 1 and cluster.memory == 48 * 1024**3 and cluster.num_cpus >= 4
    local = _compose(["hydra/launcher=ray_local"]).hydra.launcher.ray.remote
    assert local.get("num_gpus", 0) == 0 and local.num_cpus == 1
