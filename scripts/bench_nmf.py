"""ICE's per-class NMF: the torch backend against today's scikit-learn fit of the same class, side by side.

One ImageNet-sized class (``--rows`` 63,700 = 1300 images x 7 x 7 positions, ``--cols`` 2048 channels of
ResNet50) of synthetic non-negative data with low-rank class structure (rank ``--true-rank`` plus 10 %
uniform noise), factorised with r = ``--rank`` components and ``--iters`` iterations (ICE's defaults: 10 and
200, tol 0) by:

- ``sklearn_1thread``: scikit-learn's NMF as ICE ran it in the first version (one BLAS thread);
- ``torch_1thread``: :func:`coreset_interp.linalg.nmf.fit_nmf` (float32, its default solver: HALS on the
  initialisation's randomized sketch of the class);
- ``torch_Nclasses_parallel``: ICE's class-parallel fit on the job's N CPUs (N classes of the same size at
  once, one thread each, through :func:`coreset_interp.parallel.parallel_map`), seconds per class;
- ``*_{1,N}thread(s)_Kiters``: each backend on one class with 1 and N threads over ``--thread-iters``
  iterations (is the one-thread pinning still right?); ``torch_hals`` is the torch HALS on X itself
  (``solver="hals"``, the previous default), to show where the time went.

It prints seconds and objectives ||X - WH||_F, the objective of each torch run relative to scikit-learn's,
and ``ice_torch_speedup`` = t(sklearn, 1 thread, today's ICE) / t(best torch run, per class). The load
average is printed beside the numbers: the machine may be shared, and then every row slows down.

Usage::

    .venv/bin/python scripts/bench_nmf.py --json scripts/results/bench_nmf.json
    .venv/bin/python scripts/bench_nmf.py --rows 8000 --iters 50   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from coreset_interp.linalg.nmf import fit_nmf
from coreset_interp.parallel import available_cpus, parallel_map, thread_budget


def synthetic_class(rows: int, cols: int, rank: int, seed: int) -> np.ndarray:
    """Non-negative rank-``rank`` structure plus 10 % non-negative noise, float32 (ICE's input type)."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, rank), dtype=np.float32) @ rng.random((rank, cols), dtype=np.float32)
    x += 0.1 * rng.random((rows, cols), dtype=np.float32)
    return x


def run_sklearn(x: np.ndarray, r: int, iters: int, threads: int) -> dict[str, Any]:
    nmf = NMF(n_components=r, init="nndsvda", max_iter=iters, tol=0.0, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(x)
    return {"seconds": time.perf_counter() - start, "objective": float(nmf.reconstruction_err_)}


def run_torch(x: np.ndarray, r: int, iters: int, threads: int, solver: str = "sketched") -> dict[str, Any]:
    with thread_budget(threads):
        start = time.perf_counter()
        model = fit_nmf(x, r, max_iter=iters, tol=0.0, seed=0, device="cpu", dtype="float32", solver=solver)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "objective": float(model.reconstruction_err_)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=63_700)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--true-rank", type=int, default=10)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--thread-iters", type=int, default=20, help="iterations of the thread-scaling rows")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    cpus = available_cpus()
    x = synthetic_class(args.rows, args.cols, args.true_rank, seed=0)
    print(f"class {args.rows} x {args.cols}, r={args.rank}, {args.iters} iterations, {cpus} CPUs")
    runs: dict[str, dict[str, Any]] = {}

    def record(name: str, res: dict[str, Any], load: float) -> None:
        res["load_before"] = load
        runs[name] = res
        print(f"  {name:<28} {res['seconds']:8.2f} s  objective {res['objective']:.6g}  (load {load:.1f})")

    record("sklearn_1thread", run_sklearn(x, args.rank, args.iters, 1), os.getloadavg()[0])
    record("torch_1thread", run_torch(x, args.rank, args.iters, 1), os.getloadavg()[0])
    if cpus > 1:
        # ICE's class-parallel fit on this budget: cpus classes at once, one thread each (per-class seconds).
        load = os.getloadavg()[0]
        xs = [x] + [synthetic_class(args.rows, args.cols, args.true_rank, seed=s) for s in range(1, cpus)]
        start = time.perf_counter()
        objs = parallel_map(
            lambda xi: fit_nmf(xi, args.rank, max_iter=args.iters).reconstruction_err_, xs, cpus, cpus=cpus
        )
        wall = time.perf_counter() - start
        par = {"seconds": wall / cpus, "objective": objs[0], "wall": wall}
        record(f"torch_{cpus}classes_parallel", par, load)

        # Thread scaling of each backend on one class, over --thread-iters iterations.
        def run_hals(xi: np.ndarray, r: int, iters: int, threads: int) -> dict[str, Any]:
            return run_torch(xi, r, iters, threads, solver="hals")

        for backend, fn in (("sklearn", run_sklearn), ("torch", run_torch), ("torch_hals", run_hals)):
            for threads in (1, cpus):
                load = os.getloadavg()[0]
                name = f"{backend}_{threads}thread{'s' if threads > 1 else ''}_{args.thread_iters}iters"
                record(name, fn(x, args.rank, args.thread_iters, threads), load)
    ref = runs["sklearn_1thread"]
    torch_runs = {k: v for k, v in runs.items() if k.startswith("torch") and "iters" not in k}
    objective_diffs = {k: abs(v["objective"] / ref["objective"] - 1.0) for k, v in torch_runs.items()}
    best = min(torch_runs, key=lambda k: torch_runs[k]["seconds"])
    for v in torch_runs.values():
        v["objective_vs_sklearn"] = v["objective"] / ref["objective"]
    out = {
        "shape": [args.rows, args.cols],
        "rank": args.rank,
        "iterations": args.iters,
        "cpus": cpus,
        "runs": runs,
        "best_torch": best,
        "ice_torch_speedup": ref["seconds"] / torch_runs[best]["seconds"],
        "ice_torch_speedup_one_thread": ref["seconds"] / runs["torch_1thread"]["seconds"],
        "objective_rel_diff": objective_diffs[best],
        "objective_rel_diff_max": max(objective_diffs.values()),
        "load_after": os.getloadavg()[0],
    }
    if cpus > 1:
        ti = args.thread_iters
        for backend in ("sklearn", "torch", "torch_hals"):
            one = runs[f"{backend}_1thread_{ti}iters"]["seconds"]
            out[f"{backend}_threads_speedup"] = one / runs[f"{backend}_{cpus}threads_{ti}iters"]["seconds"]
    print(
        f"ice_torch_speedup = {out['ice_torch_speedup']:.2f} ({best}; one thread vs one thread: "
        f"{out['ice_torch_speedup_one_thread']:.2f}); objective within "
        f"{100 * out['objective_rel_diff']:.3f} % of scikit-learn's"
    )
    if cpus > 1:
        print(
            f"{cpus} threads vs 1 over {args.thread_iters} iterations: scikit-learn "
            f"{out['sklearn_threads_speedup']:.2f}x, torch {out['torch_threads_speedup']:.2f}x, torch_hals "
            f"{out['torch_hals_threads_speedup']:.2f}x"
        )
        ti = args.thread_iters
        hals = runs[f"torch_hals_1thread_{ti}iters"]["seconds"]
        print(
            f"per {ti} iterations on 1 thread: sketched {runs[f'torch_1thread_{ti}iters']['seconds']:.2f} s, "
            f"HALS on X {hals:.2f} s, scikit-learn {runs[f'sklearn_1thread_{ti}iters']['seconds']:.2f} s"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
