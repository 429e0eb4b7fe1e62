"""``coreset-interp-plan``: what a job or a sweep will cost, before anything runs.

Takes the main command's Hydra overrides (``-m`` for a sweep: the sweeper's params and comma lists are
expanded and each combination is composed with Hydra's compose API, nothing is launched) and prints a table
per stage (extraction passes, selection, fits, evaluations, comparisons, null reference, noise floor) with
disk, peak RAM and estimated time, from the cost model of :mod:`coreset_interp.plan_costs` on a device profile
(``plan.device=local|cpu|a100|h100``; ``--calibrate`` measures this machine first). Work shared by jobs
through the artifact cache (extraction per model, full-data fits per (model, interpreter), the null
reference) is counted once, and what the cache already holds is listed and priced at zero.

Examples:
    python -m coreset_interp.plan
    python -m coreset_interp.plan -m experiment=paper dataset=imagenet plan.device=h100
    python -m coreset_interp.plan --calibrate -m selector=random,moderate
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from coreset_interp import plan_costs as pc
from coreset_interp.cache import ArtifactCache, spec_key

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
    root = Path(str(dcfg.get("root", ""))) if dcfg.get("root") else None
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
        act_bytes=ACT_BYTES.get(str(cfg.get("activation_dtype", "float32")), 4),
    )


def _frozen(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class KeyOracle:
    """Cache keys of a job's artifacts, computed as the pipeline computes them (None when they cannot be:
    the dataset is not present, so its fingerprint is unknown)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from coreset_interp.data import get_dataset

        self.cfg = cfg
        self.ok = False
        try:
            self.dataset = get_dataset(**cfg["dataset"])
            self.fingerprint = self.dataset.fingerprint()
        except Exception:  # noqa: BLE001 - an absent dataset only means the keys are unknown
            return
        self.ok = True

    def activations(self, mcfg: dict[str, Any], split: str) -> str | None:
        """Key of :func:`coreset_interp.pipeline.activations_for`'s artifact."""
        if not self.ok:
            return None
        from coreset_interp.models import get_model
        from coreset_interp.models.extraction import store_spec
        from coreset_interp.models.loader import compute_precision

        device = _job_device(self.cfg)
        autocast = bool((self.cfg.get("extract") or {}).get("autocast", True))
        spec = store_spec(
            get_model(**mcfg).spec(self.dataset),
            self.fingerprint,
            split,
            str(self.cfg.get("activation_dtype", "float32")),
            compute_precision(device, autocast),
        )
        return spec_key(spec)

    def checkpoint(self, mcfg: dict[str, Any]) -> str | None:
        """Key of a trained model's checkpoint."""
        from coreset_interp.models import get_model

        return spec_key(get_model(**mcfg).spec(self.dataset)) if self.ok else None


def _job_device(cfg: dict[str, Any]) -> Any:
    """The device a job of ``cfg`` would run on (``auto`` = CUDA when present), without failing."""
    import torch

    name = str(cfg.get("device", "auto"))
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def null_model_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """The null reference's randomised-weights model config (the pipeline's own rule)."""
    from coreset_interp.pipeline import null_model_config

    return null_model_config(cfg, int(cfg.get("seed", 0)))


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
    from coreset_interp.comparisons import comparison_key
    from coreset_interp.interpreters import get_interpreter
    from coreset_interp.pipeline import _fit_spec, evaluation_spec, ratios_from_percents
    from coreset_interp.reality import bootstrap_key, bootstrap_seed
    from coreset_interp.selectors import SELECTORS

    s = shapes(cfg)
    icfg = cfg["interpreter"]
    iname = str(icfg["name"])
    params = {k: v for k, v in icfg.items() if k != "name"}
    if iname == "ice" and ice_backend is not None:
        params["backend"] = ice_backend
    if iname == "ice" and params.get("backend", "auto") == "auto":
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
    seed = int(cfg.get("seed", 0))
    alpha = float(cfg["metric"]["alpha"])
    null = bool(cfg["metric"].get("null_reference"))
    oracle = KeyOracle(cfg)
    model_id = _frozen(cfg["model"])
    data_id = _frozen(cfg["dataset"])
    icfg_id = _frozen({"name": iname, **params})
    job = JobPlan(name)
    add = job.units.append

    ktrain = oracle.activations(cfg["model"], "train")
    kval = oracle.activations(cfg["model"], "val")
    if str(cfg["model"]["weights"]) == "train":
        epochs = int(cfg["model"]["train"].get("epochs", 1))
        train_cost = pc.forward_pass(profile, s, 3 * epochs * s.n_train)
        train_cost.disk = pc.PARAMS_M[s.arch] * 4e6
        add(
            Unit(
                "extraction passes",
                ("train", model_id, data_id),
                "model training",
                train_cost,
                "checkpoint",
                oracle.checkpoint(cfg["model"]),
            )
        )
    add(
        Unit(
            "extraction passes",
            ("extract", model_id, data_id),
            "train+val maps",
            pc.extraction(profile, s),
            "activations",
            ktrain,
        )
    )
    if iname == "vebi":
        add(
            Unit(
                "extraction passes",
                ("units", model_id, data_id),
                "VEBI unit energies",
                pc.vebi_units(profile, s),
            )
        )

    def fit_key(model_key: str | None, coreset_key: str | None) -> str | None:
        if interp is None or model_key is None:
            return None
        return spec_key(_fit_spec(interp, SimpleNamespace(model_key=model_key), seed, coreset_key))

    def eval_key(model_key: str | None, val_key: str | None, coreset_key: str | None) -> str | None:
        if interp is None or model_key is None:
            return None
        spec = {
            **evaluation_spec(interp, model_key, val_key, seed),
            "coreset": coreset_key if coreset_key is not None else "full",
        }
        return spec_key(spec)

    full_key = fit_key(ktrain, None)
    full_id = ("fit_full", model_id, data_id, icfg_id, seed)
    add(Unit("fits", full_id, "full-data fit", pc.fit(profile, s, iname, params, 1.0), "fit_full", full_key))
    add(
        Unit(
            "evaluations",
            ("eval", *full_id),
            "full-data evaluation",
            pc.evaluation(profile, s, iname, params),
            "evaluation",
            eval_key(ktrain, kval, None),
        )
    )
    other_keys: list[str | None] = []
    for rho in ratios:
        cspec = {**(selector_key or {}), "ratio": rho, "seed": seed, "features": ktrain}
        ckey = spec_key(cspec) if ktrain is not None and selector_key is not None else None
        cid = ("coreset", model_id, data_id, _frozen(cfg["selector"]), rho, seed)
        add(
            Unit(
                "selection", cid, f"coreset {rho:g}", pc.selection(profile, s, selector, rho), "coreset", ckey
            )
        )
        fkey = fit_key(ktrain, ckey) if ckey is not None else None
        other_keys.append(fkey)
        fid = ("fit", *cid, icfg_id)
        add(Unit("fits", fid, f"fit {rho:g}", pc.fit(profile, s, iname, params, rho), "fit", fkey))
        add(
            Unit(
                "evaluations",
                ("eval", *fid),
                f"evaluation {rho:g}",
                pc.evaluation(profile, s, iname, params),
                "evaluation",
                eval_key(ktrain, kval, ckey) if ckey is not None else None,
            )
        )
    comparison = pc.comparisons(profile, s, iname, params, len(ratios))
    add(
        Unit(
            "comparisons",
            ("compare", model_id, data_id, _frozen(cfg["selector"]), icfg_id, _frozen(cfg["ratio"]), alpha),
            f"Phi x {len(ratios)} rho",
            comparison,
            "comparison",
            _comparison_keys(interp, full_key, other_keys, alpha, kval, kval, comparison_key),
        )
    )
    if null:
        ncfg = null_model_cfg(cfg)
        nid = _frozen(ncfg)
        nktrain, nkval = oracle.activations(ncfg, "train"), oracle.activations(ncfg, "val")
        add(
            Unit(
                "null reference",
                ("extract", nid, data_id),
                "random-weights maps",
                pc.extraction(profile, s),
                "activations",
                nktrain,
            )
        )
        if iname == "vebi":
            add(
                Unit(
                    "null reference",
                    ("units", nid, data_id),
                    "random-weights energies",
                    pc.vebi_units(profile, s),
                )
            )
        nfull = fit_key(nktrain, None)
        add(
            Unit(
                "null reference",
                ("fit_full", nid, data_id, icfg_id, seed),
                "random-weights fit",
                pc.fit(profile, s, iname, params, 1.0),
                "fit_full",
                nfull,
            )
        )
        ncost = pc.comparisons(profile, s, iname, params, 1)
        # The full side is prepared in the rho pass already; only the null side's work is extra.
        one = pc.comparisons(profile, s, iname, params, 0)
        ncost.seconds = max(0.0, ncost.seconds - one.seconds)
        add(
            Unit(
                "null reference",
                ("null_compare", model_id, data_id, icfg_id, seed, alpha),
                "Phi vs random weights",
                ncost,
                "comparison",
                _comparison_keys(interp, full_key, [nfull], alpha, kval, nkval, comparison_key),
            )
        )
    floor_n = int(cfg["metric"].get("floor_resamples", 2)) if cfg["metric"].get("floor") else 0
    for b in range(floor_n):
        bkey = None
        if interp is not None and ktrain is not None:
            spec = _fit_spec(
                interp,
                SimpleNamespace(model_key=ktrain),
                bootstrap_seed(seed, b),
                bootstrap_key(ktrain, seed, b),
            )
            bkey = spec_key(spec)
        cost = pc.fit(profile, s, iname, params, 1.0)
        add(
            Unit(
                "noise floor",
                ("floor_fit", model_id, data_id, icfg_id, seed, b),
                f"bootstrap fit {b}",
                cost,
                "fit",
                bkey,
            )
        )
    if floor_n:
        # Every pair of resamples, and each resample against the full-data fit.
        pairs = floor_n * (floor_n - 1) // 2 + floor_n
        add(
            Unit(
                "noise floor",
                ("floor_compare", model_id, data_id, icfg_id, seed, alpha, floor_n),
                "Phi between resamples",
                pc.comparisons(profile, s, iname, params, pairs),
            )
        )
    return job


def _comparison_keys(
    interp: Any,
    full_key: str | None,
    others: list[str | None],
    alpha: float,
    kval: str | None,
    kval_other: str | None,
    comparison_key: Any,
) -> str | None:
    if interp is None or full_key is None or kval is None or kval_other is None or None in others:
        return None
    return ",".join(comparison_key(interp, full_key, o, alpha, kval, kval_other) for o in others)


def cached(cache: ArtifactCache, unit: Unit, classes: int) -> bool:
    """Whether the cache already holds a unit's artifact (comparisons: every class of every pair)."""
    if unit.kind is None or unit.key is None:
        return False
    if unit.kind == "comparison":
        from coreset_interp.comparisons import COMPARISON_DIR

        for key in unit.key.split(","):
            path = cache.root / COMPARISON_DIR / f"{key}.jsonl"
            if not path.is_file() or len(path.read_text().splitlines()) < classes:
                return False
        return True
    return cache.exists(unit.kind, unit.key)


@dataclass
class SweepPlan:
    """Totals of a sweep: per stage, and the parallel wall-time bounds."""

    stages: dict[str, dict[str, float]]
    total_seconds: float
    critical_seconds: float
    n_jobs: int
    reused: list[str]
    unknown_keys: int


def summarise(jobs: list[JobPlan], cache: ArtifactCache | None, classes: int) -> SweepPlan:
    """Sum the unique units of a sweep per stage.

    Args:
        jobs: the job plans.
        cache: the artifact cache to look up reusable artifacts in (None: do not look).
        classes: classes (a comparison log is complete with one line per class).

    Returns:
        The sweep's totals; reused artifacts cost no time.
    """
    stages = {name: {"units": 0, "disk": 0.0, "ram": 0.0, "seconds": 0.0, "reused": 0} for name in STAGES}
    seen: dict[tuple, float] = {}
    reused: list[str] = []
    unknown = 0
    critical = 0.0
    for job in jobs:
        job_seconds = 0.0
        for unit in job.units:
            if unit.ident not in seen:
                hit = cache is not None and cached(cache, unit, classes)
                if unit.kind is not None and unit.key is None:
                    unknown += 1
                st = stages[unit.stage]
                st["units"] += 1
                st["disk"] += unit.cost.disk
                st["ram"] = max(st["ram"], unit.cost.ram)
                if hit:
                    st["reused"] += 1
                    reused.append(f"{unit.kind} {unit.key.split(',')[0]}  ({unit.what}; {job.name})")
                    seen[unit.ident] = 0.0
                else:
                    st["seconds"] += unit.cost.seconds
                    seen[unit.ident] = unit.cost.seconds
            job_seconds += seen[unit.ident]
        critical = max(critical, job_seconds)
    total = sum(st["seconds"] for st in stages.values())
    return SweepPlan(stages, total, critical, len(jobs), reused, unknown)


def wall(plan: SweepPlan, workers: int) -> float:
    """Lower bound of the wall time with ``workers`` jobs at a time: the longest job (with the shared work
    it may have to wait for) or the total divided evenly, whichever is larger."""
    return max(plan.critical_seconds, plan.total_seconds / max(1, min(workers, plan.n_jobs)))


def human_bytes(n: float) -> str:
    """Args:
        n: bytes.

    Returns:
        A short human-readable size.
    """
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    """Args:
        s: seconds.

    Returns:
        A short human-readable duration.
    """
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def format_plan(plan: SweepPlan, profile: pc.Profile, gpus: int, tasks: int) -> str:
    """The table and the totals as text."""
    lines = [
        f"device profile: {profile.label}",
        f"jobs: {plan.n_jobs}",
        f"{'stage':<18} {'units':>6} {'reused':>6} {'disk':>10} {'peak RAM':>10} {'time':>10}",
    ]
    for name, st in plan.stages.items():
        lines.append(
            f"{name:<18} {int(st['units']):>6} {int(st['reused']):>6} {human_bytes(st['disk']):>10} "
            f"{human_bytes(st['ram']):>10} {human_seconds(st['seconds']):>10}"
        )
    disk = sum(st["disk"] for st in plan.stages.values())
    ram = max(st["ram"] for st in plan.stages.values())
    lines.append(
        f"{'total':<18} {'':>6} {'':>6} {human_bytes(disk):>10} {human_bytes(ram):>10} "
        f"{human_seconds(plan.total_seconds):>10}"
    )
    per = "GPU" if profile.gpu else "worker"
    lines.append(
        f"wall time: one node with {gpus} {per}s {human_seconds(wall(plan, gpus))}; "
        f"an array of {tasks} tasks {human_seconds(wall(plan, tasks))} "
        f"(longest job {human_seconds(plan.critical_seconds)})"
    )
    return "\n".join(lines)


def expand_sweep(overrides: list[str], multirun: bool) -> list[tuple[str, dict[str, Any]]]:
    """Compose one config per job, as ``coreset-interp`` (``-m``) would run them.

    Args:
        overrides: Hydra overrides (``plan.*`` ones included).
        multirun: expand the sweeper's params and comma-separated values.

    Returns:
        (label, resolved config) per job.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from coreset_interp.run import CONF_DIR

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps: dict[str, list[str]] = {}
    for o in parsed:
        if o.is_sweep_override():
            if not multirun:
                raise ValueError(f"override {o.input_line!r} is a sweep; add -m to plan a sweep")
            sweeps[o.get_key_element()] = [str(v) for v in o.sweep_string_iterator()]
    base = ["+plan=default", *fixed]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        if multirun:
            head = compose(config_name="config", overrides=base, return_hydra_config=True)
            params = OmegaConf.to_container(head.hydra.sweeper.get("params") or {}, resolve=False)
            for key, value in dict(params or {}).items():
                if key not in sweeps:
                    (o,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
                    sweeps[key] = (
                        [str(v) for v in o.sweep_string_iterator()] if o.is_sweep_override() else [str(value)]
                    )
        keys = list(sweeps)
        jobs = []
        for combo in itertools.product(*(sweeps[k] for k in keys)) if keys else [()]:
            extra = [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
            cfg = compose(config_name="config", overrides=base + extra)
            jobs.append((" ".join(extra) or "job", OmegaConf.to_container(cfg, resolve=True)))
    return jobs  # type: ignore[return-value]


def build_plan(
    jobs: list[tuple[str, dict[str, Any]]], profile: pc.Profile, ice_backend: str | None = None
) -> tuple[SweepPlan, list[JobPlan]]:
    """Args:
        jobs: from :func:`expand_sweep`.
        profile: the device profile.
        ice_backend: price ICE with this backend (None: the config's).

    Returns:
        The sweep's totals and the per-job plans.
    """
    plans = [plan_job(cfg, profile, name, ice_backend) for name, cfg in jobs]
    cfg0 = jobs[0][1]
    cache = ArtifactCache(Path(cfg0["cache_dir"])) if Path(cfg0["cache_dir"]).is_dir() else None
    classes = shapes(cfg0).classes
    return summarise(plans, cache, classes), plans


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options: ``-m``, ``--calibrate``, ``--json`` and Hydra overrides."""
    parser = argparse.ArgumentParser(prog="coreset-interp-plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--multirun", action="store_true", help="plan the sweep the overrides describe")
    parser.add_argument(
        "--calibrate", action="store_true", help="measure this machine first (plan.calibrate)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the plan as JSON here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for coreset-interp")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the plan. Returns the exit status (2 on a bad override or config)."""
    args = parse_args(argv)
    try:
        jobs = expand_sweep(list(args.overrides), args.multirun)
        pcfg = jobs[0][1]["plan"]
        default_file = Path(jobs[0][1]["cache_dir"]) / "plan" / "calibration.json"
        calibration_file = Path(str(pcfg.get("calibration_file") or default_file))
        if args.calibrate or bool(pcfg.get("calibrate")):
            print("calibrating this machine ...", flush=True)
            pc.save_profile(pc.calibrate(), calibration_file)
        profile = pc.load_profile(str(pcfg["device"]), calibration_file)
        plan, _ = build_plan(jobs, profile)
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    gpus, tasks = int(pcfg["gpus_per_node"]), int(pcfg["array_tasks"])
    print(format_plan(plan, profile, gpus, tasks))
    out: dict[str, Any] = {
        "profile": profile.name,
        "validated": profile.validated,
        "stages": plan.stages,
        "total_seconds": plan.total_seconds,
        "node_seconds": wall(plan, gpus),
        "array_seconds": wall(plan, tasks),
        "reused": plan.reused,
    }
    if any(cfg["interpreter"]["name"] == "ice" for _, cfg in jobs) and bool(pcfg.get("compare_ice_backends")):
        out["ice_backends"] = {}
        for backend in ("torch", "sklearn"):
            alt, _ = build_plan(jobs, profile, backend)
            out["ice_backends"][backend] = {
                "total_seconds": alt.total_seconds,
                "node_seconds": wall(alt, gpus),
                "array_seconds": wall(alt, tasks),
            }
            print(
                f"with ICE backend={backend}: total {human_seconds(alt.total_seconds)}, one node "
                f"{human_seconds(wall(alt, gpus))}, {tasks}-task array {human_seconds(wall(alt, tasks))}"
            )
    if plan.reused:
        print(f"the cache already holds {len(plan.reused)} artifact(s) this plan reuses:")
        for line in plan.reused:
            print(f"  {line}")
    elif plan.unknown_keys:
        print("cache: keys not computable (dataset not present here); nothing counted as reused")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
