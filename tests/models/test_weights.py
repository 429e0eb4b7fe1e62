"""Weights sources (model.weights): torchvision's ImageNet files from the local torch hub cache, checkpoint
files, random (seeded) weights, and training on the fly for digits (cached, so a second load does not
retrain)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.data.digits import DigitsDataset
from coreset_interp.models import build_architecture, evaluate_accuracy, get_model
from coreset_interp.models.weights import (
    CheckpointWeights,
    ImageNetWeights,
    RandomWeights,
    TrainedWeights,
    load_checkpoint,
    load_imagenet,
)

CPU = torch.device("cpu")


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
    path = get_model("resnet18").imagenet_checkpoint()
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert get_model("resnet50").imagenet_checkpoint().name == "resnet50-0676ba61.pth"
    assert get_model("vgg19").imagenet_checkpoint().name == "vgg19-dcbb9e9d.pth"


def test_imagenet_weights_load_from_the_hub_cache(torch_home: Path) -> None:
    # A state dict of the right architecture with random (seeded) weights stands in for the real file.
    state = build_architecture("resnet18", num_classes=1000, stem="standard", seed=5).model.state_dict()
    path = get_model("resnet18").imagenet_checkpoint()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    adapter = load_imagenet(get_model("resnet18"))
    assert not adapter.training
    _assert_same_state(adapter.model, state)


def test_missing_imagenet_weights_name_the_path(torch_home: Path) -> None:
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_imagenet(get_model("resnet18"))


def test_imagenet_weights_need_1000_classes(torch_home: Path, tmp_path: Path) -> None:
    model = get_model("resnet18", weights="imagenet", stem="small", train={"seed": 0})
    with pytest.raises(ValueError, match="1000 classes"):
        model.load(DigitsDataset(), ArtifactCache(tmp_path / "cache"), CPU)


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
    adapter = load_checkpoint(get_model("resnet18", stem="small"), path, num_classes=10)
    _assert_same_state(adapter.model, state)
    # Through the config group too: a path in model.weights.
    net = get_model("resnet18", weights=str(path), stem="small", train={"seed": 0})
    assert isinstance(net.source, CheckpointWeights)
    model, info = net.load(DigitsDataset(), ArtifactCache(tmp_path / "cache"), CPU)
    _assert_same_state(model.model, state)
    assert info["spec"]["path"] == str(path.resolve())


def test_wrong_checkpoints_are_clear_value_errors(tmp_path: Path) -> None:
    path = tmp_path / "r18.pt"
    torch.save(build_architecture("resnet18", 10, "small").model.state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit resnet50"):
        load_checkpoint(get_model("resnet50", stem="small"), path, num_classes=10)
    # Same architecture, wrong class count.
    with pytest.raises(ValueError, match=r"classes=3"):
        load_checkpoint(get_model("resnet18", stem="small"), path, num_classes=3)
    # Not a state dict at all.
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match="state dict"):
        load_checkpoint(get_model("resnet18", stem="small"), tensor, num_classes=10)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(get_model("resnet18", stem="small"), garbage, num_classes=10)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(get_model("resnet18", stem="small"), tmp_path / "missing.pt", num_classes=10)


def test_random_weights_are_seeded(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    a, _ = get_model("resnet18", weights="random", stem="small", train={"seed": 2}).load(
        DigitsDataset(), cache, CPU
    )
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
    model, info = get_model(**make_config()["model"]).load(ws.dataset, cache, CPU, progress=False)
    assert info["trained_here"] is False
    assert [(r.kind, r.computed) for r in cache.records] == [("checkpoint", False)]
    _assert_same_state(model.model, ws.model.model.state_dict())
    assert not model.training


def test_each_weights_value_is_one_source_class(tmp_path: Path) -> None:
    train = {"epochs": 1, "batch_size": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "seed": 3}
    train |= {"target_accuracy": 0.5, "min_accuracy": 0.1}
    sources = {
        w: type(get_model("vgg19", weights=w, train=train).source) for w in ("imagenet", "train", "random")
    }
    assert sources == {"imagenet": ImageNetWeights, "train": TrainedWeights, "random": RandomWeights}
    assert isinstance(get_model("vgg19", weights=str(tmp_path / "x.pt")).source, CheckpointWeights)
    # What each source adds to the model's cache key: the seed of random weights, the file of a checkpoint.
    digits = DigitsDataset()
    random_spec = get_model("resnet18", weights="random", stem="small", train=train).spec(digits)
    assert random_spec == {
        "arch": "resnet18",
        "weights": "random",
        "stem": "small",
        "seed": 3,
        "num_classes": 10,
    }
    trained = get_model("resnet18", weights="train", stem="small", train=train).spec(digits)
    assert trained["train"] == train and trained["dataset"] == digits.fingerprint()


def test_train_settings_are_checked_in_one_line() -> None:
    with pytest.raises(
        ValueError, match=r"^model.train has no field\(s\) 'epoch'; valid: epochs, batch_size"
    ):
        get_model("resnet18", weights="random", train={"epoch": 3})
    with pytest.raises(
        ValueError, match=r"^model.weights=train needs model.train.epochs, model.train.batch_size"
    ):
        get_model("resnet18", weights="train", train={"seed": 0})
    with pytest.raises(ValueError, match=r"^model.stem must be 'standard' or 'small', got 'tiny'$"):
        get_model("resnet18", stem="tiny")


def test_null_model_is_the_same_architecture_with_seeded_random_weights(make_config) -> None:
    model = get_model(**make_config()["model"])
    null = model.with_weights("random", seed=4)
    assert (type(null), null.stem, null.train["epochs"]) == (type(model), "small", model.train["epochs"])
    assert null.spec(DigitsDataset())["seed"] == 4 and model.train["seed"] == 0


def test_embedded_default_keeps_its_checkpoint_key(make_config) -> None:
    # The key the trained digits resnet18 had before the model group was split into one class per YAML
    # (same seed, epochs and data): a changed spec would retrain it and orphan every cached artifact.
    spec = get_model(**make_config()["model"]).spec(DigitsDataset())
    assert spec_key(spec) == "a3ae4e748f45e0a9e00e"
