"""Benchmark the shape metric against a plain implementation of its formula.

On the same random inputs, in one run, for each size (n, d):

(a) baseline: the golden README's formula written out directly: eigendecomposition whitening of both sides
    with Z = V diag(w) V^T, a full SVD with vectors of the cross product, then the nuclear norm;
(b) one-off: ``angular_distance(X, Y, alpha)``;
(c) per comparison when the full-data side is prepared once and reused: ``prepare(X)`` is timed once, and
    each comparison costs ``prepare(Y)`` plus ``angular_distance_prepared``;
(d), (e) the same two in float64 torch (``coreset_interp.metrics.shape_torch``) on ``--device``;
(f) the kernels of (c), each timed alone: on the other side its scatter product, eigh with vectors and
    rotation; then the cross product and the values-only SVD. The formula's two decompositions (the other
    side's eigh with vectors, which partial whitening needs, and the singular values of the cross product)
    are paid by any exact method, so ``baseline / (eigh + svd)`` is the per-comparison ratio it could reach
    if every matrix product were free; and ``gram_exact_needed``, how many of the cross product's smallest
    singular values a hybrid (Gram eigenvalues for the rest) would still have to compute exactly for the
    Gram error bound of the rest to stay within 1e-9 of the nuclear norm.

The inputs are ReLU-like: X = relu(latent factors with a power-law spectrum + noise) and
Y = relu(X Q + noise) for a random rotation Q, as activations of two related models would be. The three
results must agree within 1e-9 in cos; the script exits with status 1 if they do not.

Usage:
    python scripts/bench_shape.py [--threads 1] [--sizes 2450x512 2450x2048 12250x512] [--repeats 3] \
        [--device cpu] [--json scripts/results/bench_shape.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_SIZES = ("2450x512", "2450x2048", "12250x512")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
COS_TOLERANCE = 1e-9


def parse_size(text: str) -> tuple[int, int]:
    """Parse "NxD" into (n, d)."""
    try:
        n, d = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 2450x512, got {text!r}") from None
    if n < 2 or d < 1:
        raise argparse.ArgumentTypeError(f"size needs n >= 2 and d >= 1, got {text!r}")
    return n, d


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS/LAPACK threads (default 1)")
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help="problem sizes as NxD (default: %(default)s)",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="partial-whitening weight (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device of the torch path (default cpu)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table and the load here")
    return parser.parse_args(argv)


def make_inputs(n: int, d: int, seed: int) -> tuple[Any, Any]:
    """ReLU-like, structured, non-negative pair of representations of the same n samples."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rank = min(n, d)
    # A power-law spectrum like real CNN activations, so that the whitening has something to do.
    scales = (1.0 + np.arange(rank)) ** -0.8
    latent = (rng.standard_normal((n, rank)) * scales) @ rng.standard_normal((rank, d))
    X = np.maximum(latent + 0.1 * rng.standard_normal((n, d)) + 0.2, 0.0)
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q *= np.sign(np.diag(R))
    Y = np.maximum(X @ Q + 0.3 * X.std() * rng.standard_normal((n, d)), 0.0)
    return X, Y


def baseline_cosine(X: Any, Y: Any, alpha: float) -> float:
    """The golden README's formula, step by step, returning cos of the distance."""
    import numpy as np

    width = max(X.shape[1], Y.shape[1])
    whitened = []
    for A in (X, Y):
        A = np.hstack([A, np.zeros((A.shape[0], width - A.shape[1]))])
        A = A - A.mean(axis=0)
        if alpha <= 1.0 - 1e-7:
            lam, V = np.linalg.eigh(A.T @ A)
            weights = alpha + (1.0 - alpha) / np.sqrt(np.maximum(lam, 1e-7))
            Z = V @ np.diag(weights) @ V.T
            A = A @ Z
        whitened.append(A)
    Xw, Yw = whitened
    _, singular_values, _ = np.linalg.svd(Xw.T @ Yw)
    cosine = singular_values.sum() / (np.linalg.norm(Xw) * np.linalg.norm(Yw))
    return float(np.clip(cosine, -1.0, 1.0))


def comparison_kernels(
    Y: Any, x_whitened: Any, y_whitened: Any, repeats: int
) -> tuple[dict[str, float], int]:
    """Best seconds of each kernel one comparison pays on the other side, alone (see the module docs): the
    scatter, eigh and rotation on Y, the cross product and the SVD on the two prepared sides' matrices."""
    import numpy as np
    import scipy.linalg
    from scipy.linalg import blas

    Yc = Y - Y.mean(axis=0)
    parts: dict[str, float] = {}

    def best(name: str, func: Callable[[], Any]) -> Any:
        seconds = math.inf
        for _ in range(repeats):
            took, out = timed(func)
            seconds = min(seconds, took)
        parts[name] = seconds
        return out

    scatter = best("scatter", lambda: blas.dsyrk(1.0, Yc.T, trans=0, lower=0))
    vectors = best(
        "eigh_vectors",
        lambda: scipy.linalg.eigh(scatter, lower=False, check_finite=False, driver="evd")[1],
    )
    best("rotation", lambda: Yc @ vectors)
    cross = best("cross", lambda: np.ascontiguousarray(x_whitened.T @ y_whitened))
    singular_values = best(
        "svd_values", lambda: scipy.linalg.svd(cross, compute_uv=False, check_finite=False)
    )
    return parts, gram_exact_needed(singular_values)


def gram_exact_needed(singular_values: Any, tolerance: float = COS_TOLERANCE) -> int:
    """How many of the smallest singular values must be exact so that the Gram route's error bound
    (``coreset_interp.metrics.shape_core``) on the others is at most ``tolerance`` x their sum."""
    import numpy as np

    from coreset_interp.metrics.shape_core import GRAM_EIGENVALUE_ERROR

    s = np.sort(np.asarray(singular_values))
    delta = GRAM_EIGENVALUE_ERROR * float(s[-1]) ** 2
    terms = delta / (np.sqrt(s**2 + delta) + s)
    # Bound of the Gram route on s[m:], for every m.
    tail = np.cumsum(terms[::-1])[::-1]
    return int(np.argmax(tail <= tolerance * s.sum())) if (tail <= tolerance * s.sum()).any() else len(s)


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and its result."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def bench_size(n: int, d: int, args: argparse.Namespace) -> dict[str, float]:
    """Time the three methods on one size and check that they agree.

    The methods take turns within each repeat, so that a change in the machine's load during the run hits
    all of them alike; the best time of each is kept.
    """
    import torch

    from coreset_interp.metrics.shape import angular_distance, angular_distance_prepared, prepare
    from coreset_interp.metrics.shape_torch import (
        angular_distance_prepared_torch,
        angular_distance_torch,
        prepare_torch,
    )

    X, Y = make_inputs(n, d, args.seed)
    alpha = args.alpha
    device = torch.device(args.device)
    t_prep_x, prepared_x = timed(lambda: prepare(X, alpha))
    prepared_x_torch = prepare_torch(X, alpha, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def one_comparison() -> float:
        return angular_distance_prepared(prepared_x, prepare(Y, alpha))

    def torch_one_off() -> float:
        value = angular_distance_torch(X, Y, alpha, device)
        sync()
        return value

    def torch_one_comparison() -> float:
        value = angular_distance_prepared_torch(prepared_x_torch, prepare_torch(Y, alpha, device))
        sync()
        return value

    methods = {
        "baseline": lambda: baseline_cosine(X, Y, alpha),
        "one_off": lambda: angular_distance(X, Y, alpha),
        "per_comparison": one_comparison,
        "torch_one_off": torch_one_off,
        "torch_per_comparison": torch_one_comparison,
    }
    best = dict.fromkeys(methods, math.inf)
    results: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, func in methods.items():
            seconds, results[name] = timed(func)
            best[name] = min(best[name], seconds)
    cos_base = results["baseline"]
    cos_diff = max(abs(math.cos(results[name]) - cos_base) for name in methods if name != "baseline")
    floor, exact_needed = comparison_kernels(Y, prepared_x.whitened, prepare(Y, alpha).whitened, args.repeats)
    return {
        **best,
        "prepare_x": t_prep_x,
        "distance": results["one_off"],
        "cos_diff": cos_diff,
        "kernel_parts": floor,
        "kernels_per_comparison": sum(floor.values()),
        "decompositions_per_comparison": floor["eigh_vectors"] + floor["svd_values"],
        "gram_exact_needed": exact_needed,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; exit status 1 if the methods disagree."""
    args = parse_args(argv)
    use_threadpoolctl = importlib.util.find_spec("threadpoolctl") is not None
    if not use_threadpoolctl:
        # Without threadpoolctl the BLAS thread count can only be set before numpy is first imported.
        if "numpy" in sys.modules:
            print("warning: numpy already imported; --threads may not take effect", file=sys.stderr)
        for name in THREAD_ENV_VARS:
            os.environ[name] = str(args.threads)

    import contextlib

    import numpy as np
    import scipy
    import scipy.linalg  # noqa: F401 - loads scipy's own BLAS so that threadpoolctl can limit it too

    import coreset_interp.metrics.shape  # noqa: F401 - same reason

    limiter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if use_threadpoolctl:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=args.threads)

    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, threads={args.threads} "
        f"({'threadpoolctl' if use_threadpoolctl else 'env vars'}), alpha={args.alpha}, "
        f"repeats={args.repeats} (interleaved, best kept), load average at start {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'n x d':>11} {'baseline s':>11} {'one-off s':>10} {'prep(X) s':>10} {'per-cmp s':>10} "
        f"{'base/one-off':>13} {'base/per-cmp':>13} {'torch 1-off':>12} {'torch p-cmp':>12} "
        f"{'max|dcos|':>10} {'distance':>9}"
    )
    print(header)
    ok = True
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()[0]
    import torch

    torch.set_num_threads(args.threads)
    with limiter:
        for n, d in args.sizes:
            r = bench_size(n, d, args)
            ok &= r["cos_diff"] <= COS_TOLERANCE
            rows.append(
                {
                    "n": n,
                    "d": d,
                    **r,
                    "speedup_one_off": r["baseline"] / r["one_off"],
                    "speedup_per_comparison": r["baseline"] / r["per_comparison"],
                    "speedup_torch_one_off": r["baseline"] / r["torch_one_off"],
                    "speedup_torch_per_comparison": r["baseline"] / r["torch_per_comparison"],
                    "speedup_if_products_were_free": r["baseline"] / r["decompositions_per_comparison"],
                    "load_after": os.getloadavg()[0],
                }
            )
            print(
                f"{f'{n}x{d}':>11} {r['baseline']:>11.3f} {r['one_off']:>10.3f} {r['prepare_x']:>10.3f} "
                f"{r['per_comparison']:>10.3f} {r['baseline'] / r['one_off']:>12.2f}x "
                f"{r['baseline'] / r['per_comparison']:>12.2f}x "
                f"{r['baseline'] / r['torch_one_off']:>11.2f}x "
                f"{r['baseline'] / r['torch_per_comparison']:>11.2f}x "
                f"{r['cos_diff']:>10.1e} {r['distance']:>9.5f}",
                flush=True,
            )
            parts = ", ".join(f"{k} {v:.3f}" for k, v in r["kernel_parts"].items())
            print(
                f"{'':>11} kernels of a comparison, alone: {parts} "
                f"(sum {r['kernels_per_comparison']:.3f} s); "
                f"base/(eigh + svd) {r['baseline'] / r['decompositions_per_comparison']:.2f}x if every "
                f"product were free; a Gram hybrid would still need {r['gram_exact_needed']} of {min(n, d)} "
                "singular values exact",
                flush=True,
            )
    load_end = os.getloadavg()[0]
    print(f"targets: base/one-off >= 1.5x, base/per-cmp >= 3x; load average at end {load_end:.1f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "threads": args.threads,
            "alpha": args.alpha,
            "repeats": args.repeats,
            "device": args.device,
            "cos_tolerance": COS_TOLERANCE,
            "agree": bool(ok),
            "load_start": load_start,
            "load_end": load_end,
            "sizes": rows,
        }
        args.json.write_text(json.dumps(summary, indent=1))
    if not ok:
        print(f"FAIL: results differ from the baseline by more than {COS_TOLERANCE} in cos", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
