"""Benchmark and quality report for the coreset selectors (issue 3).

Three parts:

1. **speed, synthetic**: every selector on one synthetic class of ``--n`` x ``--d`` (default 1300 x 2048, an
   ImageNet class of ResNet50 GAP vectors): non-negative, ReLU-of-clusters features. Time and peak memory.
2. **speed, digits**: the same on the 10 classes of the embedded default's train GAP features (the
   pipeline's cached ResNet18 activations, built by :func:`coreset_interp.pipeline.build_workspace`). If the
   pipeline cannot provide them (``--digits-source auto``) the script falls back to scikit-learn's raw
   digits pixels (64-d) and says so in every heading.
3. **quality**: for each selector and rho in ``--quality-percents`` (default 5, 10, 20, 50), the squared MMD
   between the coreset and its class, averaged over classes (and over ``--seeds`` selection seeds), with
   the ratio to random's. Kernel: ``k(x, y) = exp(-||x - y||^2 / sigma2)``, ``sigma2 = 2 d`` (CTE's kernel,
   goodpoints' ``gaussian``); MMD^2 is the biased V-statistic.

Memory is measured in a fresh subprocess per selector and dataset, after the data and all imports are
loaded: ``rss+`` is the increase of the resident-set high-water mark (``resource.getrusage`` maxrss) during
the timed call, ``numpy peak`` the ``tracemalloc`` peak of a second, traced call (numpy reports its
buffers to tracemalloc). The time is the median wall-clock time of ``--repeats`` untraced calls (the traced
call is slower). ``rss+`` is 0 when the call stays below the high-water mark left by loading the data.

Usage::

    python scripts/bench_selectors.py                       # all three parts
    python scripts/bench_selectors.py --skip-digits --n 500  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_class(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    """ReLU-GAP-like features of one class: sparse non-negative cluster centres plus noise, rectified.

    Args:
        n: samples.
        d: dimensions.
        clusters: number of modes within the class.
        seed: generator seed.

    Returns:
        (n, d) float32, non-negative, with distances of the order of GAP vectors (10-40).
    """
    rng = np.random.default_rng(seed)
    active = rng.random((clusters, d)) < 0.3  # each mode lights up its own subset of channels
    centres = active * rng.gamma(2.0, 0.5, size=(clusters, d))
    weights = rng.dirichlet(np.full(clusters, 2.0))
    comp = rng.choice(clusters, size=n, p=weights)
    feats = centres[comp] + rng.normal(0.0, 0.35, size=(n, d))
    return np.maximum(feats, 0.0).astype(np.float32)


def digits_features(source: str, cache_dir: Path, overrides: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Train features and labels of the embedded default.

    Args:
        source: ``pipeline``, ``pixels`` or ``auto`` (pipeline, else pixels).
        cache_dir: the artifact cache (the pipeline reuses its checkpoint and activations).
        overrides: Hydra overrides applied to the default config.

    Returns:
        (features, labels, description).
    """
    if source in ("pipeline", "auto"):
        try:
            from hydra import compose, initialize_config_dir
            from omegaconf import OmegaConf

            from coreset_interp.cache import ArtifactCache
            from coreset_interp.pipeline import build_workspace

            with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
                cfg = compose(config_name="config", overrides=overrides)
            resolved: Any = OmegaConf.to_container(cfg, resolve=True)
            resolved["cache_dir"] = str(cache_dir)
            resolved["progress"] = False
            ws = build_workspace(resolved, ArtifactCache(cache_dir))
            desc = (
                f"digits train GAP features from the pipeline ({resolved['model']['name']}, "
                f"{ws.train.g.shape[0]} x {ws.train.g.shape[1]})"
            )
            return np.asarray(ws.train.g), np.asarray(ws.train.labels), desc
        except Exception as err:  # the fallback below is explicit in every heading
            if source == "pipeline":
                raise
            print(f"[digits] pipeline features unavailable ({type(err).__name__}: {err}); using pixels")
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y, f"FALLBACK: scikit-learn digits pixels ({x.shape[0]} x {x.shape[1]})"


def _child(args: argparse.Namespace) -> None:
    """Measure one selector on one saved dataset; prints one JSON line."""
    from coreset_interp.selectors import get_selector

    data = np.load(args.child_data)
    feats, labels = data["features"], data["labels"]
    sel = get_selector(args.child)
    # Import-time and first-call costs (BLAS threads, goodpoints' extension) are not the selector's.
    sel.select(feats[:64], np.zeros(64, dtype=np.int64), 0.5, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(max(1, args.child_repeats)):
        start = time.perf_counter()
        idx = sel.select(feats, labels, args.child_ratio, seed=args.child_seed)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    tracemalloc.start()
    sel.select(feats, labels, args.child_ratio, seed=args.child_seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {"seconds": seconds, "rss_mb": rss_kb / 1024, "numpy_peak_mb": peak / 2**20, "k": len(idx)}
        )
    )


def measure(name: str, data_path: Path, ratio: float, seed: int, repeats: int) -> dict[str, float]:
    """Run :func:`_child` in a fresh interpreter (clean memory high-water mark)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--child-data",
        str(data_path),
        "--child-ratio",
        str(ratio),
        "--child-seed",
        str(seed),
        "--child-repeats",
        str(repeats),
    ]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_table(
    title: str, feats: np.ndarray, labels: np.ndarray, names: list[str], ratios: list[float], repeats: int
) -> dict:
    """Time and memory of every selector on one dataset at each ratio; prints and returns the table."""
    classes = len(np.unique(labels))
    print(f"\n== speed: {title}; {classes} class(es), data {feats.nbytes / 2**20:.1f} MB ==")
    print(f"{'selector':<16}{'rho':>6}{'seconds':>10}{'s/class':>10}{'rss+ MB':>10}{'numpy peak MB':>15}")
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, features=feats, labels=labels)
        for name in names:
            for ratio in ratios:
                r = measure(name, path, ratio, 0, repeats)
                rows[f"{name}@{ratio}"] = r
                print(
                    f"{name:<16}{ratio:>6.2f}{r['seconds']:>10.3f}{r['seconds'] / classes:>10.3f}"
                    f"{r['rss_mb']:>10.1f}{r['numpy_peak_mb']:>15.1f}"
                )
    return rows


def gaussian_gram(x: np.ndarray, sigma2: float) -> np.ndarray:
    """``exp(-||x_i - x_j||^2 / sigma2)`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    return np.exp(-d2 / sigma2)


def quality_table(
    title: str, feats: np.ndarray, labels: np.ndarray, names: list[str], percents: list[int], seeds: int
) -> dict:
    """Mean squared MMD between coreset and class over classes and seeds, and its ratio to random's."""
    from coreset_interp.selectors import get_selector

    d = feats.shape[1]
    classes = np.unique(labels)
    grams = {c: gaussian_gram(feats[labels == c], 2.0 * d) for c in classes}
    positions = {c: np.flatnonzero(labels == c) for c in classes}
    table: dict[str, dict[int, float]] = {}
    for name in names:
        sel = get_selector(name)
        table[name] = {}
        for p in percents:
            vals = []
            for seed in range(seeds):
                idx = sel.select(feats, labels, p / 100, seed=seed)
                for c in classes:
                    local = np.flatnonzero(np.isin(positions[c], idx))
                    K = grams[c]
                    vals.append(max(0.0, K[np.ix_(local, local)].mean() - 2 * K[local].mean() + K.mean()))
            table[name][p] = float(np.mean(vals))
    print(
        f"\n== quality: {title}; MMD^2 (sigma2 = 2d = {2 * d}), "
        f"mean over {len(classes)} class(es) x {seeds} seed(s) =="
    )
    print(f"{'selector':<16}" + "".join(f"{f'rho {p}%':>22}" for p in percents))
    for name in names:
        cells = []
        for p in percents:
            ratio = table[name][p] / table["random"][p] if "random" in table else float("nan")
            cells.append(f"{table[name][p]:>12.3e} ({ratio:5.2f}x)")
        print(f"{name:<16}" + "".join(f"{c:>22}" for c in cells))
    return table


def main() -> None:
    """Parse arguments and run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1300, help="samples of the synthetic class")
    ap.add_argument("--d", type=int, default=2048, help="dimensions of the synthetic class")
    ap.add_argument("--clusters", type=int, default=8, help="modes within the synthetic class")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    ap.add_argument("--selectors", nargs="*", default=None, help="default: every registered selector")
    ap.add_argument("--speed-ratios", type=float, nargs="*", default=[0.1, 0.5])
    ap.add_argument("--quality-percents", type=int, nargs="*", default=[5, 10, 20, 50])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per selector (median reported)")
    ap.add_argument("--seeds", type=int, default=3, help="selection seeds averaged in the quality table")
    ap.add_argument("--digits-source", choices=["auto", "pipeline", "pixels"], default="auto")
    ap.add_argument("--digits-classes", type=int, default=10)
    ap.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    ap.add_argument("--override", action="append", default=[], help="Hydra override for the digits config")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write all numbers to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-ratio", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--child-seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child-repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    sys.path.insert(0, str(REPO))
    from coreset_interp.selectors import list_selectors

    names = args.selectors or [n for n in list_selectors() if n != "transfer"]
    # Times on a shared machine mean little without its load: print it at the start and the end.
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (1 min) at start")
    report: dict[str, Any] = {"selectors": names, "load_start": os.getloadavg()}
    synth = synthetic_class(args.n, args.d, args.clusters, args.seed)
    synth_labels = np.zeros(args.n, dtype=np.int64)
    synth_title = f"synthetic ReLU-GAP class {args.n} x {args.d}"
    if not args.skip_synthetic:
        report["speed_synthetic"] = speed_table(
            synth_title, synth, synth_labels, names, args.speed_ratios, args.repeats
        )
    digits = None
    if not args.skip_digits or not args.skip_quality:
        feats, labels, desc = digits_features(args.digits_source, args.cache_dir, args.override)
        keep = np.isin(labels, np.unique(labels)[: args.digits_classes])
        digits = (feats[keep], labels[keep], desc)
        report["digits_source"] = desc
    if not args.skip_digits and digits is not None:
        report["speed_digits"] = speed_table(
            digits[2], digits[0], digits[1], names, args.speed_ratios, args.repeats
        )
    if not args.skip_quality:
        report["quality_synthetic"] = quality_table(
            synth_title, synth, synth_labels, names, args.quality_percents, args.seeds
        )
        if digits is not None:
            report["quality_digits"] = quality_table(
                digits[2], digits[0], digits[1], names, args.quality_percents, args.seeds
            )
    report["load_end"] = os.getloadavg()
    print(f"\nload average {os.getloadavg()[0]:.2f} (1 min) at the end")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
