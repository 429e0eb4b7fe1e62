"""Cost of the interpretation methods on the embedded default (the paper's Sec. 4.6), in one run.

For every interpreter (default ``ice,topic,vebi`` with their YAML parameters):

1. **fit time**: ``fit`` on all train images and on random coresets of ``--percents`` (default 10 and 50),
   timed ``--repeats`` times in alternating order (the median is reported), after ``prepare`` (the
   per-model work shared by every fit, e.g. VEBI's unit features; its time is listed separately). The ratio
   t(rho)/t(full) is compared with the target 1.2 rho + 0.05 (ICE and VEBI; topic with a step budget does
   the same number of steps at every rho, so it is reported, not targeted).
2. **job wall time**: one ``coreset-interp`` job per interpreter (``selector=random ratio=paper``, defaults
   otherwise), run as a subprocess on a cache that shares the model's checkpoint, activations and unit
   features with ``--cache-dir`` but holds no fits, so every fit of the job is computed. The job's own
   t(rho)/t(full) from its result.json is listed too.
3. ``--sweep DIR``: checks every result.json of a finished sweep for completeness and lists wall times.

Other processes may share the CPU: the load average is printed beside the numbers. With more runnable
threads than cores, multi-threaded BLAS/OpenMP spin-waits make small operations erratic (a 230-step topic
fit took 2 s or 38 s within one sweep); ``--threads 1`` pins torch, BLAS and the jobs to one thread each,
which gives steadier ratios on a shared machine.

Usage::

    .venv/bin/python scripts/bench_interpreters.py
    .venv/bin/python scripts/bench_interpreters.py --repeats 5 --no-job --interpreters vebi
    .venv/bin/python scripts/bench_interpreters.py --no-fit --no-job --sweep outputs/multirun/<stamp>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Artifacts a job may share without sharing fits.
SHARED_KINDS = ("checkpoint", "activations", "unit_features")
#: Keys every ratio entry of a job must carry, per interpreter (beyond the common ones).
REQUIRED = {
    "common": ["accuracy", "angular_distance", "angular_distance_per_class", "fit_seconds", "n_selected"],
    "ice": [],
    "topic": ["intact_accuracy", "topic_steps", "topic_budget"],
    "vebi": [
        "ablation_drop",
        "ablation_prob_drop",
        "random_ablation_drop",
        "random_ablation_prob_drop",
        "vebi_units_per_class",
        "vebi_units_per_layer",
        "vebi_coverage_per_layer",
    ],
}


def load() -> str:
    """Returns:
    The 1-minute load average and the CPU count, for the record.
    """
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus"


def compose(overrides: list[str]) -> dict[str, Any]:
    """Args:
        overrides: Hydra overrides.

    Returns:
        The resolved job config.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def time_fits(
    names: list[str], cache_dir: Path, percents: list[int], repeats: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Median fit seconds per interpreter and rho (rho = 1 is the full data).

    Args:
        names: interpreters.
        cache_dir: the artifact cache holding (or receiving) the model and its activations.
        percents: coreset sizes in percent.
        repeats: timed fits per (interpreter, rho).
        seed: coreset and fit seed.

    Returns:
        Per interpreter: ``prepare_seconds``, ``fit_seconds`` {percent: median}, ``all`` {percent: list}.
    """
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.interpreters import INTERPRETERS
    from coreset_interp.pipeline import build_workspace
    from coreset_interp.selectors import get_selector

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cfg = compose([f"interpreter={name}", "logger=none", "progress=false", f"cache_dir={cache_dir}"])
        ws = build_workspace(cfg, ArtifactCache(cache_dir))
        ctx = ws.context(cfg)
        interp = INTERPRETERS.build(cfg["interpreter"])
        start = time.perf_counter()
        interp.prepare(ctx)
        prepare_seconds = time.perf_counter() - start
        sets = {100: np.arange(ws.train.n, dtype=np.int64)}
        for p in percents:
            sets[p] = get_selector("random").select(ws.train.g, ws.train.labels, p / 100, seed)
        times: dict[int, list[float]] = {p: [] for p in sets}
        for r in range(repeats):
            # Alternate the order so that a slow spell of the machine does not hit one size only.
            order = sorted(sets, reverse=bool(r % 2))
            for p in order:
                start = time.perf_counter()
                interp.fit(ctx, sets[p], seed)
                times[p].append(time.perf_counter() - start)
        out[name] = {
            "prepare_seconds": prepare_seconds,
            "fit_seconds": {p: float(np.median(t)) for p, t in times.items()},
            "all": times,
        }
        print(f"  {name}: timed ({load()})", flush=True)
    return out


def shared_cache(main: Path, root: Path) -> Path:
    """A cache folder that shares the model artifacts of ``main`` but none of its fits.

    Args:
        main: the main artifact cache.
        root: an empty folder.

    Returns:
        The new cache folder.
    """
    cache = root / "cache"
    cache.mkdir(parents=True)
    for kind in SHARED_KINDS:
        (main / kind).mkdir(parents=True, exist_ok=True)
        (cache / kind).symlink_to((main / kind).resolve(), target_is_directory=True)
    return cache


def run_job(
    name: str, cache: Path, run_dir: Path, extra: list[str], threads: int = 0
) -> tuple[float, dict[str, Any]]:
    """One ``coreset-interp`` job as a subprocess.

    Args:
        name: the interpreter.
        cache: the cache folder.
        run_dir: ``hydra.run.dir``.
        extra: more overrides.
        threads: OpenMP/BLAS threads of the job (0 = the environment's).

    Returns:
        (wall seconds of the command, the job's result.json).
    """
    cmd = [
        sys.executable,
        "-m",
        "coreset_interp.run",
        f"interpreter={name}",
        "selector=random",
        "ratio=paper",
    ]
    cmd += ["logger=none", "progress=false", f"cache_dir={cache}", f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if threads > 0:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"job {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall, json.loads((run_dir / "result.json").read_text())


def missing_keys(result: dict[str, Any]) -> list[str]:
    """Args:
        result: a job's result.json.

    Returns:
        What a complete result of its interpreter lacks (empty when complete).
    """
    if result.get("status") != "completed":
        return [f"status={result.get('status')}: {result.get('error')}"]
    name = str(result.get("interpreter"))
    need = REQUIRED["common"] + REQUIRED.get(name, [])
    # Coverage compares a coreset with the full data, so only the ratio entries carry it.
    full_need = ["accuracy", *(k for k in REQUIRED.get(name, []) if k != "vebi_coverage_per_layer")]
    out = [f"full.{k}" for k in full_need if result["full"].get(k) is None]
    for e in result.get("ratios", []):
        out += [f"ratios[{e.get('percent')}].{k}" for k in need if k not in e or e[k] is None]
    if not result.get("ratios"):
        out.append("ratios")
    return out


def job_ratio(result: dict[str, Any], percent: int) -> float | None:
    """Args:
        result: a job's result.json.
        percent: a rho in percent.

    Returns:
        The job's t(rho)/t(full), selection included (the pipeline's cost), or None.
    """
    full = result["full"]["fit_seconds"]
    for e in result["ratios"]:
        if e["percent"] == percent and full > 0:
            return (e["fit_seconds"] + e["select_seconds"]) / full
    return None


def summarise_sweep(sweep: Path) -> None:
    """Print completeness and wall time of every job of a sweep folder.

    Args:
        sweep: a multirun folder.
    """
    rows = sorted(sweep.glob("*/result.json"))
    print(f"\n## sweep {sweep}: {len(rows)} jobs")
    print(f"{'job':>4} {'interpreter':>11} {'selector':>9} {'status':>10} {'wall s':>8}  missing")
    total = 0.0
    for path in rows:
        res = json.loads(path.read_text())
        cfg = res.get("config", {})
        miss = missing_keys(res)
        total += float(res.get("wall_seconds") or 0.0)
        print(
            f"{path.parent.name:>4} {cfg.get('interpreter', {}).get('name', '?'):>11} "
            f"{cfg.get('selector', {}).get('name', '?'):>9} {res.get('status'):>10} "
            f"{res.get('wall_seconds', float('nan')):8.1f}  {', '.join(miss[:5]) or '-'}"
        )
    print(f"sum of job wall times: {total:.1f} s")


def main() -> None:
    """Parse arguments, run the benchmark and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interpreters", default="ice,topic,vebi")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--percents", default="10,50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fit", action="store_true", help="skip the fit timings")
    parser.add_argument("--no-job", action="store_true", help="skip the job wall times")
    parser.add_argument("--sweep", type=Path, default=None, help="also check a finished sweep folder")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--threads", type=int, default=0, help="threads for torch and BLAS (0 = leave as is)")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides for the jobs")
    args = parser.parse_args()
    names = [n for n in args.interpreters.split(",") if n]
    percents = [int(p) for p in args.percents.split(",") if p]
    cache_dir = args.cache_dir.resolve()
    report: dict[str, Any] = {"load_start": os.getloadavg()[0], "threads": args.threads}
    if args.threads > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)

    fits: dict[str, dict[str, Any]] = {}
    if not args.no_fit:
        print(f"# fit timings, median of {args.repeats} ({load()})", flush=True)
        fits = time_fits(names, cache_dir, percents, args.repeats, args.seed)
    jobs: dict[str, tuple[float, dict[str, Any]]] = {}
    if not args.no_job:
        with tempfile.TemporaryDirectory(prefix="bench_interp_") as tmp:
            cache = shared_cache(cache_dir, Path(tmp))
            for name in names:
                print(f"# job interpreter={name} ({load()})", flush=True)
                jobs[name] = run_job(name, cache, Path(tmp) / name, args.extra, args.threads)

    head = f"{'interpreter':>11} {'prepare s':>9} {'t(full) s':>9}"
    for p in percents:
        head += f" {f't({p}%)/t(full)':>14} {'target':>7}"
    head += f" {'job wall s':>10}" + "".join(f" {f'job {p}%':>8}" for p in percents)
    threads = f", {args.threads} thread(s)" if args.threads else ""
    print(f"\n## cost on the embedded default ({load()}{threads})\n{head}")
    for name in names:
        line = f"{name:>11}"
        if name in fits:
            f = fits[name]
            t_full = f["fit_seconds"][100]
            line += f" {f['prepare_seconds']:9.2f} {t_full:9.3f}"
            for p in percents:
                ratio = f["fit_seconds"][p] / t_full
                target = 1.2 * p / 100 + 0.05
                verdict = ("ok" if ratio <= target else "MISS") if name != "topic" else "n/a"
                line += f" {ratio:14.3f} {verdict:>7}"
        else:
            line += f" {'-':>9} {'-':>9}" + f" {'-':>14} {'-':>7}" * len(percents)
        if name in jobs:
            wall, res = jobs[name]
            line += f" {wall:10.1f}"
            for p in percents:
                r = job_ratio(res, p)
                line += f" {r:8.3f}" if r is not None else f" {'-':>8}"
            miss = missing_keys(res)
            if miss:
                line += f"  INCOMPLETE: {', '.join(miss[:5])}"
        print(line)
    report["fits"] = {n: {k: v for k, v in f.items()} for n, f in fits.items()}
    report["jobs"] = {
        n: {"wall": w, "ratios": {p: job_ratio(r, p) for p in percents}, "full": r["full"]}
        for n, (w, r) in jobs.items()
    }
    report["load_end"] = os.getloadavg()[0]
    if args.sweep is not None:
        summarise_sweep(args.sweep)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
