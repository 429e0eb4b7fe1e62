"""Benchmark the extraction pass against the bare forward pass, and its memory against the split size.

In one run:

(a) throughput: images/s of the extraction pass (``ensure_store``: last-conv maps in the store's dtype,
    g, labels, preds, logits, chunk files published atomically) against the bare forward pass
    (``model(x)`` under no_grad) of the same model on the same DataLoader and batch size, for resnet18 at
    64 px and resnet50 at 224 px (synthetic in-memory images, random weights: the speed does not depend
    on them). The two are timed alternately, ``--repeats`` times each, and the best of each is kept, so
    that a load spike on a shared machine hits both alike. On a GPU it also times the bare pass with and
    without autocast + channels_last. Target: extraction >= 0.9 x bare forward.
(b) memory: the peak anonymous resident memory (RssAnon in /proc/<pid>/status, sampled every 5 ms; the
    file-backed pages of the memory-mapped store do not count) of a Fashion-MNIST extraction of the first
    2k and the first 20k train images, each in a fresh child process, with the same 32 px / 3-channel
    preparation as digits, per sample. Target: peak(20k) / peak(2k) <= 1.2.

Usage:
    python scripts/bench_extract.py [--json PATH] [--repeats 3] [--fashion-root DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coreset_interp.cache import ArtifactCache  # noqa: E402
from coreset_interp.models import build_architecture  # noqa: E402
from coreset_interp.models.extraction import ExtractSettings, ensure_store  # noqa: E402
from coreset_interp.models.loader import compute_precision, make_loader, pass_mode, to_device  # noqa: E402

FASHION = Path(os.environ.get("FASHION_MNIST_ROOT", "/usr/share/datasets/fashion-mnist"))
MODELS = (("resnet18", 64, 256), ("resnet50", 224, 48))


# ------------------------------------------------------------------------------------------ data
class _Synthetic:
    """An ImageDataset of random images (the interface ensure_store needs)."""

    name = "synthetic"

    def __init__(self, n: int, size: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.randn(n, 3, size, size, generator=gen), torch.arange(n) % 10)
        self.n, self.size, self.num_classes = n, size, 1000

    def split(self, split: str) -> Dataset:
        return self.data

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "size": self.size}


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file into a uint8 array."""
    if path.suffix == ".gz":
        with gzip.open(path) as fh:
            raw = fh.read()
    else:
        raw = path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class _FashionSplit(Dataset):
    """Fashion-MNIST images prepared per sample like digits: bilinear to 32 px, 3 channels, normalised."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std = 0.2860, 0.3530  # the train split's pixel statistics (scaled to [0, 1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].astype(np.float32) / 255.0)[None, None]
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)[0]
        return ((x - self.mean) / self.std).repeat(3, 1, 1), int(self.labels[i])


class _Fashion:
    name = "fashion_mnist_bench"

    def __init__(self, root: Path, n: int) -> None:
        images = read_idx(root / "train-images-idx3-ubyte.gz")[:n]
        labels = read_idx(root / "train-labels-idx1-ubyte.gz")[:n].astype(np.int64)
        self.split_data = _FashionSplit(images, labels)
        self.n, self.num_classes = n, 10

    def split(self, split: str) -> Dataset:
        return self.split_data

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n}


# ------------------------------------------------------------------------------------------ (a)
def bare_forward(
    model: Any, data: Dataset, batch: int, device: torch.device, precision: str, cl: bool
) -> float:
    """Images/s of model(x) over the loader."""
    batches = [list(range(b, min(b + batch, len(data)))) for b in range(0, len(data), batch)]
    loader = make_loader(data, batches, 0, device)
    start = time.perf_counter()
    with pass_mode(model, device, precision, cl):
        for x, _ in loader:
            out = model(to_device(x, device, cl))
        if device.type == "cuda":
            torch.cuda.synchronize()
    del out
    return len(data) / (time.perf_counter() - start)


def extraction(model: Any, ds: _Synthetic, batch: int, device: torch.device, autocast: bool) -> float:
    """Images/s of a cold extraction of the split into a fresh cache."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = ExtractSettings(batch_size=batch, num_workers=0, progress=False, autocast=autocast)
        stats: list[dict[str, Any]] = []
        start = time.perf_counter()
        ensure_store(
            ArtifactCache(Path(tmp)),
            model,
            {"bench": ds.fingerprint()},
            ds,
            "train",
            device,
            "float16",
            {"maps"},
            settings,
            stats,
        )
        return ds.n / (time.perf_counter() - start)


def throughput(device: torch.device, repeats: int, batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arch, size, n in MODELS:
        n = n if device.type == "cpu" else 8 * n
        model = build_architecture(arch, 1000, "standard", 0).to(device).eval()
        ds = _Synthetic(n, size)
        precision = compute_precision(device, True)
        bare, ext = [], []
        bare_forward(model, ds.data, batch, device, precision, True)  # warm-up (allocator, kernels)
        for _ in range(repeats):
            bare.append(bare_forward(model, ds.data, batch, device, precision, True))
            ext.append(extraction(model, ds, batch, device, True))
        row = {
            "images": n,
            "image_size": size,
            "batch_size": batch,
            "bare_forward_images_per_s": round(max(bare), 2),
            "extraction_images_per_s": round(max(ext), 2),
            "ratio": round(max(ext) / max(bare), 3),
            "bare_runs": [round(v, 2) for v in bare],
            "extraction_runs": [round(v, 2) for v in ext],
        }
        if device.type == "cuda":
            row["bare_forward_fp32_contiguous_images_per_s"] = round(
                max(bare_forward(model, ds.data, batch, device, "float32", False) for _ in range(repeats)), 2
            )
            row["autocast"] = precision
        print(
            f"{arch} {size}px, {n} images, batch {batch}: bare {row['bare_forward_images_per_s']} img/s, "
            f"extraction {row['extraction_images_per_s']} img/s, ratio {row['ratio']}"
            + (
                f"; bare fp32 without channels_last {row['bare_forward_fp32_contiguous_images_per_s']} img/s"
                if device.type == "cuda"
                else ""
            ),
            flush=True,
        )
        out[arch] = row
    return out


# ------------------------------------------------------------------------------------------ (b)
def _rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def rss_child(n: int, root: Path, batch: int) -> None:
    """Extract the first n Fashion-MNIST train images and print the peak RssAnon (kB) as JSON."""
    peak = [_rss_anon_kb()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon_kb())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    ds = _Fashion(root, n)
    model = build_architecture("resnet18", 10, "small", 0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        stats: list[dict[str, Any]] = []
        settings = ExtractSettings(batch_size=batch, num_workers=0, progress=False)
        ensure_store(
            ArtifactCache(Path(tmp)),
            model,
            {"bench": "fashion"},
            ds,
            "train",
            torch.device("cpu"),
            "float32",
            {"maps"},
            settings,
            stats,
        )
        done.set()
        peak[0] = max(peak[0], _rss_anon_kb())
    print(json.dumps({"n": n, "peak_rss_anon_kb": peak[0], "pass": stats[0]}))


def memory(root: Path, sizes: tuple[int, int], batch: int) -> dict[str, Any]:
    rows = {}
    for n in sizes:
        res = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                str(n),
                "--fashion-root",
                str(root),
                "--batch",
                str(batch),
                "--threads",
                str(torch.get_num_threads()),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[n] = json.loads(res.stdout.strip().splitlines()[-1])
        print(
            f"fashion_mnist {n} images: peak RssAnon {rows[n]['peak_rss_anon_kb'] / 1024:.1f} MB, "
            f"{rows[n]['pass']['images_per_second']} img/s",
            flush=True,
        )
    small, large = sizes
    ratio = rows[large]["peak_rss_anon_kb"] / rows[small]["peak_rss_anon_kb"]
    return {"runs": {str(k): v for k, v in rows.items()}, "rss_ratio": round(ratio, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each pass; the best is kept")
    parser.add_argument("--batch", type=int, default=32, help="batch size of both passes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fashion-root", type=Path, default=FASHION)
    parser.add_argument("--rss-sizes", type=int, nargs=2, default=(2000, 20000))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.fashion_root, args.batch)
        return 0
    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"torch threads {torch.get_num_threads()}"
    )
    device = torch.device(args.device)
    result: dict[str, Any] = {"device": str(device), "load_average_start": [round(v, 2) for v in load]}
    result["throughput"] = throughput(device, args.repeats, args.batch)
    result["extract_vs_forward"] = min(r["ratio"] for r in result["throughput"].values())
    ok = result["extract_vs_forward"] >= 0.9
    if not args.skip_memory:
        if not (args.fashion_root / "train-images-idx3-ubyte.gz").is_file():
            print(f"no Fashion-MNIST IDX files in {args.fashion_root}: apt-get install dataset-fashion-mnist")
            return 1
        mem = memory(args.fashion_root, tuple(args.rss_sizes), args.batch)
        result["memory"] = mem["runs"]
        result["rss_ratio"] = mem["rss_ratio"]
        ok = ok and mem["rss_ratio"] <= 1.2
    end = os.getloadavg()
    result["load_average_end"] = [round(v, 2) for v in end]
    print(
        f"extract_vs_forward {result['extract_vs_forward']} (target >= 0.9), rss_ratio "
        f"{result.get('rss_ratio')} (target <= 1.2); "
        f"load average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
