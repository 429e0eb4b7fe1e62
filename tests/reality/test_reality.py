"""Reality checks: bootstrap resamples, the cascade's models, selection seeds, the normalised score."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from coreset_interp.reality import (
    bootstrap_indices,
    cascade_model,
    cascade_stages,
    combine_selection_seeds,
    normalise,
    normalised_value,
    selection_seeds,
)


def test_bootstrap_stratified_with_repeats() -> None:
    labels = np.repeat(np.arange(4), [5, 9, 3, 7])
    a = bootstrap_indices(labels, seed=0, draw=0)
    assert np.array_equal(a, bootstrap_indices(labels, seed=0, draw=0))
    assert not np.array_equal(a, bootstrap_indices(labels, seed=0, draw=1))
    assert np.array_equal(np.bincount(labels[a]), [5, 9, 3, 7])
    assert np.all(np.diff(a) >= 0) and len(np.unique(a)) < len(a)


def test_normalised_score_known_values() -> None:
    floor = {"angular_distance": 0.1, "angular_distance_per_class": {"0": 0.1, "1": 0.2}}
    null = {"angular_distance": 0.5, "angular_distance_per_class": {"0": 0.5, "1": 0.2}}
    entries = [{"angular_distance": 0.3, "angular_distance_per_class": {"0": 0.3, "1": 0.25}}]
    normalise(entries, floor, null)
    assert entries[0]["phi_normalised"] == pytest.approx(0.5)
    # Class 1's null equals its floor: no scale, so no score.
    assert entries[0]["phi_normalised_per_class"] == {"0": pytest.approx(0.5), "1": None}
    assert normalised_value(0.1, floor, null) == pytest.approx(0.0)
    assert normalised_value(0.5, floor, None) is None
    untouched = [{"angular_distance": 0.3}]
    normalise(untouched, None, null)
    assert "phi_normalised" not in untouched[0]


def test_combine_selection_seeds_mean_std() -> None:
    a = {
        "percent": 10,
        "selection_seed": 0,
        "accuracy": 0.8,
        "angular_distance": 0.2,
        "angular_distance_per_class": {"0": 0.1, "1": None},
        "n_selected": 10,
        "vebi_x": "a",
    }
    b = {
        "percent": 10,
        "selection_seed": 3,
        "accuracy": 0.9,
        "angular_distance": 0.4,
        "angular_distance_per_class": {"0": 0.3, "1": 0.5},
        "n_selected": 10,
        "vebi_x": "b",
    }
    out = combine_selection_seeds([a, b])
    assert out["angular_distance"] == pytest.approx(0.3)
    assert out["angular_distance_std"] == pytest.approx(0.1)
    assert out["accuracy"] == pytest.approx(0.85) and out["accuracy_std"] == pytest.approx(0.05)
    assert out["angular_distance_per_class"] == {"0": pytest.approx(0.2), "1": pytest.approx(0.5)}
    assert out["selection_seeds"] == [0, 3] and [e["selection_seed"] for e in out["by_selection_seed"]] == [
        0,
        3,
    ]
    assert out["percent"] == 10 and out["vebi_x"] == "a" and "selection_seed" not in out
    one = combine_selection_seeds([a])
    assert one["angular_distance"] == 0.2 and one["angular_distance_std"] == 0.0


def test_selection_seeds_config(make_config: Callable[..., dict[str, Any]]) -> None:
    assert selection_seeds(make_config(["seed=4"])) == [4]
    assert selection_seeds(make_config(["selection_seeds=[0,1,1,2]"])) == [0, 1, 2]
    with pytest.raises(ValueError, match="selection_seeds"):
        selection_seeds({"selection_seeds": ["x"]})


def test_cascade_reinitialises_top_down(
    digits_workspace: Any, make_config: Callable[..., dict[str, Any]]
) -> None:
    cfg = make_config()
    ws = digits_workspace
    stages = cascade_stages(ws.model)
    assert [s for s, _ in stages] == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]
    trained = {k: v.clone() for k, v in ws.model.model.state_dict().items()}
    model, spec, labels = cascade_model(cfg, ws, 2, seed=0)
    assert labels == ["head", "layer4"] and spec["cascade"] == {"reinit": ["head", "layer4"], "seed": 0}
    state = model.model.state_dict()
    assert not torch.equal(state["fc.weight"], trained["fc.weight"])
    assert not torch.equal(state["layer4.0.conv1.weight"], trained["layer4.0.conv1.weight"])
    assert torch.equal(state["layer3.0.conv1.weight"], trained["layer3.0.conv1.weight"])
    assert torch.equal(state["conv1.weight"], trained["conv1.weight"])
    # The trained workspace model is untouched.
    assert torch.equal(ws.model.model.state_dict()["fc.weight"], trained["fc.weight"])
    # All stages: the null model itself (same weights, same cache spec as the null reference's).
    last, last_spec, _ = cascade_model(cfg, ws, len(stages), seed=0)
    assert last_spec["weights"] == "random" and "cascade" not in last_spec
    fresh, _, _ = cascade_model(cfg, ws, len(stages) - 1, seed=0)
    assert torch.equal(
        last.model.state_dict()["layer1.0.conv1.weight"], fresh.model.state_dict()["layer1.0.conv1.weight"]
    )


def test_cascade_stages_vgg() -> None:
    from torchvision.models import vgg19

    from coreset_interp.models.adapter import vgg_adapter

    # On the meta device: only the module structure matters, not 140 M initialised weights.
    with torch.device("meta"):
        vgg = vgg_adapter(vgg19(weights=None, num_classes=10), "vgg19")
    stages = cascade_stages(vgg)
    assert stages[0] == ("head", ["classifier"])
    assert [s for s, _ in stages[1:]] == ["conv5", "conv4", "conv3", "conv2", "conv1"]
    # The last block holds the last conv (features.34 in torchvision's VGG19).
    assert "features.34" in stages[1][1] and "features.0" in stages[-1][1]


def test_ice_takes_repeated_indices(digits_context: Any) -> None:
    from coreset_interp.interpreters import get_interpreter

    ice = get_interpreter("ice", n_components=3, max_iter=15)
    labels = digits_context.train.labels
    base = np.sort(np.concatenate([np.flatnonzero(labels == c)[:6] for c in range(10)]))
    doubled = np.sort(np.concatenate([base, base[labels[base] == 0][:3]]))
    fit_a = ice.fit(digits_context, base, 0)
    fit_b = ice.fit(digits_context, doubled, 0)
    # A repeated image weighs twice in its class's NMF; the other classes see the same data.
    assert not np.allclose(fit_a.nmfs[0].components_, fit_b.nmfs[0].components_)
    np.testing.assert_allclose(fit_a.nmfs[1].components_, fit_b.nmfs[1].components_)


@pytest.mark.slow
def test_job_floor_seeds_heatmaps(make_config: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    from coreset_interp.heatmaps import load_heatmaps
    from coreset_interp.pipeline import run_job

    cfg = make_config(
        [
            "selector=random",
            "interpreter=ice",
            "interpreter.max_iter=20",
            "ratio.percents=[10]",
            "selection_seeds=[0,1]",
            "metric.null_reference=true",
            "viz.heatmap_classes=2",
        ]
    )
    payload = run_job(
        cfg, {"dir": tmp_path / "job", "name": "t", "group": "g", "tags": [], "job_type": "test"}
    )
    assert payload["status"] == "completed", payload.get("error")
    (entry,) = payload["ratios"]
    seeds = entry["by_selection_seed"]
    assert [s["selection_seed"] for s in seeds] == [0, 1]
    phis = [s["angular_distance"] for s in seeds]
    assert phis[0] != phis[1]
    assert entry["angular_distance"] == pytest.approx(np.mean(phis))
    assert entry["angular_distance_std"] == pytest.approx(np.std(phis))
    floor, null = payload["noise_floor"], payload["null_reference"]
    assert 0 < floor["angular_distance"] < null["angular_distance"]
    assert len(floor["vs_full"]) == 2 and all(0 < v < null["angular_distance"] for v in floor["vs_full"])
    expected = (entry["angular_distance"] - floor["angular_distance"]) / (
        null["angular_distance"] - floor["angular_distance"]
    )
    assert entry["phi_normalised"] == pytest.approx(expected)
    data = load_heatmaps(tmp_path / "job" / "heatmaps.npz")
    assert data.full.shape == (4, 2, 2) and set(data.per_percent) == {10}
    assert (tmp_path / "job" / "figures" / "heatmaps.png").is_file()


def test_checks_read_their_switches_from_the_config_without_defaults() -> None:
    from coreset_interp.reality import cascade, noise_floor

    # Switched off in the config: nothing runs (the interpreter and context are never touched).
    off = {"floor": False, "floor_resamples": 2, "cascade": False}
    assert noise_floor({"metric": off}, None, None, 0, 0.5) is None  # type: ignore[arg-type]
    assert cascade(None, {"metric": off}, None, None, None, 0, 0.5) is None  # type: ignore[arg-type]
    # conf/metric/default.yaml is the one place the defaults live: a missing switch is an error.
    with pytest.raises(KeyError, match="floor"):
        noise_floor({"metric": {}}, None, None, 0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="cascade"):
        cascade(None, {"metric": {}}, None, None, None, 0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="seed"):
        selection_seeds({"selection_seeds": None})
