"""Weights: torchvision's ImageNet files from the local torch hub cache, checkpoint files, and training
on the fly for digits (cached, so a second load does not retrain)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coreset_interp.cache import ArtifactCache
from coreset_interp.data.digits import DigitsDataset
from coreset_interp.models import (
    build_architecture,
    evaluate_accuracy,
    imagenet_checkpoint_path,
    load_checkpoint,
    load_imagenet,
    load_model,
)


def _assert_same_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # torch.hub.get_dir() reads $TORCH_HOME on every call: an empty temporary hub, nothing downloaded.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_imagenet_path_is_torchvisions_file_name(torch_home: Path) -> None:
    path = imagenet_checkpoint_path("resnet18")
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_checkpoint_path("resnet50").name == "resnet50-0676ba61.pth"
    assert imagenet_checkpoint_path("vgg19").name == "vgg19-dcbb9e9d.pth"


def test_imagenet_weights_load_from_the_hub_cache(torch_home: Path) -> None:
    # A state dict of the right architecture with random (seeded) weights stands in for the real file.
    state = build_architecture("resnet18", num_classes=1000, stem="standard", seed=5).model.state_dict()
    path = imagenet_checkpoint_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    adapter = load_imagenet("resnet18")
    assert not adapter.training
    _assert_same_state(adapter.model, state)


def test_missing_imagenet_weights_name_the_path(torch_home: Path) -> None:
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_imagenet("resnet18")


def test_imagenet_weights_need_1000_classes(torch_home: Path, tmp_path: Path) -> None:
    cfg = {"arch": "resnet18", "weights": "imagenet", "stem": "small", "train": {"seed": 0}}
    with pytest.raises(ValueError, match="1000 classes"):
        load_model(cfg, DigitsDataset(), ArtifactCache(tmp_path / "cache"), torch.device("cpu"))


@pytest.mark.parametrize(
    "layout", ["plain", "state_dict", "model", "model_module", "module_prefix", "pickled_module"]
)
def test_checkpoint_layouts(layout: str, tmp_path: Path) -> None:
    source = build_architecture("resnet18", num_classes=10, stem="small", seed=7).model
    state = source.state_dict()
    obj = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "model_module": {"model": source, "optimizer": {}},
        # DataParallel checkpoints prefix every key.
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "pickled_module": source,
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    adapter = load_checkpoint("resnet18", path, num_classes=10, stem="small")
    _assert_same_state(adapter.model, state)
    # Through the config group too: a path in model.weights.
    cfg = {"arch": "resnet18", "weights": str(path), "stem": "small", "train": {"seed": 0}}
    model, info = load_model(cfg, DigitsDataset(), ArtifactCache(tmp_path / "cache"), torch.device("cpu"))
    _assert_same_state(model.model, state)
    assert info["spec"]["path"] == str(path.resolve())


def test_wrong_checkpoints_are_clear_value_errors(tmp_path: Path) -> None:
    path = tmp_path / "r18.pt"
    torch.save(build_architecture("resnet18", 10, "small").model.state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit resnet50"):
        load_checkpoint("resnet50", path, num_classes=10, stem="small")
    # Same architecture, wrong class count.
    with pytest.raises(ValueError, match=r"classes=3"):
        load_checkpoint("resnet18", path, num_classes=3, stem="small")
    # Not a state dict at all.
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match="state dict"):
        load_checkpoint("resnet18", tensor, num_classes=10, stem="small")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint("resnet18", garbage, num_classes=10, stem="small")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint("resnet18", tmp_path / "missing.pt", num_classes=10, stem="small")


def test_random_weights_are_seeded(tmp_path: Path) -> None:
    cfg = {"arch": "resnet18", "weights": "random", "stem": "small", "train": {"seed": 2}}
    cache = ArtifactCache(tmp_path / "cache")
    a, _ = load_model(cfg, DigitsDataset(), cache, torch.device("cpu"))
    _assert_same_state(a.model, build_architecture("resnet18", 10, "small", seed=2).model.state_dict())
    # Random weights are never trained or cached.
    assert not (tmp_path / "cache").exists()


def test_trained_digits_model_reaches_95_percent(digits_workspace) -> None:
    ws = digits_workspace
    report = ws.model_info["train"]
    assert report["val_accuracy"] >= 0.95
    assert 1 <= report["epochs"] == len(report["history"])
    # The cached checkpoint is the model that was evaluated: the same accuracy, recomputed.
    assert evaluate_accuracy(ws.model, ws.dataset.split("val"), ws.device) == report["val_accuracy"]


def test_second_load_hits_the_checkpoint_cache(
    digits_workspace, make_config, session_cache_dir: Path
) -> None:
    ws = digits_workspace
    cache = ArtifactCache(session_cache_dir)
    model, info = load_model(make_config()["model"], ws.dataset, cache, torch.device("cpu"), progress=False)
    assert info["trained_here"] is False
    assert [(r.kind, r.computed) for r in cache.records] == [("checkpoint", False)]
    _assert_same_state(model.model, ws.model.model.state_dict())
    assert not model.training
