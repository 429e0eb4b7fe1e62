"""ImageNet as it is on disk, on tiny trees the tests write: synset train folders, val in folders or flat
with each of the three label files, torchvision's 1000-way indices, class subsets and every error."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coreset_interp.data import get_dataset
from coreset_interp.data.files import BadImageError, listing_digest, scan_tree
from coreset_interp.data.imagenet import ImageNetDataset, imagenet_classes, read_val_labels

WNIDS, NAMES = imagenet_classes()
# Three synsets far apart in index order (0, 500, 999), so a 0..2 relabelling cannot pass.
PICK = [WNIDS[0], WNIDS[500], WNIDS[999]]


def _jpeg(
    path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 20), noise: int | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise is None:
        Image.new("RGB", size, colour).save(path, "JPEG", quality=90)
        return
    # A class colour plus per-image noise (seeded), so images of a class differ.
    rng = np.random.default_rng(noise)
    arr = np.clip(np.asarray(colour)[None, None] + rng.normal(0, 60, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path, "JPEG", quality=90)


def write_raw_tree(
    root: Path, wnids: list[str], n_train: int = 2, n_val: int = 2, noise: bool = False
) -> dict[str, str]:
    """train/<wnid>/<wnid>_<i>.JPEG and a flat val/ILSVRC2012_val_<k>.JPEG; returns val stem -> wnid."""
    truth: dict[str, str] = {}
    k = 0
    for c, wnid in enumerate(wnids):
        colour = (40 * c % 256, 255 - 60 * c % 256, 90)
        for i in range(n_train):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", colour, noise=1000 * c + i if noise else None)
        for _ in range(n_val):
            k += 1
            stem = f"ILSVRC2012_val_{k:08d}"
            _jpeg(root / "val" / f"{stem}.JPEG", colour, noise=10**6 + k if noise else None)
            truth[stem] = wnid
    return truth


def write_loc_csv(path: Path, truth: dict[str, str]) -> Path:
    # Kaggle's file as is: the wnid first in PredictionString, followed by boxes (and more wnids).
    lines = ["ImageId,PredictionString"]
    lines += [f"{stem},{w} 1 2 30 40 {w} 5 6 20 22 " for stem, w in reversed(list(truth.items()))]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_devkit(path: Path, truth: dict[str, str]) -> Path:
    """A tiny ILSVRC2012_devkit_t12.tar.gz: meta.mat with leaf synsets under made-up ILSVRC2012_IDs, one
    non-leaf synset, and the ground truth of val image i on line i."""
    import scipy.io

    used = sorted(set(truth.values()))
    ids = {w: 7 + 3 * i for i, w in enumerate(used)}
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height"]
    dtype = [(f, object) for f in fields]
    rows = [(ids[w], w, NAMES[WNIDS.index(w)], "gloss", 0, np.zeros(0), 0) for w in used]
    rows.append((1001, "n00001740", "entity", "root", len(used), np.array(list(ids.values())), 3))
    synsets = np.array(rows, dtype=dtype)
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    gt = "\n".join(str(ids[truth[f"ILSVRC2012_val_{k:08d}"]]) for k in range(1, len(truth) + 1)) + "\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (
            ("data/meta.mat", meta.getvalue()),
            ("data/ILSVRC2012_validation_ground_truth.txt", gt.encode()),
        ):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def raw(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "imagenet"
    truth = write_raw_tree(root, PICK)
    return root, truth


def _expected_val(truth: dict[str, str]) -> np.ndarray:
    return np.asarray([WNIDS.index(truth[s]) for s in sorted(truth)])


def test_shipped_class_list_is_torchvisions() -> None:
    from torchvision.models import ResNet18_Weights

    assert len(WNIDS) == 1000 and len(set(WNIDS)) == 1000
    assert list(WNIDS) == sorted(WNIDS)
    assert WNIDS[0] == "n01440764" and WNIDS[-1] == "n15075141"
    assert list(NAMES) == ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.mark.parametrize("kind", ["csv", "text", "devkit"])
def test_flat_val_with_each_label_file(raw: tuple[Path, dict[str, str]], kind: str) -> None:
    root, truth = raw
    if kind == "csv":
        labels = write_loc_csv(root / "LOC_val_solution.csv", truth)
    elif kind == "text":
        labels = root / "val_labels.txt"
        labels.write_text("".join(f"{s}.JPEG {w}\n" for s, w in truth.items()))
    else:
        labels = write_devkit(root / "ILSVRC2012_devkit_t12.tar.gz", truth)
    assert read_val_labels(labels) == truth
    # A relative val_labels is relative to the root.
    ds = ImageNetDataset(root=str(root), val_labels=labels.name, image_size=16, resize=16)
    assert ds.num_classes == 1000 and ds.class_ids == [0, 500, 999]
    np.testing.assert_array_equal(ds.labels("train"), [0, 0, 500, 500, 999, 999])
    np.testing.assert_array_equal(ds.labels("val"), _expected_val(truth))
    x, y = ds.split("val")[0]
    assert x.shape == (3, 16, 16) and y == ds.labels("val")[0]


def test_val_in_synset_folders_and_the_yaml(raw: tuple[Path, dict[str, str]], make_config) -> None:
    root, truth = raw
    for stem, wnid in truth.items():
        (root / "val" / wnid).mkdir(exist_ok=True)
        shutil.move(root / "val" / f"{stem}.JPEG", root / "val" / wnid / f"{stem}.JPEG")
    cfg = make_config(
        ["dataset=imagenet", f"dataset.root={root}", "dataset.image_size=16", "dataset.resize=16"]
    )
    ds = get_dataset(**cfg["dataset"])
    assert ds.name == "imagenet"
    np.testing.assert_array_equal(ds.labels("val"), [0, 0, 500, 500, 999, 999])


def test_class_subsets_keep_their_1000_way_index(raw: tuple[Path, dict[str, str]]) -> None:
    root, truth = raw
    write_loc_csv(root / "LOC_val_solution.csv", truth)
    kw = {"root": str(root), "val_labels": "LOC_val_solution.csv", "image_size": 16, "resize": 16}
    ds = ImageNetDataset(classes=[PICK[2], PICK[0]], **kw)
    assert ds.class_ids == [0, 999]
    assert set(ds.labels("train")) == {0, 999} and set(ds.labels("val")) == {0, 999}
    assert ds.describe()["classes"] == [PICK[0], PICK[2]]
    # An integer k: the first k synsets present in index order; with a seed, k drawn from them.
    assert ImageNetDataset(classes=2, **kw).class_ids == [0, 500]
    drawn = [ImageNetDataset(classes=2, classes_seed=s, **kw).class_ids for s in range(6)]
    assert all(len(d) == 2 and set(d) <= {0, 500, 999} for d in drawn)
    assert len({tuple(d) for d in drawn}) > 1
    assert drawn[0] == ImageNetDataset(classes=2, classes_seed=0, **kw).class_ids
    # The subset is part of the cache identity.
    assert ImageNetDataset(classes=2, **kw).fingerprint() != ImageNetDataset(**kw).fingerprint()
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['n99999999'\]"):
        ImageNetDataset(classes=["n99999999"], **kw)
    with pytest.raises(ValueError, match=rf"\['{WNIDS[1]}'\] not present in the data"):
        ImageNetDataset(classes=[WNIDS[1]], **kw)
    with pytest.raises(ValueError, match=r"dataset.classes=4 must be between 1 and 3"):
        ImageNetDataset(classes=4, **kw)


def test_imagefolder_subsets_by_folder_name(tmp_path: Path) -> None:
    from coreset_interp.data.imagefolder import ImageFolderDataset

    for split in ("train", "val"):
        for c in ("ant", "bee", "cat"):
            _jpeg(tmp_path / split / c / "a.jpg", (10, 20, 30))
    ds = ImageFolderDataset(root=str(tmp_path), classes=["cat", "ant"], image_size=8, resize=8)
    assert ds.num_classes == 3 and ds.class_ids == [0, 2]
    np.testing.assert_array_equal(ds.labels("train"), [0, 2])
    assert ImageFolderDataset(root=str(tmp_path), classes=1, image_size=8, resize=8).class_ids == [0]


def test_layout_errors_name_the_culprits(raw: tuple[Path, dict[str, str]]) -> None:
    root, truth = raw
    with pytest.raises(
        ValueError, match=r"val.* is flat .*set dataset.val_labels to Kaggle's LOC_val_solution.csv"
    ):
        ImageNetDataset(root=str(root))
    partial = dict(list(truth.items())[1:])
    write_loc_csv(root / "partial.csv", partial)
    first = sorted(truth)[0]
    with pytest.raises(ValueError, match=rf"1 val image\(s\) have no label in .*partial.csv: {first}.JPEG"):
        ImageNetDataset(root=str(root), val_labels="partial.csv")
    write_loc_csv(root / "LOC_val_solution.csv", truth)
    kw = {"root": str(root), "val_labels": "LOC_val_solution.csv"}
    (root / "train" / "n99999998").mkdir()
    (root / "train" / "zebra_stuff").mkdir()
    with pytest.raises(
        ValueError, match=r"train has 2 synset\(s\) not among the 1000 .*: n99999998, zebra_stuff"
    ):
        ImageNetDataset(**kw)
    shutil.rmtree(root / "train" / "n99999998")
    shutil.rmtree(root / "train" / "zebra_stuff")
    # An empty synset folder among the chosen classes.
    (root / "train" / WNIDS[3]).mkdir()
    with pytest.raises(ValueError, match=rf"empty class folder\(s\) in train: {WNIDS[3]}"):
        ImageNetDataset(**kw)
    assert ImageNetDataset(classes=PICK, **kw).class_ids == [0, 500, 999]
    # A class in train but not in val.
    shutil.rmtree(root / "train" / WNIDS[3])
    _jpeg(root / "train" / WNIDS[7] / "x.JPEG", (1, 2, 3))
    with pytest.raises(ValueError, match=rf"class\(es\) in train but not in val: {WNIDS[7]}"):
        ImageNetDataset(**kw)


def test_listing_follows_every_file(tmp_path: Path) -> None:
    for c in ("a", "b"):
        for i in range(3):
            _jpeg(tmp_path / c / f"{i}.jpg", (i, 0, 0))
    dirs, files = scan_tree(tmp_path)
    assert dirs == ["a", "b"] and [f.rel for f in files] == [f"{c}/{i}.jpg" for c in "ab" for i in range(3)]
    base = listing_digest(files, [0] * 6)
    st = os.stat(tmp_path / "a" / "1.jpg")
    os.utime(tmp_path / "a" / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert listing_digest(scan_tree(tmp_path)[1], [0] * 6) != base


def test_broken_jpeg_names_its_path(raw: tuple[Path, dict[str, str]]) -> None:
    root, truth = raw
    write_loc_csv(root / "LOC_val_solution.csv", truth)
    bad = root / "train" / PICK[1] / f"{PICK[1]}_1.JPEG"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    kw = {"root": str(root), "val_labels": "LOC_val_solution.csv", "image_size": 16, "resize": 16}
    ds = ImageNetDataset(**kw)
    train = ds.split("train")
    with pytest.raises(
        BadImageError,
        match=rf"cannot decode image {re.escape(str(bad))}: .*(?i:truncated)",
    ):
        for i in range(len(train)):
            train[i]
    # Through a DataLoader worker the message still names the file.
    from torch.utils.data import DataLoader

    with pytest.raises(BadImageError, match=re.escape(str(bad))):
        list(DataLoader(train, batch_size=2, num_workers=1))
    with pytest.raises(ValueError, match=rf"1 broken image\(s\) in train, first {bad}: truncated JPEG"):
        ImageNetDataset(on_bad_image="check", **kw)
    skipped = ImageNetDataset(on_bad_image="skip", **kw)
    np.testing.assert_array_equal(skipped.labels("train"), [0, 0, 500, 999, 999])
    assert skipped.describe()["bad_images_skipped"] == {"train": 1, "val": 0}
    assert skipped.fingerprint() != ds.fingerprint()
    assert all(x.shape == (3, 16, 16) for x, _ in skipped.split("train"))
    with pytest.raises(ValueError, match=r"on_bad_image='drop'; choose one of \('error', 'check', 'skip'\)"):
        ImageNetDataset(on_bad_image="drop", **kw)


def _hub_resnet18(torch_home: Path, favourite: int) -> None:
    """A resnet18 state dict under torchvision's file name whose head always answers ``favourite``."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[favourite] = 10.0
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "resnet18-f37072fd.pth")


def _activations(result: dict) -> list[bool]:
    return [a["computed"] for a in result["artifacts"] if a["kind"] == "activations"]


@pytest.mark.slow
def test_raw_imagenet_job_on_three_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_config
) -> None:
    from coreset_interp.pipeline import run

    root = tmp_path / "imagenet"
    # Four synsets on disk, the job runs on three of them.
    truth = write_raw_tree(root, [*PICK, WNIDS[1]], n_train=6, n_val=3, noise=True)
    write_loc_csv(root / "LOC_val_solution.csv", truth)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _hub_resnet18(tmp_path / "torch_home", favourite=500)
    overrides = [
        "dataset=imagenet",
        f"dataset.root={root}",
        "dataset.val_labels=LOC_val_solution.csv",
        f"dataset.classes=[{','.join(PICK)}]",
        "dataset.image_size=64",
        "dataset.resize=64",
        "ratio.percents=[50]",
        "metric.null_reference=false",
        "interpreter.n_components=2",
        "interpreter.max_iter=30",
    ]
    cfg = make_config(overrides, cache_dir=tmp_path / "cache")
    result = run(cfg)
    # 1000-way labels: the head always answers 500, so accuracy is the share of class 500 among the
    # chosen classes' val images (1/3); relabelled 0..2 it would be 0.
    assert result["model_accuracy"] == pytest.approx(1 / 3)
    assert result["full"]["accuracy"] == pytest.approx(1 / 3)
    entry = result["ratios"][0]
    assert sorted(entry["angular_distance_per_class"], key=int) == ["0", "500", "999"]
    assert entry["n_selected"] == 9 and entry["angular_distance"] is not None
    assert result["dataset_info"]["classes"] == PICK
    assert _activations(result) == [True, True]
    # Same files: everything comes from the cache.
    assert _activations(run(cfg)) == [False, False]
    # One image moved to another class folder: new dataset key, the activations are recomputed.
    src = root / "train" / PICK[0] / f"{PICK[0]}_5.JPEG"
    before = get_dataset(**cfg["dataset"]).fingerprint()
    shutil.move(src, root / "train" / PICK[2] / src.name)
    assert get_dataset(**cfg["dataset"]).fingerprint() != before
    counts = np.bincount(get_dataset(**cfg["dataset"]).labels("train"), minlength=1000)
    assert (counts[0], counts[500], counts[999]) == (5, 6, 7)
    # (Both splits: the activations' key holds the whole dataset's fingerprint.)
    assert _activations(run(cfg)) == [True, True]
