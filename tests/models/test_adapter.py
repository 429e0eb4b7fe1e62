"""The adapter cuts real torchvision models at the last conv block: head(features(x)) == model(x)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coreset_interp.models import build_architecture, list_models

# (arch, stem, input side, expected feature shape (d, h, w)).
CASES = [
    ("resnet18", "small", 32, (512, 2, 2)),
    ("resnet18", "standard", 64, (512, 2, 2)),
    ("resnet50", "small", 32, (2048, 2, 2)),
    ("resnet50", "standard", 64, (2048, 2, 2)),
    ("vgg19", "small", 32, (512, 2, 2)),
    ("vgg19", "standard", 64, (512, 4, 4)),
]


def _hooked_forward(adapter, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last conv block's output) from one forward pass of the intact model, seen by a hook."""
    model = adapter.model
    # ResNet: layer4's output; VGG: the ReLU before the final max-pool of `features`.
    layer = model.layer4 if hasattr(model, "layer4") else model.features[-2]
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, seen[0]


@pytest.mark.parametrize(("arch", "stem", "side", "shape"), CASES, ids=[f"{a}-{s}" for a, s, _, _ in CASES])
def test_head_of_features_equals_model(arch: str, stem: str, side: int, shape: tuple[int, int, int]) -> None:
    # Random weights: the equality must hold for any weights, not only trained ones.
    adapter = build_architecture(arch, num_classes=7, stem=stem, seed=0)
    assert not adapter.training
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = adapter.features(x)
        logits, a_inside = _hooked_forward(adapter, x)
        assert a.shape == (2, *shape)
        # Post-ReLU maps, and exactly the intact model's own last-conv activations.
        assert float(a.min()) >= 0.0
        assert torch.equal(a, a_inside)
        # The same modules run in the same order, so the logits match bit for bit.
        assert torch.equal(adapter.head(a), logits)
        assert logits.shape == (2, 7)


def test_forward_is_the_intact_model() -> None:
    adapter = build_architecture("resnet18", num_classes=4, stem="small", seed=0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(adapter(x), adapter.model(x))


@pytest.mark.parametrize("arch", ["resnet18", "vgg19"])
def test_head_of_zero_maps_is_the_classifier_bias(arch: str) -> None:
    # head must accept modified maps (ICE feeds reconstructions): all-zero maps pool to zero, so the
    # logits are the last linear layer's bias.
    adapter = build_architecture(arch, num_classes=5, stem="small", seed=1)
    last = adapter.model.fc if arch == "resnet18" else adapter.model.classifier
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        out = adapter.head(torch.zeros(2, 512, 2, 2))
    torch.testing.assert_close(out, last.bias.expand(2, 5), atol=0, rtol=0)


def test_initialisation_depends_on_the_seed_only() -> None:
    state = torch.random.get_rng_state()
    a = build_architecture("resnet18", 10, "small", seed=3).model.state_dict()
    b = build_architecture("resnet18", 10, "small", seed=3).model.state_dict()
    c = build_architecture("resnet18", 10, "small", seed=4).model.state_dict()
    # The global generator is left alone (fork_rng), so callers' randomness is unaffected.
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_small_stem_shapes() -> None:
    resnet = build_architecture("resnet18", 10, "small").model
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert build_architecture("resnet18", 10, "standard").model.conv1.kernel_size == (7, 7)
    vgg = build_architecture("vgg19", 10, "small").model
    assert isinstance(vgg.classifier, nn.Linear) and vgg.classifier.in_features == 512


def test_relu_modules_cover_the_network() -> None:
    adapter = build_architecture("resnet18", 10, "small")
    names = [name for name, _ in adapter.relu_modules()]
    # The stem ReLU plus one shared ReLU module per BasicBlock (8 blocks in resnet18).
    assert names[0] == "relu" and len(names) == 9


def test_bad_arch_and_stem() -> None:
    assert list_models() == ["resnet18", "resnet50", "vgg19"]
    with pytest.raises(ValueError, match="choose one of: resnet18, resnet50, vgg19"):
        build_architecture("alexnet", 10, "small")
    with pytest.raises(ValueError, match="stem"):
        build_architecture("resnet18", 10, "tiny")
