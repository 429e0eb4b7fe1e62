"""Shared fixtures: composed configs and one trained embedded-default workspace per test session.

Training resnet18 on digits takes about a minute on 2 cores, so the whole session shares one artifact
cache (``session_cache_dir``); tests that need a cold cache make their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GOLDEN = REPO.parent / "shared" / "golden"

# Tests never talk to a W&B server; offline runs still write their files.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def compose_config(overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose ``conf/config.yaml`` with overrides, resolved to a plain dict.

    Args:
        overrides: Hydra override strings.

    Returns:
        The resolved config.
    """
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact cache shared by the whole session (holds the trained digits checkpoint).

    ``CORESET_INTERP_TEST_CACHE`` names a folder kept across sessions instead (a developer's inner loop:
    the digits model is trained once, not per pytest run); CI leaves it unset and starts cold.
    """
    kept = os.environ.get("CORESET_INTERP_TEST_CACHE")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def make_config(session_cache_dir: Path) -> Callable[..., dict[str, Any]]:
    """Factory: ``make_config(overrides, cache_dir=None)`` -> resolved config using the session cache,
    no progress bars and logger ``none`` unless overridden."""

    def factory(overrides: list[str] | None = None, cache_dir: Path | None = None) -> dict[str, Any]:
        base = ["logger=none", "progress=false", f"cache_dir={cache_dir or session_cache_dir}"]
        return compose_config(base + list(overrides or []))

    return factory


@pytest.fixture(scope="session")
def digits_workspace(make_config: Callable[..., dict[str, Any]], session_cache_dir: Path) -> Any:
    """The embedded default's workspace (trained resnet18, train/val activations), built once."""
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.pipeline import build_workspace

    return build_workspace(make_config(), ArtifactCache(session_cache_dir))


@pytest.fixture(scope="session")
def digits_context(digits_workspace: Any, make_config: Callable[..., dict[str, Any]]) -> Any:
    """An InterpretContext over the embedded default's workspace."""
    from coreset_interp.config import JobConfig

    return digits_workspace.context(JobConfig.from_dict(make_config(["num_workers=0"])))
