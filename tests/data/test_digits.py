"""Known answers for the embedded digits dataset (scikit-learn's bundled 1797 images, no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from coreset_interp.data import get_dataset
from coreset_interp.data.digits import DigitsDataset


@pytest.fixture(scope="module")
def digits() -> DigitsDataset:
    return DigitsDataset(image_size=32, val_fraction=0.2, split_seed=0)


def _stack(data: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*[data[i] for i in range(len(data))], strict=True)
    return torch.stack(xs), torch.as_tensor(ys)


def test_sizes_and_stratified_80_20_split(digits: DigitsDataset) -> None:
    full_counts = np.bincount(load_digits().target, minlength=10)
    train, val = digits.labels("train"), digits.labels("val")
    assert len(train) + len(val) == 1797
    # train_test_split rounds the test share up: ceil(0.2 * 1797) = 360.
    assert len(val) == 360 and len(train) == 1437
    assert digits.num_classes == 10 and digits.class_names == [str(d) for d in range(10)]
    val_counts = np.bincount(val, minlength=10)
    train_counts = np.bincount(train, minlength=10)
    np.testing.assert_array_equal(train_counts + val_counts, full_counts)
    # Stratified: every class keeps its 20 % share to within one image.
    assert np.all(np.abs(val_counts - 0.2 * full_counts) <= 1)


def test_splits_are_disjoint_and_cover_the_data(digits: DigitsDataset) -> None:
    tr, va = digits._index["train"], digits._index["val"]
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(1797))


def test_images_are_3x32x32_and_normalised(digits: DigitsDataset) -> None:
    x, y = _stack(digits.split("train"))
    assert x.shape == (1437, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), digits.labels("train"))
    # The three channels are one grey image repeated.
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    # Normalised with the train split's own statistics.
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1.0) < 1e-3
    xv, _ = _stack(digits.split("val"))
    assert xv.shape == (360, 3, 32, 32)
    # Val shares train's statistics, so it is only close to (0, 1).
    assert abs(float(xv.mean())) < 0.1 and abs(float(xv.std()) - 1.0) < 0.1


def test_images_follow_the_source_pixels(digits: DigitsDataset) -> None:
    # Upsampling keeps the picture: the 8x8 average-pooled image correlates with the original.
    x, _ = _stack(digits.split("val"))
    small = torch.nn.functional.adaptive_avg_pool2d(x[:, :1], 8).flatten(1).numpy()
    orig = load_digits().images[digits._index["val"]].reshape(len(x), -1)
    corr = np.corrcoef(small.ravel(), orig.ravel())[0, 1]
    assert corr > 0.95


def test_split_is_deterministic_for_a_seed_and_differs_across_seeds(digits: DigitsDataset) -> None:
    again = DigitsDataset(split_seed=0)
    np.testing.assert_array_equal(again._index["val"], digits._index["val"])
    assert torch.equal(again.split("val").tensors[0], digits.split("val").tensors[0])
    assert again.fingerprint() == digits.fingerprint()
    other = DigitsDataset(split_seed=1)
    assert not np.array_equal(other._index["val"], digits._index["val"])
    # Still stratified with another seed.
    np.testing.assert_array_equal(
        np.bincount(other.labels("val"), minlength=10), np.bincount(digits.labels("val"), minlength=10)
    )
    assert other.fingerprint() != digits.fingerprint()


def test_image_size_and_bad_values() -> None:
    small = DigitsDataset(image_size=16)
    assert small.split("train")[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="image_size"):
        DigitsDataset(image_size=4)
    with pytest.raises(ValueError, match="val_fraction"):
        DigitsDataset(val_fraction=1.0)
    with pytest.raises(ValueError, match="unknown split"):
        small.labels("test")


def test_get_dataset_from_the_yaml_values(make_config) -> None:
    # The YAML is the constructor's fields only: the model's defaults live in conf/dataset_defaults/.
    node = make_config()["dataset"]
    assert set(node) == {"name", "image_size", "val_fraction", "split_seed"}
    ds = get_dataset(**node)
    assert isinstance(ds, DigitsDataset) and ds.name == "digits"
    assert ds.fingerprint() == DigitsDataset().fingerprint()
    with pytest.raises(ValueError, match=r"^dataset 'digits' has no field\(s\) 'stem'; valid: image_size, "):
        get_dataset(**node, stem="small")
