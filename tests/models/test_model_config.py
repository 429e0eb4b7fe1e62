"""The model group's config: `name` plus flat fields, and the defaults a dataset states for it in
conf/dataset_defaults/<dataset>.yaml (weights, stem, training budget), which `model.*=...` overrides."""

from __future__ import annotations

import pytest

from coreset_interp.models import get_model
from coreset_interp.models.resnet18 import ResNet18
from coreset_interp.models.vgg19 import VGG19

DIGITS_TRAIN = {
    "epochs": 6, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4, "seed": 0,
    "max_per_class": None, "val_max_per_class": None, "target_accuracy": 0.97, "min_accuracy": 0.95,
}  # fmt: skip


def test_model_yaml_is_name_and_constructor_fields(make_config) -> None:
    node = make_config()["model"]
    assert node == {"name": "resnet18", "weights": "train", "stem": "small", "train": DIGITS_TRAIN}
    model = get_model(**node)
    assert type(model) is ResNet18 and model.name == "resnet18"
    with pytest.raises(
        ValueError, match=r"^model 'resnet18' has no field\(s\) 'arch'; valid: weights, stem, train$"
    ):
        get_model(**node, arch="resnet18")


def test_fashion_mnist_states_its_training_budget(make_config) -> None:
    budget = {"max_per_class": 1000, "val_max_per_class": 200, "epochs": 3, "target_accuracy": 0.9}
    budget["min_accuracy"] = 0.88
    for model in ("resnet18", "vgg19"):
        node = make_config(["dataset=fashion_mnist", f"model={model}"])["model"]
        assert (node["weights"], node["stem"]) == ("train", "small")
        assert {k: node["train"][k] for k in budget} == budget
    # A field the dataset does not state keeps the model's own value (VGG19 trains at lr 0.02).
    assert node["train"]["lr"] == 0.02
    # Digits states no epochs: each model's own (resnet18 6, vgg19 10).
    assert make_config(["model=vgg19"])["model"]["train"]["epochs"] == 10


def test_imagenet_states_pretrained_weights_and_float16(make_config) -> None:
    cfg = make_config(["dataset=imagenet", "model=vgg19"])
    assert (cfg["model"]["weights"], cfg["model"]["stem"], cfg["activation_dtype"]) == (
        "imagenet", "standard", "float16",
    )  # fmt: skip
    assert type(get_model(**cfg["model"])) is VGG19
    assert make_config()["activation_dtype"] == "float32"


def test_overrides_beat_the_datasets_defaults(make_config) -> None:
    cfg = make_config(
        ["dataset=fashion_mnist", "model.weights=random", "model.train.epochs=5", "activation_dtype=float16"]
    )
    assert cfg["model"]["weights"] == "random" and cfg["model"]["train"]["epochs"] == 5
    assert cfg["activation_dtype"] == "float16"
    # dataset_defaults.* changes the default of every model of the job (the transfer source's too).
    assert make_config(["dataset_defaults.weights=random"])["model"]["weights"] == "random"


def test_a_nested_source_model_reads_the_same_defaults(make_config) -> None:
    cfg = make_config(["dataset=fashion_mnist", "selector=transfer"])
    selector = cfg["selector"]
    source = selector.get("source_model") or selector["params"]["source_model"]
    assert source["name"] == "resnet50" and (source["weights"], source["stem"]) == ("train", "small")
    assert source["train"]["epochs"] == 3 and source["train"]["max_per_class"] == 1000
