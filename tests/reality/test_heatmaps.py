"""Heatmaps (SPEC 4b): the numbers before colouring, the image choice, VEBI's differing units, the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coreset_interp.heatmaps import (
    JobHeatmaps,
    UnitPanel,
    VizConfig,
    bilinear,
    choose_images,
    differing_units,
    fit_heatmaps,
    load_heatmaps,
    save_heatmaps,
    top_k_heatmap,
)
from coreset_interp.interpreters.vebi import VEBIFit
from coreset_interp.interpreters.vebi_units import UnitLayer


def test_top_k_heatmap_known_maps() -> None:
    # Five 2x2 maps with sums 4, 40, 8, 36, 20: the top 3 are channels 1, 3, 4.
    z = np.zeros((5, 2, 2), dtype=np.float32)
    z[0] = 1.0
    z[1] = [[10, 0], [0, 30]]
    z[2] = [[2, 2], [2, 2]]
    z[3] = [[0, 20], [16, 0]]
    z[4] = [[5, 5], [5, 5]]
    h, chosen = top_k_heatmap([z], k=3)
    assert chosen == [(0, 1), (0, 3), (0, 4)]
    np.testing.assert_array_equal(h, [[10, 20], [16, 30]])
    # k = 1 is the best map itself; k larger than d' takes all maps.
    np.testing.assert_array_equal(top_k_heatmap([z], k=1)[0], z[1])
    np.testing.assert_array_equal(top_k_heatmap([z], k=99)[0], z.max(axis=0))


def test_top_k_heatmap_mixed_resolutions() -> None:
    # VEBI-style: a 1x1 layer with a large sum and a 2x2 layer; the 1x1 map is brought to 2x2 (constant).
    a = np.full((1, 1, 1), 9.0, dtype=np.float32)
    b = np.asarray([[[1, 2], [3, 12]], [[0, 0], [0, 1]]], dtype=np.float32)
    h, chosen = top_k_heatmap([a, b], k=2)
    assert chosen == [(1, 0), (0, 0)]
    np.testing.assert_array_equal(h, [[9, 9], [9, 12]])


def test_bilinear_resize() -> None:
    const = np.full((2, 2), 3.0)
    np.testing.assert_allclose(bilinear(const, (32, 32)), 3.0)
    ramp = np.asarray([[0.0, 1.0], [0.0, 1.0]])
    up = bilinear(ramp, (4, 4))
    # align_corners=False: the outer quarter-pixels keep the end values, the middle interpolates.
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])


class _HandMade:
    """An interpreter stand-in whose per-image maps are given (fit_heatmaps only calls image_maps)."""

    def __init__(self, maps: list[list[np.ndarray]]) -> None:
        self._maps = maps

    def image_maps(self, fit: object, ctx: object, indices: np.ndarray) -> list[list[np.ndarray]]:
        return [self._maps[int(i)] for i in indices]


def test_fit_heatmaps_per_image() -> None:
    rng = np.random.default_rng(0)
    maps = [[rng.random((6, 3, 3)).astype(np.float32)] for _ in range(4)]
    out = fit_heatmaps(_HandMade(maps), None, None, np.asarray([2, 0]), k=2)  # type: ignore[arg-type]
    assert out.shape == (2, 3, 3)
    for row, i in enumerate([2, 0]):
        z = maps[i][0]
        best = np.argsort(-z.reshape(6, -1).sum(1), kind="stable")[:2]
        np.testing.assert_allclose(out[row], z[best].max(axis=0))


def test_choose_images_seeded_and_per_class() -> None:
    labels = np.repeat(np.arange(5), 7)
    a = choose_images(labels, 3, 2, seed=0)
    assert len(a) == 6
    assert np.array_equal(a, choose_images(labels, 3, 2, seed=0))
    classes = labels[a]
    assert len(set(classes.tolist())) == 3 and all(np.sum(classes == c) == 2 for c in set(classes.tolist()))
    b = choose_images(labels, [4, 1], 3, seed=1)
    assert labels[b].tolist() == [1, 1, 1, 4, 4, 4]
    with pytest.raises(ValueError, match="heatmap_classes"):
        choose_images(labels, [7], 2, seed=0)


def test_viz_config_rejects_unknown_keys() -> None:
    assert VizConfig.from_cfg({"viz": {"heatmap_k": 5}}).heatmap_k == 5
    with pytest.raises(ValueError, match="heatmap_kk"):
        VizConfig.from_cfg({"viz": {"heatmap_kk": 5}})


def _vebi_fit(units: dict[int, list[int]]) -> VEBIFit:
    layers = [UnitLayer(0, "relu", 4, 8, 8, 0), UnitLayer(1, "layer1.0.relu", 6, 4, 4, 4)]
    return VEBIFit(
        layers,
        {c: np.asarray(u, dtype=np.int64) for c, u in units.items()},
        {c: np.linspace(1.0, 0.5, len(u)) * (c + 1) for c, u in units.items()},
        {c: False for c in units},
        1.0,
        0,
        10,
    )


def test_differing_units_exactly_coreset_minus_full() -> None:
    full = _vebi_fit({0: [1, 5, 7], 1: [2], 2: []})
    core = _vebi_fit({0: [5, 9, 1], 1: [2, 1, 8], 2: [3]})
    got = differing_units(full, core)
    # Per class: unit 9 (class 0), units 1 and 8 (class 1: unit 1 is class 0's in the full fit, not 1's),
    # unit 3 (class 2); shared units (0: 5, 1; 1: 2) are out.
    assert sorted((c, u) for c, u, _ in got) == [(0, 9), (1, 1), (1, 8), (2, 3)]
    weights = [w for _, _, w in got]
    assert weights == sorted(weights, reverse=True)
    assert differing_units(core, core) == []
    # Layer (L) and filter (F) labels of unit 9: call 1, channel 5.
    calls, channels = core.unit_positions(np.asarray([9]))
    assert (int(calls[0]), int(channels[0])) == (1, 5)


def test_save_load_roundtrip_and_report_grid(tmp_path: Path) -> None:
    from coreset_interp.viz_heatmaps import report_heatmap_figures

    rng = np.random.default_rng(1)
    idx = np.asarray([3, 8])
    images = {i: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for i in (3, 8, 11)}
    panel = UnitPanel(1, 9, 1, 5, "1:layer1.0.relu", 0.7, np.asarray([11, 3]), rng.random((2, 4, 4)))
    dirs = []
    for sel in ("random", "moderate"):
        data = JobHeatmaps(
            {
                "dataset": "d",
                "model": "m",
                "selector": sel,
                "interpreter": "vebi",
                "k": 3,
                "percents": [10, 50],
                "labels": [0, 1],
            },
            idx,
            rng.random((2, 2, 2)).astype(np.float32),
            {10: rng.random((2, 2, 2)).astype(np.float32), 50: rng.random((2, 2, 2)).astype(np.float32)},
            images,
            {10: [panel]} if sel == "random" else {10: []},
        )
        path = save_heatmaps(data, tmp_path / sel)
        dirs.append(tmp_path / sel)
        back = load_heatmaps(path)
        np.testing.assert_allclose(back.per_percent[10], data.per_percent[10], atol=1e-3)
        assert back.full.dtype == np.float32 and np.load(path)["full"].dtype == np.float16
        assert set(back.images) == {3, 8, 11}
        if sel == "random":
            (u,) = back.vebi[10]
            assert (u.cls, u.unit, u.layer, u.filter) == (1, 9, 1, 5)
            assert (
                json.loads(str(np.load(path)["meta"]))["vebi_units"]["10"][0]["layer_key"] == panel.layer_key
            )
    figs = report_heatmap_figures(dirs, tmp_path / "report", None)
    names = [n for n, _, _ in figs]
    assert names == ["heatmaps_vebi_d_m.png", "fig8_vebi_new_units_d_m.png"]
    assert all(p.is_file() for _, _, p in figs)
    assert "rho = 10 %" in figs[0][1]


def test_report_shows_reality_sections(tmp_path: Path) -> None:
    """The report adds the companion table (phi_normalised), the cascade and the floor band to Fig. 4."""
    from coreset_interp.report import aggregate, build_report, load_results

    sweep = tmp_path / "sweep"
    floor = {"angular_distance": 0.1, "angular_distance_per_class": {"0": 0.08, "1": 0.12}}
    null = {"angular_distance": 0.5, "angular_distance_per_class": {"0": 0.5, "1": 0.5}}
    for j, sel in enumerate(("random", "moderate")):
        ratios = [
            {
                "ratio": p / 100,
                "percent": p,
                "accuracy": 0.9,
                "angular_distance": phi,
                "angular_distance_std": 0.02 if sel == "random" else 0.0,
                "phi_normalised": (phi - 0.1) / 0.4,
                "angular_distance_per_class": {"0": phi, "1": phi},
                "fit_seconds": 1.0,
            }
            for p, phi in ((10, 0.3), (50, 0.2))
        ]
        payload = {
            "status": "completed",
            "config": {"seed": 0, "selector": {"name": sel}, "logger": {"name": "none"}},
            "model": "resnet18",
            "dataset": "digits",
            "selector": sel,
            "interpreter": "ice",
            "ratios": ratios,
            "full": {"accuracy": 0.95, "fit_seconds": 3.0},
            "null_reference": null,
            "noise_floor": floor,
            "cascade": {
                "steps": [
                    {"step": 1, "reinit": ["head"], "angular_distance": 0.0},
                    {"step": 2, "reinit": ["head", "layer4"], "angular_distance": 0.4},
                ]
            },
        }
        (sweep / str(j)).mkdir(parents=True)
        (sweep / str(j) / "result.json").write_text(json.dumps(payload))
    series = aggregate(load_results(sweep))
    assert series[0].reality["floor"]["mean"] == pytest.approx(0.1)
    assert series[0].reality["floor"]["se"] == pytest.approx(np.std([0.08, 0.12]) / np.sqrt(2))
    report = build_report(sweep, wandb_mode="disabled")
    page = (report.out / "report.html").read_text()
    assert "Table 1 companion" in page and "phi_normalised = (Phi - floor) / (null - floor)" in page
    # Table 1's mean over rho 10 and 50 of phi_normalised: (0.5 + 0.25) / 2.
    assert "0.375" in page
    assert "Cascading randomisation" in page and "+layer4" in page
    assert (report.out / "cascade.png").is_file() and (report.out / "fig4_phi.png").is_file()
    summary = json.loads((report.out / "summary.json").read_text())
    assert summary["cascade"][0]["phi"] == [0.0, 0.4]


def test_display_images_undo_normalisation(tmp_path: Path) -> None:
    """ImageFolder (ImageNet normalisation) comes back as the solid colour at the crop size; digits as the
    raw pixels scaled to 0..255 (a positive affine normalisation undone by min-max)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from coreset_interp.data.digits import DigitsDataset
    from coreset_interp.data.imagefolder import ImageFolderDataset
    from coreset_interp.heatmaps import display_images

    colours = {"ant": (255, 0, 0), "bee": (30, 200, 90)}
    for split in ("train", "val"):
        for name, colour in colours.items():
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (40, 30), colour).save(tmp_path / split / name / "a.png")
    ds = ImageFolderDataset(root=str(tmp_path), image_size=16, resize=20)
    pics = display_images(ds, np.asarray([0, 1]))
    assert pics.shape == (2, 16, 16, 3) and pics.dtype == np.uint8
    np.testing.assert_allclose(pics[1].reshape(-1, 3), np.tile([30, 200, 90], (256, 1)), atol=1)
    digits = DigitsDataset(image_size=8)
    pic = display_images(digits, np.asarray([0]))[0]
    # At 8x8 the bilinear resize is the identity: the source pixels (0..16) scaled to 0..255.
    raw = load_digits().images[digits._index["val"][0]]
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    np.testing.assert_allclose(pic[..., 0], expected, atol=1)
    assert np.array_equal(pic[..., 0], pic[..., 2])


def test_vebi_native_maps_pool_to_the_compared_maps(digits_context: object) -> None:
    """VEBI's heatmap maps are the units at their layer's resolution: pooled to the last conv block's
    size they are exactly the maps the shape metric compares; each image gets its own class's units."""
    import torch
    import torch.nn.functional as F

    from coreset_interp.interpreters import get_interpreter
    from coreset_interp.interpreters.vebi_units import probe_layers

    ctx = digits_context
    vebi = get_interpreter("vebi")
    x = ctx.dataset.split("val")[0][0][None].to(ctx.device)
    layers = probe_layers(ctx.model, x)
    # Units in the stem (call 0), layer1 and layer4 (the last call), two classes.
    last = layers[-1]
    units = {0: np.asarray([layers[1].offset + 3, 5]), 1: np.asarray([last.offset + 7])}
    fit = VEBIFit(
        layers, units, {0: np.asarray([2.0, 1.0]), 1: np.asarray([1.0])}, {0: False, 1: False}, 1.0, 0, 9
    )
    idx = np.concatenate([ctx.val.class_indices(0)[:2], ctx.val.class_indices(1)[:1]])
    per_image = vebi.image_maps(fit, ctx, idx)
    assert [sorted(g.shape for g in groups) for groups in per_image][0] == sorted(
        [(1, layers[0].height, layers[0].width), (1, layers[1].height, layers[1].width)]
    )
    assert [g.shape for g in per_image[2]] == [(1, last.height, last.width)]
    _, h, w = ctx.val.map_shape
    pooled = vebi._capture(ctx, fit, idx[:2], units[0])
    for n in range(2):
        by_call = {g.shape[1]: g for g in per_image[n]}
        stem = F.adaptive_avg_pool2d(torch.from_numpy(by_call[layers[0].height]), (h, w)).numpy()
        np.testing.assert_allclose(stem[0], pooled[n, 1], rtol=1e-5, atol=1e-6)
    # The last conv block's unit is the last-conv activation map itself.
    np.testing.assert_allclose(per_image[2][0][0], ctx.val.read_maps(idx[2:])[0, 7], rtol=1e-4, atol=1e-5)
