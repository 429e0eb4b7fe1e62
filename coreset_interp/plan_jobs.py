"""The planner's units of work: what one job computes, per stage, with its cost and (when they can be
computed here) the cache keys of its artifacts, derived as the pipeline derives them.

Work shared by jobs through the artifact cache (extraction per model, full-data fits per (model,
interpreter), the null reference) has the same ``ident`` in every job, so :mod:`coreset_interp.plan`
counts it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from coreset_interp import plan_costs as pc
from coreset_interp.cache import spec_key
from coreset_interp.plan_keys import KeyOracle, comparison_keys, null_model_cfg
from coreset_interp.registry import split_node

STAGES = (
    "extraction passes",
    "selection",
    "fits",
    "evaluations",
    "comparisons",
    "null reference",
    "noise floor",
)
#: Known sizes of the embedded / installed datasets: (train, val, classes, decoded from JPEG files).
KNOWN_SIZES = {
    "digits": (1438, 359, 10, False),
    "fashion_mnist": (60000, 10000, 10, False),
    "imagenet": (1281167, 50000, 1000, True),
}
ACT_BYTES = {"float16": 2, "float32": 4}
# Short names of the two stages whose rows would not fit on one line otherwise.
EXTRACT, NULL = STAGES[0], STAGES[5]


@dataclass
class Unit:
    """One unit of work of a job, shared by every job with the same ``ident``.

    Attributes:
        stage: one of ``STAGES``.
        ident: identity of the work (jobs with equal identities share one computation through the cache).
        what: short description.
        cost: its cost.
        kind: cache kind and key when they can be computed (to check what the cache holds).
        key: the cache key.
    """

    stage: str
    ident: tuple
    what: str
    cost: pc.Cost
    kind: str | None = None
    key: str | None = None


@dataclass
class JobPlan:
    """The units of one job.

    Attributes:
        name: the job's override string.
        units: its work.
    """

    name: str
    units: list[Unit] = field(default_factory=list)


def dataset_sizes(dcfg: dict[str, Any]) -> tuple[int, int, int, bool]:
    """Train, val and class counts from the config (or the image tree's file listing when it exists).

    Args:
        dcfg: the ``dataset`` config.

    Returns:
        (n_train, n_val, classes, jpeg).
    """
    name = str(dcfg["name"])
    root = Path(str(dcfg["root"])) if dcfg.get("root") else None
    if name in ("imagenet", "imagefolder") and root is not None and (root / str(dcfg["train_dir"])).is_dir():
        counts = {}
        for split in ("train", "val"):
            folder = root / str(dcfg[f"{split}_dir"])
            per_class = [sum(1 for _ in d.iterdir()) for d in sorted(folder.iterdir()) if d.is_dir()]
            cap = dcfg.get(f"max_per_class_{split}")
            counts[split] = sum(min(n, int(cap)) if cap else n for n in per_class), len(per_class)
        return counts["train"][0], counts["val"][0], counts["train"][1], True
    if name not in KNOWN_SIZES:
        raise ValueError(
            f"plan: dataset {name!r} has no known size and no image tree at {root}; "
            f"known: {sorted(KNOWN_SIZES)}"
        )
    n_train, n_val, classes, jpeg = KNOWN_SIZES[name]
    for split in ("train", "val"):
        cap = dcfg.get(f"max_per_class_{split}")
        if cap:
            per = min(int(cap), (n_train if split == "train" else n_val) // classes)
            n_train, n_val = (per * classes, n_val) if split == "train" else (n_train, per * classes)
    return n_train, n_val, classes, jpeg


def shapes(cfg: dict[str, Any]) -> pc.Shapes:
    """Args:
        cfg: a composed job config.

    Returns:
        The shapes the cost model needs.
    """
    n_train, n_val, classes, jpeg = dataset_sizes(cfg["dataset"])
    arch = str(cfg["model"]["name"])
    size = int(cfg["dataset"]["image_size"])
    side = max(1, size // (16 if str(cfg["model"]["stem"]) == "small" else 32))
    return pc.Shapes(
        arch=arch,
        n_train=n_train,
        n_val=n_val,
        classes=classes,
        d=pc.LAST_CONV_CHANNELS[arch],
        positions=side * side,
        image_size=size,
        jpeg=jpeg,
        act_bytes=ACT_BYTES[str(cfg["activation_dtype"])],
    )


def _frozen(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def plan_job(cfg: dict[str, Any], profile: pc.Profile, name: str, ice_backend: str | None = None) -> JobPlan:
    """The units of work of one job with their costs and cache keys.

    Args:
        cfg: the composed job config.
        profile: the device profile.
        name: the job's label.
        ice_backend: price ICE with this backend instead of the config's (``torch`` or ``sklearn``).

    Returns:
        The job's plan.
    """
    from coreset_interp.interpreters import get_interpreter
    from coreset_interp.metrics.compare import comparison_key
    from coreset_interp.pipeline import _fit_spec, evaluation_spec, ratios_from_percents
    from coreset_interp.reality import bootstrap_key, bootstrap_seed
    from coreset_interp.selectors import SELECTORS

    s = shapes(cfg)
    icfg = cfg["interpreter"]
    iname = str(icfg["name"])
    params = split_node(icfg)[1]
    if iname == "ice" and ice_backend is not None:
        params["backend"] = ice_backend
    if iname == "ice" and params["backend"] == "auto":
        # As ICE.bind resolves it on the job's device: torch on a GPU, scikit-learn on CPU cores.
        params["backend"] = "torch" if profile.gpu else "sklearn"
    try:
        interp: Any = get_interpreter(iname, **params)
    except Exception:  # noqa: BLE001 - keys are optional; costs do not need the interpreter object
        interp = None
    selector = str(cfg["selector"]["name"])
    try:
        selector_key: dict[str, Any] | None = SELECTORS.build(cfg["selector"]).key()
    except Exception:  # noqa: BLE001 - as for the interpreter: costs do not need the selector object
        selector_key = None
    ratios = ratios_from_percents(cfg["ratio"]["percents"])
    seed = int(cfg["seed"])
    alpha = float(cfg["metric"]["alpha"])
    oracle = KeyOracle(cfg)
    mid, did = _frozen(cfg["model"]), _frozen(cfg["dataset"])
    icfg_id = _frozen({"name": iname, **params})
    job = JobPlan(name)

    def add(
        stage: str, ident: tuple, what: str, cost: pc.Cost, kind: str | None = None, key: str | None = None
    ) -> None:
        # One row of the job's table: every unit has this one shape.
        job.units.append(Unit(stage, ident, what, cost, kind, key))

    def fit_key(model_key: str | None, coreset_key: str | None, fit_seed: int = seed) -> str | None:
        if interp is None or model_key is None:
            return None
        return spec_key(_fit_spec(interp, SimpleNamespace(model_key=model_key), fit_seed, coreset_key))

    def eval_key(model_key: str | None, val_key: str | None, coreset_key: str | None) -> str | None:
        if interp is None or model_key is None:
            return None
        spec = {
            **evaluation_spec(interp, model_key, val_key, seed),
            "coreset": coreset_key if coreset_key is not None else "full",
        }
        return spec_key(spec)

    def compare_keys(full: str | None, others: list[str | None], kval_other: str | None) -> str | None:
        return comparison_keys(interp, full, others, alpha, kval, kval_other, comparison_key)

    fit_cost = pc.fit(profile, s, iname, params, 1.0)
    eval_cost = pc.evaluation(profile, s, iname, params)
    maps_cost = pc.extraction(profile, s)
    ktrain, kval = oracle.activations(cfg["model"], "train"), oracle.activations(cfg["model"], "val")
    if str(cfg["model"]["weights"]) == "train":
        train_cost = pc.forward_pass(profile, s, 3 * int(cfg["model"]["train"]["epochs"]) * s.n_train)
        train_cost.disk = pc.PARAMS_M[s.arch] * 4e6
        ckpt = oracle.checkpoint(cfg["model"])
        add(EXTRACT, ("train", mid, did), "model training", train_cost, "checkpoint", ckpt)
    add(EXTRACT, ("extract", mid, did), "train+val maps", maps_cost, "activations", ktrain)
    if iname == "vebi":
        add(EXTRACT, ("units", mid, did), "VEBI unit energies", pc.vebi_units(profile, s))

    full_key = fit_key(ktrain, None)
    full_id = ("fit_full", mid, did, icfg_id, seed)
    add("fits", full_id, "full-data fit", fit_cost, "fit_full", full_key)
    full_eval = eval_key(ktrain, kval, None)
    add("evaluations", ("eval", *full_id), "full-data evaluation", eval_cost, "evaluation", full_eval)
    other_keys: list[str | None] = []
    for rho in ratios:
        cspec = {**(selector_key or {}), "ratio": rho, "seed": seed, "features": ktrain}
        ckey = spec_key(cspec) if ktrain is not None and selector_key is not None else None
        cid = ("coreset", mid, did, _frozen(cfg["selector"]), rho, seed)
        add("selection", cid, f"coreset {rho:g}", pc.selection(profile, s, selector, rho), "coreset", ckey)
        fkey = fit_key(ktrain, ckey) if ckey is not None else None
        other_keys.append(fkey)
        fid = ("fit", *cid, icfg_id)
        add("fits", fid, f"fit {rho:g}", pc.fit(profile, s, iname, params, rho), "fit", fkey)
        ekey = eval_key(ktrain, kval, ckey) if ckey is not None else None
        add("evaluations", ("eval", *fid), f"evaluation {rho:g}", eval_cost, "evaluation", ekey)
    phi_cost = pc.comparisons(profile, s, iname, params, len(ratios))
    cid = ("compare", mid, did, _frozen(cfg["selector"]), icfg_id, _frozen(cfg["ratio"]), alpha)
    phi_keys = compare_keys(full_key, other_keys, kval)
    add("comparisons", cid, f"Phi x {len(ratios)} rho", phi_cost, "comparison", phi_keys)
    if bool(cfg["metric"]["null_reference"]):
        ncfg = null_model_cfg(cfg)
        nid = _frozen(ncfg)
        nktrain, nkval = oracle.activations(ncfg, "train"), oracle.activations(ncfg, "val")
        add(NULL, ("extract", nid, did), "random-weights maps", maps_cost, "activations", nktrain)
        if iname == "vebi":
            add(NULL, ("units", nid, did), "random-weights energies", pc.vebi_units(profile, s))
        nfull = fit_key(nktrain, None)
        add(NULL, ("fit_full", nid, did, icfg_id, seed), "random-weights fit", fit_cost, "fit_full", nfull)
        ncost = pc.comparisons(profile, s, iname, params, 1)
        # The full side is prepared in the rho pass already; only the null side's work is extra.
        ncost.seconds = max(0.0, ncost.seconds - pc.comparisons(profile, s, iname, params, 0).seconds)
        ncmp = ("null_compare", mid, did, icfg_id, seed, alpha)
        add(NULL, ncmp, "Phi vs random weights", ncost, "comparison", compare_keys(full_key, [nfull], nkval))
    floor_n = int(cfg["metric"]["floor_resamples"]) if cfg["metric"]["floor"] else 0
    for b in range(floor_n):
        bkey = (
            None
            if ktrain is None
            else fit_key(ktrain, bootstrap_key(ktrain, seed, b), bootstrap_seed(seed, b))
        )
        bid = ("floor_fit", mid, did, icfg_id, seed, b)
        add("noise floor", bid, f"bootstrap fit {b}", fit_cost, "fit", bkey)
    if floor_n:
        # Every pair of resamples, and each resample against the full-data fit.
        pairs = floor_n * (floor_n - 1) // 2 + floor_n
        fcmp = ("floor_compare", mid, did, icfg_id, seed, alpha, floor_n)
        add("noise floor", fcmp, "Phi between resamples", pc.comparisons(profile, s, iname, params, pairs))
    return job
