"""The planner's cost model: per-unit constants (a device profile) and the cost of each stage of a job.

A profile holds measured rates: float32/float64 matrix products (flop/s), the eigh and values-only SVD
constants (seconds per n^3), NMF constants for both ICE backends (:mod:`coreset_interp.linalg.cost`),
forward-pass flop rates per architecture, and JPEG decode seconds per image per core. ``calibrate()``
measures them on this machine at small sizes (a few seconds); the shipped ``plan_profiles/*.yaml`` hold a
measurement of this 2-core development machine (``cpu``) and datasheet-derived guesses for GPUs (``a100``,
``h100``), which are labelled unvalidated until someone calibrates on such a device (``--calibrate``
there writes one).

The stage costs are simple operation counts times those rates (documented per function); they aim at
within a factor of 2 of measured times (``scripts/bench_scale.py`` checks the ratio), not better.
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
#: Channels of the last conv block.
LAST_CONV_CHANNELS = {"resnet18": 512, "resnet50": 2048, "vgg19": 512}
#: Parameters (millions), for the model's memory.
PARAMS_M = {"resnet18": 11.7, "resnet50": 25.6, "vgg19": 143.7}
#: Seconds of fixed work per class and coreset (measured: random selection of 10 digits classes ~2 ms).
SELECT_OVERHEAD = 2e-4
#: VEBI units (outputs of every ReLU call) per architecture.
VEBI_UNITS = {"resnet18": 3904, "resnet50": 22720, "vgg19": 5504}


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


@dataclass
class Cost:
    """Cost of one unit of work.

    Attributes:
        seconds: estimated wall time on the profile.
        ram: peak resident bytes while it runs.
        disk: bytes it leaves in the cache.
    """

    seconds: float = 0.0
    ram: float = 0.0
    disk: float = 0.0


@dataclass
class Shapes:
    """What the costs depend on, from the config alone.

    Attributes:
        arch: architecture.
        n_train: train images.
        n_val: val images.
        classes: classes.
        d: channels of the last conv block.
        positions: h x w of its maps.
        image_size: input side in pixels.
        jpeg: whether images are decoded from files.
        act_bytes: bytes per stored activation value.
    """

    arch: str
    n_train: int
    n_val: int
    classes: int
    d: int
    positions: int
    image_size: int
    jpeg: bool
    act_bytes: int


def _parallel(profile: Profile, seconds: float, units: int) -> float:
    """Per-class work spread over the job's cores (``n_jobs`` classes at a time)."""
    workers = max(1, min(profile.cores, units))
    return seconds / (1 + (workers - 1) * profile.parallel_efficiency)


def forward_pass(profile: Profile, s: Shapes, images: int) -> Cost:
    """One pass of ``images`` through the model (extraction, VEBI energies, ablations).

    Compute at the architecture's measured flop rate, or JPEG decoding on the job's cores when that is
    slower (the data loader then bounds the pass).
    """
    gflops = FORWARD_GFLOPS_224[s.arch] * (s.positions / 49.0)
    compute = images * gflops * 1e9 / profile.forward[s.arch]
    decode = images * profile.decode / max(1, profile.cores) if s.jpeg else 0.0
    ram = PARAMS_M[s.arch] * 4e6 * 2 + 128 * 3 * s.image_size**2 * 4 * 8
    return Cost(max(compute, decode), ram)


def extraction(profile: Profile, s: Shapes) -> Cost:
    """Train and val maps of one model, stored in the cache."""
    cost = forward_pass(profile, s, s.n_train + s.n_val)
    n = s.n_train + s.n_val
    cost.disk = n * (s.d * s.positions * s.act_bytes + s.d * 4 + s.classes * 4 + 16)
    return cost


def vebi_units(profile: Profile, s: Shapes) -> Cost:
    """VEBI's unit energies of every ReLU call: one more pass, N x U float32 features."""
    units = VEBI_UNITS[s.arch]
    cost = forward_pass(profile, s, s.n_train + s.n_val)
    cost.disk = (s.n_train + s.n_val) * units * 4
    return cost


def selection(profile: Profile, s: Shapes, selector: str, rho: float) -> Cost:
    """One coreset: flops of the selector's per-class work on the GAP features (d per image)."""
    n_c = s.n_train / s.classes
    m_c = max(1.0, rho * n_c)
    flops = {
        "random": 0.0,
        "full": 0.0,
        "moderate": 4 * n_c * s.d,
        "dgpruning": 2 * n_c * n_c * s.d * 2,
        "kcenter": 2 * m_c * n_c * s.d,
        "kernel_thinning": 2 * n_c * n_c * s.d * math.log2(max(2.0, n_c)),
    }.get(selector, 2 * n_c * n_c * s.d)
    # Plus a fixed per-class cost (indexing, seeding, Python) that even random selection pays.
    seconds = _parallel(profile, s.classes * (flops / profile.host_gemm64 + SELECT_OVERHEAD), s.classes)
    return Cost(seconds, n_c * n_c * 8 + s.n_train * s.d * 4, rho * s.n_train * 8)


def _torch_nmf(profile: Profile, rows: float, d: float, r: int, iters: int, fit: bool = True) -> float:
    from coreset_interp.linalg.cost import nmf_seconds  # imports torch: only when a torch fit is priced

    return nmf_seconds(profile.nmf_torch, profile.nmf_torch_sweep, rows, d, r, iters, fit)


def _nmf_unit(profile: Profile, backend: str) -> tuple[float, bool]:
    """Seconds per NMF unit and whether the work spreads over the job's cores (scikit-learn: per class)."""
    if backend == "sklearn":
        return profile.nmf_sklearn, True
    return profile.nmf_torch, not profile.gpu


def fit(profile: Profile, s: Shapes, interpreter: str, params: dict[str, Any], rho: float) -> Cost:
    """One interpreter fit on a fraction ``rho`` of every class's train images.

    ICE: per class, ``max_iter`` multiplicative-update iterations on (rho n_c h w) x d rows, r components
    (plus about 10 % for the nndsvda initialisation). Topic: ``steps`` Adam steps of the concept model.
    VEBI: the Gram of the selected images' unit energies (N_sel x U^2 flops, float64) and one lasso per
    class on it.
    """
    n_sel = rho * s.n_train
    if interpreter == "ice":
        rows_c = n_sel / s.classes * s.positions
        r, iters = int(params.get("n_components", 10)), int(params.get("max_iter", 200))
        unit, spreads = _nmf_unit(profile, str(params.get("backend", "sklearn")))
        seconds = 1.1 * s.classes * rows_c * s.d * r * iters * unit
        if params.get("backend", "sklearn") != "sklearn":
            seconds = s.classes * _torch_nmf(profile, rows_c, s.d, r, iters)
        if spreads:
            seconds = _parallel(profile, seconds, s.classes)
        ram = rows_c * s.d * (8 * 3 if params.get("backend", "sklearn") == "sklearn" else 4 * 3)
        return Cost(seconds, ram, s.classes * r * s.d * 8 * 2)
    if interpreter == "topic":
        m, hidden = int(params.get("n_concepts", 10)), int(params.get("hidden", 500))
        batch, steps = int(params.get("batch_size", 128)), int(params.get("steps", 230))
        flops = 6 * steps * batch * s.positions * (2 * s.d * m + 2 * m * hidden + 2 * hidden * s.d)
        # Batches of maps are read from the store per step: memory is a few batches, not the coreset.
        ram = 6 * batch * s.d * s.positions * 4 + s.n_train * s.d * 4
        return Cost(flops / profile.gemm32, ram, (m * s.d + hidden * (m + s.d)) * 4)
    units = VEBI_UNITS[s.arch]
    ws = int(params.get("working_set", 128))
    gram = 2 * n_sel * units * units / profile.gemm64
    lasso = s.classes * 20 * 2 * units * ws * ws / profile.host_gemm64
    return Cost(gram + _parallel(profile, lasso, s.classes), units * units * 8 * 2, s.classes * units * 8)


def evaluation(profile: Profile, s: Shapes, interpreter: str, params: dict[str, Any]) -> Cost:
    """One fit's val evaluation.

    ICE: the NMF transform of every val position (half an iteration's work per iteration) and the head.
    Topic: the concept model on the val maps. VEBI: intact, ablated and ``random_draws`` control passes
    over the val images.
    """
    if interpreter == "ice":
        r, iters = int(params.get("n_components", 10)), int(params.get("max_iter", 200))
        unit, spreads = _nmf_unit(profile, str(params.get("backend", "sklearn")))
        seconds = 0.5 * s.n_val * s.positions * s.d * r * iters * unit
        if params.get("backend", "sklearn") != "sklearn":
            rows_c = s.n_val / s.classes * s.positions
            seconds = s.classes * _torch_nmf(profile, rows_c, s.d, r, iters, fit=False)
        seconds = _parallel(profile, seconds, s.classes) if spreads else seconds
        return Cost(seconds, s.n_val / s.classes * s.positions * s.d * 8 * 3)
    if interpreter == "topic":
        m, hidden = int(params.get("n_concepts", 10)), int(params.get("hidden", 500))
        flops = 2 * s.n_val * s.positions * (2 * s.d * m + 2 * m * hidden + 2 * hidden * s.d)
        # The val maps are read class by class.
        return Cost(flops / profile.gemm32, 3 * s.n_val / s.classes * s.d * s.positions * 4)
    passes = 2 + int(params.get("random_draws", 5))
    return forward_pass(profile, s, passes * s.n_val)


def _eigh(profile: Profile, k: float, host: bool) -> float:
    if host:
        return profile.host_eigh_n3 * k**3
    return profile.eigh_n3 * k**3 + profile.linalg_latency


def _svd(profile: Profile, k: float, host: bool) -> float:
    if host:
        return profile.host_svd_n3 * k**3
    return profile.svd_n3 * k**3 + profile.linalg_latency


def comparisons(profile: Profile, s: Shapes, interpreter: str, params: dict[str, Any], n_others: int) -> Cost:
    """Phi of the full fit against ``n_others`` fits, class-outer.

    Per class: the maps of every fit (ICE: an NMF transform of the class's val positions), one prepare
    (QR/scatter, eigh with vectors, rotation) of the full side and of each other side, and per pair a cross
    product and a values-only SVD, on k = min(rows, d) columns. VEBI (paired): a val forward pass per pair
    for the top units' maps, then small problems. On a CPU numpy runs classes on one core each.
    """
    rows = s.n_val / s.classes * s.positions
    host = not profile.gpu
    gemm = profile.host_gemm64 if host else profile.gemm64
    if interpreter == "vebi":
        passes = forward_pass(profile, s, s.n_val * n_others)
        return Cost(passes.seconds, passes.ram)
    k = min(rows, s.d)
    prep = _eigh(profile, k, host) + 4 * rows * k * k / gemm
    compare = _svd(profile, k, host) + 2 * rows * k * k / gemm
    per_class = (1 + n_others) * prep + n_others * compare
    maps = 0.0
    if interpreter == "ice":
        r, iters = int(params.get("n_components", 10)), int(params.get("max_iter", 200))
        unit, _ = _nmf_unit(profile, str(params.get("backend", "sklearn")))
        maps = (1 + n_others) * 0.5 * rows * s.d * r * iters * unit
        if params.get("backend", "sklearn") != "sklearn":
            maps = (1 + n_others) * _torch_nmf(profile, rows, s.d, r, iters, fit=False)
    seconds = s.classes * (per_class + maps)
    seconds = _parallel(profile, seconds, s.classes) if host else seconds
    ram = rows * s.d * 8 * 4 + k * k * 8 * 3
    return Cost(seconds, ram, n_others * s.classes * 64)
