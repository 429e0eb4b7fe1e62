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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreset_interp import plan_costs as pc
from coreset_interp.cache import ArtifactCache
from coreset_interp.humanize import human_size
from coreset_interp.plan_jobs import STAGES, JobPlan, Unit, dataset_sizes, plan_job, shapes

__all__ = [
    "STAGES",
    "JobPlan",
    "SweepPlan",
    "Unit",
    "build_plan",
    "dataset_sizes",
    "expand_sweep",
    "format_plan",
    "main",
    "plan_job",
    "shapes",
    "summarise",
]


def cached(cache: ArtifactCache, unit: Unit, classes: int) -> bool:
    """Whether the cache already holds a unit's artifact (comparisons: every class of every pair)."""
    if unit.kind is None or unit.key is None:
        return False
    if unit.kind == "comparison":
        from coreset_interp.metrics.compare import COMPARISON_DIR

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
            f"{name:<18} {int(st['units']):>6} {int(st['reused']):>6} {human_size(st['disk'], 1000):>10} "
            f"{human_size(st['ram'], 1000):>10} {human_seconds(st['seconds']):>10}"
        )
    disk = sum(st["disk"] for st in plan.stages.values())
    ram = max(st["ram"] for st in plan.stages.values())
    lines.append(
        f"{'total':<18} {'':>6} {'':>6} {human_size(disk, 1000):>10} {human_size(ram, 1000):>10} "
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
            node = head.hydra.sweeper.get("params")
            # No preset sweep (plain `-m a=x,y`): the sweeper has no params node to convert.
            params = OmegaConf.to_container(node, resolve=False) if node else {}
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
        calibration_file = Path(str(pcfg["calibration_file"] or default_file))
        if args.calibrate or bool(pcfg["calibrate"]):
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
    if any(cfg["interpreter"]["name"] == "ice" for _, cfg in jobs) and bool(pcfg["compare_ice_backends"]):
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
