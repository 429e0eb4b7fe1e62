"""The planner's device profiles: per-unit constants of one device, the shipped ones and this machine's
calibration.

A profile holds measured rates: float32/float64 matrix products (flop/s), the eigh and values-only SVD
constants (seconds per n^3), NMF constants for both ICE backends (:mod:`coreset_interp.linalg.cost`),
forward-pass flop rates per architecture, and JPEG decode seconds per image per core. ``calibrate()``
measures them on this machine at small sizes (a few seconds); the shipped ``plan_profiles/*.yaml`` hold a
measurement of this 2-core development machine (``cpu``) and datasheet-derived guesses for GPUs (``a100``,
``h100``), which are labelled unvalidated until someone calibrates on such a device (``--calibrate``
there writes one).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PROFILE_DIR = Path(__file__).resolve().parent / "plan_profiles"
#: Forward-pass GFLOPs (2 x multiply-adds) per 224 x 224 image with the standard stem.
FORWARD_GFLOPS_224 = {"resnet18": 3.64, "resnet50": 8.18, "vgg19": 39.3}


@dataclass
class Profile:
    """Per-unit constants of one device.

    Attributes:
        name: profile name (``cpu``, ``a100``, ``h100`` or ``local``).
        validated: True when measured on such a device (by ``calibrate``); False = datasheet guesses.
        description: where the numbers come from.
        gpu: whether the torch work runs on a GPU.
        cores: CPU cores a job may use (per GPU on a GPU node).
        gemm32: float32 matrix-product rate of the torch device (flop/s).
        gemm64: float64 matrix-product rate of the torch device (flop/s).
        eigh_n3: seconds per n^3 of a float64 eigh with vectors (torch device).
        svd_n3: seconds per n^3 of a float64 values-only SVD (torch device).
        linalg_latency: fixed seconds per eigh/SVD call (kernel launches on a GPU).
        nmf_torch: seconds per multiply-add of the torch NMF's products on the device (its sketched
            solver: see :mod:`coreset_interp.linalg.cost`).
        nmf_sklearn: seconds per (rows x d x r x iteration) of scikit-learn's NMF on one CPU core.
        host_gemm64: float64 product rate of one CPU core (numpy comparisons, CPU-side work).
        host_eigh_n3: seconds per n^3 of one CPU core's eigh.
        host_svd_n3: seconds per n^3 of one CPU core's values-only SVD.
        forward: flop/s of a forward pass per architecture on the device.
        decode: seconds to decode and resize one JPEG on one core.
        parallel_efficiency: fraction of linear speed-up from running classes on several cores.
        nmf_torch_sweep: fixed seconds per sweep of the torch NMF (its ~4 r short kernels).
        layout: seconds per activation value to read stored maps (n x d x h x w) as float32 rows of
            positions on one core, the layout ICE and Phi work on (a strided copy, memory-bound).
    """

    name: str
    validated: bool
    description: str
    gpu: bool
    cores: int
    gemm32: float
    gemm64: float
    eigh_n3: float
    svd_n3: float
    linalg_latency: float
    nmf_torch: float
    nmf_sklearn: float
    host_gemm64: float
    host_eigh_n3: float
    host_svd_n3: float
    forward: dict[str, float] = field(default_factory=dict)
    decode: float = 0.004
    parallel_efficiency: float = 0.8
    nmf_torch_sweep: float = 0.0
    layout: float = 5.0e-9

    @property
    def label(self) -> str:
        """Name with its validation status, for the output."""
        return f"{self.name} ({'measured' if self.validated else 'unvalidated'}: {self.description})"


def load_profile(name: str, calibration_file: Path | None = None) -> Profile:
    """Args:
        name: ``local`` (the calibration file, else the shipped ``cpu``), or a shipped profile name.
        calibration_file: where ``calibrate`` saved this machine's profile.

    Returns:
        The profile.
    """
    if name == "local":
        if calibration_file is not None and calibration_file.is_file():
            return Profile(**json.loads(calibration_file.read_text()))
        name = "cpu"
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ValueError(f"unknown plan.device {name!r}; choose local or one of {names}")
    return Profile(**yaml.safe_load(path.read_text()))


def _best(fn: Any, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def calibrate(
    cores: int | None = None, archs: tuple[str, ...] = ("resnet18", "resnet50", "vgg19")
) -> Profile:
    """Measure this machine's constants at small sizes (one thread; about 10 s).

    Times a Gram product (float32 torch, float64 numpy), a 512 x 512 eigh and values-only SVD, a few NMF
    iterations of scikit-learn's NMF and of the torch NMF (:mod:`coreset_interp.linalg.nmf`),
    and a forward pass per image of each architecture at 64 x 64, scaled to flop rates.

    Args:
        cores: CPU cores a job may use (default: this process's affinity).
        archs: architectures whose forward rate to measure.

    Returns:
        A validated ``local`` profile.
    """
    import scipy.linalg
    import torch
    import torchvision
    from sklearn.decomposition import NMF
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            a32 = torch.rand(512, 512)
            gemm32 = 2 * 512**3 / _best(lambda: a32 @ a32)
            a64 = rng.standard_normal((512, 512))
            host_gemm64 = 2 * 512**3 / _best(lambda: a64 @ a64)
            # The device's float64 products go through torch (VEBI's Gram), whose CPU BLAS differs from
            # numpy's: measured here, torch's float64 product was about half numpy's speed on one thread.
            t64 = torch.from_numpy(a64)
            gemm64 = 2 * 512**3 / _best(lambda: t64 @ t64)
            sym = a64 @ a64.T
            eigh_n3 = _best(lambda: scipy.linalg.eigh(sym, driver="evd"), 2) / 512**3
            svd_n3 = _best(lambda: scipy.linalg.svd(a64, compute_uv=False), 2) / 512**3
            x = np.abs(rng.standard_normal((2000, 128))).astype(np.float32)
            rows, d, r, iters = 2000, 128, 10, 30
            nmf = NMF(n_components=r, init="nndsvda", max_iter=iters, tol=0.0, random_state=0)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_sk = _best(lambda: nmf.fit(x), 2)
            nmf_sklearn = t_sk / (rows * d * r * iters)
            xt = torch.from_numpy(x)

            def torch_mu() -> None:
                w = torch.rand(rows, r)
                h = torch.rand(r, d)
                for _ in range(iters):
                    h = h * (w.T @ xt) / ((w.T @ w) @ h + 1e-9)
                    w = w * (xt @ h.T) / (w @ (h @ h.T) + 1e-9)

            try:
                from coreset_interp.linalg.cost import nmf_units
                from coreset_interp.linalg.nmf import fit_nmf

                # The fixed cost of a sweep (its short kernels) from a tiny fit, 1 vs 101 sweeps; the
                # per-multiply-add rate from one sweep of a fit larger than the last-level cache (as a
                # class is), which is its sketch and objective.
                tiny = np.abs(rng.standard_normal((200, 64))).astype(np.float32)
                t_one, t_many = (
                    _best(lambda k=k: fit_nmf(tiny, r, max_iter=k, tol=0.0, seed=0), 2) for k in (1, 101)
                )
                nmf_torch_sweep = max(t_many - t_one, 0.0) / 100
                big = np.abs(rng.standard_normal((12_000, 1024))).astype(np.float32)
                t_big = _best(lambda: fit_nmf(big, r, max_iter=1, tol=0.0, seed=0), 2)
                once, sweep_units = nmf_units(12_000, 1024, r)
                nmf_torch = max(t_big - nmf_torch_sweep, 1e-9) / (once + sweep_units)
            except ImportError:  # a branch without the torch NMF: time the same flops as updates
                nmf_torch = _best(torch_mu, 2) / (rows * d * r * iters)
                nmf_torch_sweep = 0.0
            maps16 = rng.random((200, 512, 7, 7)).astype(np.float16)
            pick = np.arange(len(maps16))

            def relayout() -> np.ndarray:
                # What ActivationStore.positions does: a float32 copy, then image-major rows of positions.
                a = maps16[pick].astype(np.float32)
                return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, a.shape[1])

            layout = _best(relayout, 3) / maps16.size
            forward = {}
            with torch.no_grad():
                for arch in archs:
                    model = getattr(torchvision.models, arch)(weights=None).eval()
                    batch = torch.rand(2, 3, 64, 64)
                    model(batch)
                    seconds = _best(lambda m=model, b=batch: m(b), 1) / 2
                    forward[arch] = FORWARD_GFLOPS_224[arch] * 1e9 * (64 / 224) ** 2 / seconds
    finally:
        torch.set_num_threads(threads)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Profile(
        name="local",
        validated=True,
        description=f"calibrated on {platform.node()} ({cores} cores) at {time.strftime('%Y-%m-%d %H:%M')}",
        gpu=False,
        cores=int(cores),
        gemm32=gemm32,
        gemm64=gemm64,
        eigh_n3=eigh_n3,
        svd_n3=svd_n3,
        linalg_latency=0.0,
        nmf_torch=nmf_torch,
        nmf_torch_sweep=nmf_torch_sweep,
        layout=layout,
        nmf_sklearn=nmf_sklearn,
        host_gemm64=host_gemm64,
        host_eigh_n3=eigh_n3,
        host_svd_n3=svd_n3,
        forward=forward,
    )


def save_profile(profile: Profile, path: Path) -> None:
    """Args:
    profile: a calibrated profile.
    path: JSON file to write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(profile), indent=1))
