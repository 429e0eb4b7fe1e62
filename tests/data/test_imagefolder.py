"""ImageFolder datasets on a tiny tree of PNGs written by the test (the layout ImageNet uses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from coreset_interp.data import get_dataset
from coreset_interp.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset

# One solid colour per class, so every pixel of a transformed image has a known value.
COLOURS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cat": (0, 0, 255)}
COUNTS = {"train": 4, "val": 2}


def _write_tree(root: Path, classes: dict[str, tuple[int, int, int]], counts: dict[str, int]) -> Path:
    for split, n in counts.items():
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # Non-square, so resize + centre-crop both matter.
                Image.new("RGB", (40, 30), colour).save(folder / f"img{i:02d}.png")
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return _write_tree(tmp_path / "data", COLOURS, COUNTS)


def test_splits_labels_and_transform(tree: Path) -> None:
    ds = ImageFolderDataset(root=str(tree), image_size=16, resize=20)
    assert ds.num_classes == 3 and ds.class_names == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(ds.labels("train"), np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(ds.labels("val"), np.repeat([0, 1, 2], 2))
    train = ds.split("train")
    assert len(train) == 12 and len(ds.split("val")) == 6
    for i, label in enumerate(ds.labels("train")):
        x, y = train[i]
        assert y == label
        assert x.shape == (3, 16, 16)
        # A solid colour c becomes (c/255 - mean) / std in every pixel (ImageNet normalisation).
        rgb = np.asarray(COLOURS[ds.class_names[label]]) / 255.0
        expected = torch.tensor((rgb - IMAGENET_MEAN) / IMAGENET_STD, dtype=torch.float32)
        torch.testing.assert_close(x, expected[:, None, None].expand(3, 16, 16), atol=1e-5, rtol=0)


def test_caps_per_class_keep_the_first_files(tree: Path) -> None:
    ds = ImageFolderDataset(
        root=str(tree), image_size=8, resize=8, max_per_class_train=2, max_per_class_val=1
    )
    np.testing.assert_array_equal(ds.labels("train"), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.labels("val"), [0, 1, 2])
    train = ds.split("train")
    names = [Path(p).name for p in train.paths]
    assert names == ["img00.png", "img01.png"] * 3
    # The caps are part of the cache identity; a bigger cap than the class size keeps everything.
    assert ds.fingerprint()["n"] == {"train": 6, "val": 3}
    assert ds.fingerprint() != ImageFolderDataset(root=str(tree), image_size=8, resize=8).fingerprint()
    big = ImageFolderDataset(root=str(tree), image_size=8, resize=8, max_per_class_train=100)
    assert len(big.labels("train")) == 12


def test_get_dataset_from_the_yaml(tree: Path, make_config) -> None:
    cfg = make_config(["dataset=imagefolder", f"dataset.root={tree}", "dataset.max_per_class_train=3"])
    ds = get_dataset(**cfg["dataset"])
    assert ds.name == "imagefolder" and ds.num_classes == 3
    assert len(ds.labels("train")) == 9 and len(ds.labels("val")) == 6


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no train folder at .*nowhere.*dataset\.root"):
        ImageFolderDataset(root=str(tmp_path / "nowhere"))
    _write_tree(tmp_path / "half", COLOURS, {"train": 1})
    with pytest.raises(FileNotFoundError, match="no val folder"):
        ImageFolderDataset(root=str(tmp_path / "half"))


def test_mismatched_classes_are_a_clear_error(tmp_path: Path) -> None:
    root = _write_tree(tmp_path / "d", COLOURS, {"train": 1})
    _write_tree(root, {k: v for k, v in COLOURS.items() if k != "cat"}, {"val": 1})
    with pytest.raises(ValueError, match="class\\(es\\) in train but not in val: cat"):
        ImageFolderDataset(root=str(root))
