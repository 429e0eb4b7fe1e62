"""Scaling benchmark: does a job's memory stay flat and its time grow linearly with the class count, and
does the planner's cost model predict each stage?

For each C in --classes, in a fresh child process (so peak memory is that C's alone): a synthetic
ImageNet-shaped activation store in --workdir (C classes x --train-per-class train images x d x h x w
float16 maps, --val-per-class val images; random non-negative maps with a low-rank structure per class),
then one ICE job on it (full-data fit, a 10 % coreset fit, the NMF transform of the val maps, Phi of the two
fits through the class-outer comparison loop) and one VEBI-sized Gram (N x --gram-units energies, chunked,
float64). It prints per-class seconds of each stage, the peak anonymous memory (RssAnon, sampled every
20 ms: memory-mapped store pages are file-backed and do not count), and measured / planned time per stage
with the planner's cost model (``coreset_interp.plan_costs``) calibrated in the same run, with the job's
actual parallelism (classes run one after another on one thread here, so ``cores=1``).

``--json PATH`` writes rss_ratio (largest C / smallest C), wall_ratio, plan_ratio_min, plan_ratio_max and
ice_torch_speedup (torch vs scikit-learn NMF of one class of the full 63,700 x 2048 size, side by side;
null with a reason when the torch NMF of the compute-kernels branch is not present).

The store of one C takes C x (train + val) x d x h x w x 2 bytes (4.2 GB at C=16 and the full sizes); each
is deleted when its child ends.

Usage:
    python scripts/bench_scale.py [--classes 4 8 16] [--train-per-class 1300] [--val-per-class 50]
        [--d 2048] [--hw 7] [--max-iter 200] [--gram-units 22720] [--device cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STAGES = ("fit", "transform", "phi", "gram")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--train-per-class", type=int, default=1300)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--d", type=int, default=2048, help="channels of the maps (ResNet50: 2048)")
    parser.add_argument("--hw", type=int, default=7, help="map side (ResNet50 at 224 px: 7)")
    parser.add_argument("--components", type=int, default=10, help="ICE's r")
    parser.add_argument("--max-iter", type=int, default=200, help="ICE's NMF iterations")
    parser.add_argument("--gram-units", type=int, default=22720, help="VEBI units (ResNet50: 22720)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "sklearn"],
        help="ICE's NMF backend (default torch: scikit-learn's fit of a full-size class takes minutes here)",
    )
    parser.add_argument(
        "--speedup-from",
        type=Path,
        default=None,
        help="take ice_torch_speedup from this scripts/bench_nmf.py --json file instead of timing it again",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-speedup", action="store_true", help="do not time the torch vs sklearn fit")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-json", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def rss_anon_bytes() -> int:
    """Current RssAnon of this process (Linux), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """Samples RssAnon in a thread; ``peak`` is the largest value seen while running."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = rss_anon_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_bytes())


def write_store(folder: Path, classes: int, per_class: int, d: int, hw: int, seed: int) -> Any:
    """A float16 store with low-rank non-negative class structure, written class by class."""
    import numpy as np

    from coreset_interp.models.activations import ActivationStore

    folder.mkdir(parents=True, exist_ok=True)
    n = classes * per_class
    maps = np.lib.format.open_memmap(folder / "maps.npy", mode="w+", dtype=np.float16, shape=(n, d, hw, hw))
    rng = np.random.default_rng(seed)
    for c in range(classes):
        basis = np.abs(np.random.default_rng(10_000 + c).standard_normal((8, d))).astype(np.float32)
        rows = per_class * hw * hw
        codes = np.abs(rng.standard_normal((rows, 8), dtype=np.float32))
        x = codes @ basis
        x += 0.1 * np.abs(rng.standard_normal((rows, d), dtype=np.float32))
        maps[c * per_class : (c + 1) * per_class] = x.reshape(per_class, hw, hw, d).transpose(0, 3, 1, 2)
        del x, codes
    maps.flush()
    del maps
    labels = np.repeat(np.arange(classes), per_class).astype(np.int64)
    return ActivationStore(
        path=folder,
        maps=np.load(folder / "maps.npy", mmap_mode="r"),
        g=np.zeros((n, 1), dtype=np.float32),
        labels=labels,
        preds=labels.copy(),
        logits=np.zeros((n, classes), dtype=np.float32),
    )


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One C in this (fresh) process: build the store, run and time the stages, sample RssAnon."""
    import numpy as np
    import torch

    from coreset_interp.cache import ArtifactCache
    from coreset_interp.interpreters import InterpretContext, get_interpreter
    from coreset_interp.metrics.compare import ComparedFit, compare_class_outer

    classes = int(args.child)
    root = Path(tempfile.mkdtemp(prefix=f"bench_scale_c{classes}_", dir=args.workdir))
    try:
        train = write_store(root / "train", classes, args.train_per_class, args.d, args.hw, seed=1)
        val = write_store(root / "val", classes, args.val_per_class, args.d, args.hw, seed=2)
        ctx = InterpretContext(
            model=None,  # type: ignore[arg-type] - ICE reads only the stores
            dataset=None,  # type: ignore[arg-type]
            train=train,
            val=val,
            device=torch.device(args.device),
            cache=ArtifactCache(root / "cache"),
            model_key="bench",
            progress=False,
        )
        interp = get_interpreter(
            "ice", n_components=args.components, max_iter=args.max_iter, backend=args.backend
        )
        seconds: dict[str, float] = {}
        torch.set_num_threads(1)
        with PeakSampler() as sampler:
            start = time.perf_counter()
            full = interp.fit(ctx, np.arange(train.n), 0)
            every_tenth = np.flatnonzero(np.arange(train.n) % 10 == 0)
            coreset = interp.fit(ctx, every_tenth, 0)
            seconds["fit"] = time.perf_counter() - start
            start = time.perf_counter()
            for c in range(classes):
                interp.maps(full, ctx, val.class_indices(c))
            seconds["transform"] = time.perf_counter() - start
            start = time.perf_counter()
            (phi,) = compare_class_outer(interp, ctx, full, "full", [ComparedFit(coreset, "coreset")], 0.5)
            seconds["phi"] = time.perf_counter() - start
            ice_peak = max(sampler.peak, rss_anon_bytes())
            start = time.perf_counter()
            gram_checksum = vebi_gram(classes * args.train_per_class, args.gram_units, args.device)
            seconds["gram"] = time.perf_counter() - start
        phis = [v.phi for v in phi.values() if v.phi is not None]
        return {
            "classes": classes,
            "seconds": seconds,
            "peak_rss_anon": sampler.peak,
            "peak_rss_anon_ice": ice_peak,
            "phi": float(np.mean(phis)) if phis else None,
            "gram_checksum": gram_checksum,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def vebi_gram(n: int, units: int, device: str, chunk: int = 1024) -> float:
    """E^T E of n x units non-negative energies (float64), accumulated in row chunks as VEBI does; the
    energies are generated per chunk (as if read from the store), so memory is the units^2 Gram only."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    gram = torch.zeros(units, units, dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        e = torch.rand(rows, units, generator=gen, dtype=torch.float32).to(device, torch.float64)
        gram.addmm_(e.T, e)
    return float(gram.trace())


def planned(args: argparse.Namespace, classes: int, profile: Any) -> dict[str, float]:
    """The planner's cost model for the same stages and sizes."""
    from coreset_interp import plan_costs as pc

    s = pc.Shapes(
        arch="resnet50",
        n_train=classes * args.train_per_class,
        n_val=classes * args.val_per_class,
        classes=classes,
        d=args.d,
        positions=args.hw * args.hw,
        image_size=224,
        jpeg=False,
        act_bytes=2,
    )
    params = {"n_components": args.components, "max_iter": args.max_iter, "backend": args.backend}
    # The 10 % coreset's fit is priced beside the full one (ICE rounds every class's budget up).
    fit = pc.fit(profile, s, "ice", params, 1.0).seconds + pc.fit(profile, s, "ice", params, 0.1).seconds
    # The transform stage is the full fit's shared val scores: one transform of every val image.
    transform = pc.ice_val_scores(profile, s, params)
    phi = pc.comparisons(profile, s, "ice", params, 1).seconds
    gram = 2.0 * s.n_train * args.gram_units**2 / profile.gemm64
    return {"fit": fit, "transform": transform, "phi": phi, "gram": gram}


def ice_torch_speedup(args: argparse.Namespace) -> tuple[float | None, str]:
    """Torch vs scikit-learn ICE fit of one 63,700 x 2048 class, side by side (needs the torch NMF)."""
    import importlib.util

    if importlib.util.find_spec("coreset_interp.linalg.nmf") is None:
        return (
            None,
            "missing: coreset_interp.linalg.nmf (the torch NMF of the compute-kernels branch) is not here",
        )
    import numpy as np

    from coreset_interp.interpreters import get_interpreter

    try:
        torch_ice = get_interpreter(
            "ice", n_components=args.components, max_iter=args.max_iter, backend="torch"
        )
        sk_ice = get_interpreter(
            "ice", n_components=args.components, max_iter=args.max_iter, backend="sklearn"
        )
    except (TypeError, ValueError) as err:
        return None, f"missing: ICE has no backend parameter here ({err})"
    rng = np.random.default_rng(0)
    basis = np.abs(rng.standard_normal((8, 2048))).astype(np.float32)
    x = np.abs(rng.standard_normal((63_700, 8), dtype=np.float32)) @ basis
    x += 0.1 * np.abs(rng.standard_normal(x.shape, dtype=np.float32))
    times = {}
    for name, ice in (("sklearn", sk_ice), ("torch", torch_ice)):
        start = time.perf_counter()
        ice._fit_nmf(x, 0, "bench class")
        times[name] = time.perf_counter() - start
    return times["sklearn"] / times[
        "torch"
    ], f"sklearn {times['sklearn']:.1f} s, torch {times['torch']:.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Run every C in a child process, print the table, write --json."""
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args)))
        return 0
    from dataclasses import asdict, replace

    from coreset_interp import plan_costs as pc

    load_start = os.getloadavg()[0]
    print(f"load average at start {load_start:.1f}; calibrating the cost model ...", flush=True)
    profile = replace(pc.calibrate(cores=1, archs=()), cores=1)
    sizes = (
        f"{args.train_per_class} train / {args.val_per_class} val per class, maps {args.d} x {args.hw} x "
        f"{args.hw} float16, ICE ({args.backend}) r={args.components} x {args.max_iter} iterations, "
        f"Gram units {args.gram_units}"
    )
    print(f"sizes: {sizes}; device {args.device}")
    results = []
    for classes in args.classes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(classes)]
        for flag in ("train_per_class", "val_per_class", "d", "hw", "components", "max_iter", "gram_units"):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        cmd += ["--device", args.device, "--workdir", str(args.workdir), "--backend", args.backend]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["planned"] = planned(args, classes, profile)
        r["load_after"] = os.getloadavg()[0]
        results.append(r)
        per_class = "  ".join(f"{k} {v / classes:.2f}" for k, v in r["seconds"].items())
        ratios = "  ".join(f"{k} {r['seconds'][k] / r['planned'][k]:.2f}" for k in STAGES)
        print(
            f"C={classes:>3}: per-class s: {per_class} | wall {sum(r['seconds'].values()):.1f} s | "
            f"peak RssAnon {r['peak_rss_anon'] / 2**20:.0f} MiB "
            f"(ICE job {r['peak_rss_anon_ice'] / 2**20:.0f}) | "
            f"measured/planned: {ratios} | Phi {r['phi']:.4f}",
            flush=True,
        )
    first, last = results[0], results[-1]
    plan_ratios = [r["seconds"][k] / r["planned"][k] for r in results for k in STAGES]
    summary: dict[str, Any] = {
        "sizes": sizes,
        "backend": args.backend,
        "load_start": load_start,
        "profile": asdict(profile),
        "device": args.device,
        "classes": args.classes,
        "rss_ratio": last["peak_rss_anon"] / first["peak_rss_anon"],
        "rss_ratio_ice": last["peak_rss_anon_ice"] / first["peak_rss_anon_ice"],
        "wall_ratio": sum(last["seconds"].values()) / sum(first["seconds"].values()),
        "plan_ratio_min": min(plan_ratios),
        "plan_ratio_max": max(plan_ratios),
        "results": results,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # Written before the long side-by-side fit too, so a killed run keeps the scaling numbers.
        args.json.write_text(json.dumps({**summary, "ice_torch_speedup": None}, indent=1))
    if args.speedup_from is not None:
        nmf = json.loads(args.speedup_from.read_text())
        summary["ice_torch_speedup"] = nmf["ice_torch_speedup"]
        runs = nmf["runs"]
        note = (
            f"from {args.speedup_from} (scripts/bench_nmf.py, one run): sklearn "
            f"{runs['sklearn_1thread']['seconds']:.1f} s, {nmf['best_torch']} "
            f"{runs[nmf['best_torch']]['seconds']:.1f} s per class, objective within "
            f"{100 * nmf['objective_rel_diff']:.2f} %"
        )
    elif args.skip_speedup:
        summary["ice_torch_speedup"], note = None, "skipped (--skip-speedup)"
    else:
        summary["ice_torch_speedup"], note = ice_torch_speedup(args)
    summary["ice_torch_speedup_note"] = note
    print(
        f"rss_ratio (C={last['classes']} / C={first['classes']}) {summary['rss_ratio']:.2f} (ICE job alone "
        f"{summary['rss_ratio_ice']:.2f}; target <= 1.3); "
        f"wall_ratio {summary['wall_ratio']:.2f} (target 3-5 for C 4 -> 16); measured/planned "
        f"{summary['plan_ratio_min']:.2f}-{summary['plan_ratio_max']:.2f} (target 0.5-2); "
        f"ice_torch_speedup {summary['ice_torch_speedup']} ({note})"
    )
    summary["load_end"] = os.getloadavg()[0]
    print(f"load average at end {summary['load_end']:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
