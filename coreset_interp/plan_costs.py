"""The planner's cost model: per-unit constants (a device profile) and the cost of each stage of a job.

The profiles themselves (the shipped ones and this machine's calibration) live in
:mod:`coreset_interp.plan_profile` and are re-exported here. ``params`` below are an interpreter's complete
fields as composed from ``conf/interpreter`` (the planner resolves ICE's ``backend: auto`` first).

The stage costs are simple operation counts times those rates (documented per function); they aim at
within a factor of 2 of measured times (``scripts/bench_scale.py`` checks the ratio), not better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from coreset_interp.plan_profile import (
    FORWARD_GFLOPS_224,
    PROFILE_DIR,
    Profile,
    calibrate,
    load_profile,
    save_profile,
)

__all__ = [
    "FORWARD_GFLOPS_224",
    "LAST_CONV_CHANNELS",
    "PARAMS_M",
    "PROFILE_DIR",
    "Cost",
    "Profile",
    "Shapes",
    "calibrate",
    "comparisons",
    "evaluation",
    "extraction",
    "fit",
    "forward_pass",
    "load_profile",
    "save_profile",
    "selection",
    "vebi_units",
]

#: Channels of the last conv block.
LAST_CONV_CHANNELS = {"resnet18": 512, "resnet50": 2048, "vgg19": 512}
#: Parameters (millions), for the model's memory.
PARAMS_M = {"resnet18": 11.7, "resnet50": 25.6, "vgg19": 143.7}
#: Seconds of fixed work per class and coreset (measured: random selection of 10 digits classes ~2 ms).
SELECT_OVERHEAD = 2e-4
#: VEBI units (outputs of every ReLU call) per architecture.
VEBI_UNITS = {"resnet18": 3904, "resnet50": 22720, "vgg19": 5504}


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


def _nmf_class(
    profile: Profile, backend: str, rows: float, d: float, r: int, iters: int, fit: bool = True
) -> tuple[float, bool]:
    """Seconds of one class's NMF fit (or, ``fit=False``, transform with fixed components) and whether
    classes spread over the job's cores (scikit-learn always; torch on a CPU).

    scikit-learn: ``iters`` coordinate-descent iterations of rows x d x r (plus about 10 % for the
    nndsvda initialisation; a transform is half an iteration's work per iteration). torch: the operation
    counts of :mod:`coreset_interp.linalg.cost` for the solver the device runs.
    """
    if backend == "sklearn":
        return (1.1 if fit else 0.5) * rows * d * r * iters * profile.nmf_sklearn, True
    # Imports torch: only when a torch fit is priced.
    from coreset_interp.linalg.cost import nmf_seconds
    from coreset_interp.linalg.nmf import default_solver

    solver = default_solver("cuda" if profile.gpu else "cpu")
    seconds = nmf_seconds(profile.nmf_torch, profile.nmf_torch_sweep, rows, d, r, iters, fit, solver)
    return seconds, not profile.gpu


def fit(profile: Profile, s: Shapes, interpreter: str, params: dict[str, Any], rho: float) -> Cost:
    """One interpreter fit on a fraction ``rho`` of every class's train images.

    ICE: per class, one NMF of (rho n_c h w) x d rows, r components, ``max_iter`` iterations. Topic:
    ``steps`` Adam steps of the concept model.
    VEBI: the Gram of the selected images' unit energies (N_sel x U^2 flops, float64) and one lasso per
    class on it.
    """
    n_sel = rho * s.n_train
    if interpreter == "ice":
        rows_c = n_sel / s.classes * s.positions
        r, iters = int(params["n_components"]), int(params["max_iter"])
        per_class, spreads = _nmf_class(profile, str(params["backend"]), rows_c, s.d, r, iters)
        seconds = s.classes * per_class
        if spreads:
            seconds = _parallel(profile, seconds, s.classes)
        ram = rows_c * s.d * (8 * 3 if params["backend"] == "sklearn" else 4 * 3)
        return Cost(seconds, ram, s.classes * r * s.d * 8 * 2)
    if interpreter == "topic":
        m, hidden = int(params["n_concepts"]), int(params["hidden"])
        batch, steps = int(params["batch_size"]), int(params["steps"])
        flops = 6 * steps * batch * s.positions * (2 * s.d * m + 2 * m * hidden + 2 * hidden * s.d)
        # Batches of maps are read from the store per step: memory is a few batches, not the coreset.
        ram = 6 * batch * s.d * s.positions * 4 + s.n_train * s.d * 4
        return Cost(flops / profile.gemm32, ram, (m * s.d + hidden * (m + s.d)) * 4)
    units = VEBI_UNITS[s.arch]
    ws = int(params["working_set"])
    gram = 2 * n_sel * units * units / profile.gemm64
    lasso = s.classes * 20 * 2 * units * ws * ws / profile.host_gemm64
    return Cost(gram + _parallel(profile, lasso, s.classes), units * units * 8 * 2, s.classes * units * 8)


def ice_val_scores(
    profile: Profile, s: Shapes, params: dict[str, Any], per_image: float = 1.0, reads: float | None = None
) -> float:
    """Seconds of ICE's NMF transforms of the val positions: ``per_image`` transforms of every val image
    (half a fit iteration's work per iteration with scikit-learn; see ``nmf_seconds`` for torch), each
    with its reconstruction W H, and ``reads`` reads of the val maps as rows of positions.

    Args:
        profile: the device profile.
        s: the shapes.
        params: ICE's parameters (``n_components``, ``max_iter``, ``backend``).
        per_image: transforms per val image.
        reads: reads of every val image's maps (default: one per transform).

    Returns:
        Seconds, classes spread over the job's cores where the backend runs per class on the host.
    """
    r, iters = int(params["n_components"]), int(params["max_iter"])
    values = s.n_val * s.positions * s.d
    rows_c = s.n_val / s.classes * s.positions
    per_class, spreads = _nmf_class(profile, str(params["backend"]), rows_c, s.d, r, iters, fit=False)
    seconds = per_image * (s.classes * per_class + 2 * values * r / profile.gemm32)
    seconds += (per_image if reads is None else reads) * values * profile.layout
    return _parallel(profile, seconds, s.classes) if spreads else seconds


def ice_candidates(s: Shapes, params: dict[str, Any]) -> int:
    """Args:
        s: the shapes.
        params: ICE's parameters (``candidates``: an integer or ``all``).

    Returns:
        Classes tried per val image by ICE's label-free accuracy.
    """
    k = params["candidates"]
    return s.classes if k == "all" else min(int(k), s.classes)


def evaluation(profile: Profile, s: Shapes, interpreter: str, params: dict[str, Any]) -> Cost:
    """One fit's val evaluation.

    ICE: the NMF transform of every val image with each of its candidate classes but its own (whose scores
    are shared with the Phi maps and priced in :func:`comparisons`; the label is assumed to be among the
    candidates), and the head. Topic: the concept model on the val maps. VEBI: intact, ablated and
    ``random_draws`` control passes over the val images.
    """
    if interpreter == "ice":
        # The val maps are read once, chunk by chunk, for all of an image's candidates.
        seconds = ice_val_scores(profile, s, params, per_image=ice_candidates(s, params) - 1, reads=1)
        return Cost(seconds, s.n_val / s.classes * s.positions * s.d * 8 * 3)
    if interpreter == "topic":
        m, hidden = int(params["n_concepts"]), int(params["hidden"])
        flops = 2 * s.n_val * s.positions * (2 * s.d * m + 2 * m * hidden + 2 * hidden * s.d)
        # The val maps are read class by class.
        return Cost(flops / profile.gemm32, 3 * s.n_val / s.classes * s.d * s.positions * 4)
    passes = 2 + int(params["random_draws"])
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

    Per class: the maps of every fit (ICE: its shared val scores, one NMF transform of the class's val
    positions per fit), one prepare (QR/scatter, eigh with vectors, rotation) of the full side and of each
    other side, and per pair a cross product and a values-only SVD, on k = min(rows, d) columns. VEBI
    (paired): a val forward pass per pair for the top units' maps, then small problems. On a CPU numpy runs
    classes on one core each.
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
    seconds = s.classes * per_class
    seconds = _parallel(profile, seconds, s.classes) if host else seconds
    if interpreter == "ice":
        # Each fit's val scores, computed once (by this stage or the evaluation, whichever runs first).
        seconds += ice_val_scores(profile, s, params, per_image=1 + n_others)
    ram = rows * s.d * 8 * 4 + k * k * 8 * 3
    return Cost(seconds, ram, n_others * s.classes * 64)
