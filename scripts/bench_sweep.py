"""What the artifact cache buys on a sweep: wall time of the ``quick`` sweep with a cold cache, with a warm
cache, and what it would cost without a cache, as ratios.

    .venv/bin/python scripts/bench_sweep.py                      # experiment=quick, joblib, 2 workers
    .venv/bin/python scripts/bench_sweep.py --launcher basic -- ratio.percents=[10]

1. cold: the sweep on an empty cache folder (model training included), timed end to end.
2. warm: the same sweep again on the now-full cache (a new sweep folder), timed end to end.
3. without a cache: every job would build every artifact it uses. From the cold sweep's result.json
   records: for each job, its wall time minus the time its cache uses took, plus the compute time of every
   artifact it used (taken from the job that computed it). Summed over jobs = sequential cost; divided by
   the number of workers = the ideal parallel wall time.

Prints a table and writes ``bench_sweep.json`` into the output folder.
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

REPO = Path(__file__).resolve().parents[1]


def run_sweep(sweep_dir: Path, cache_dir: Path, launcher: str, n_jobs: int, extra: list[str]) -> float:
    """Run the sweep once.

    Args:
        sweep_dir: ``hydra.sweep.dir``.
        cache_dir: the artifact cache.
        launcher: ``basic`` (sequential) or ``joblib``.
        n_jobs: joblib workers.
        extra: more overrides (``experiment=quick`` comes first, so these win).

    Returns:
        Wall seconds of the whole command (start-up, jobs and the report).
    """
    cmd = [sys.executable, "-m", "coreset_interp.run", "-m", "experiment=quick", "progress=false"]
    cmd += [f"cache_dir={cache_dir}", f"hydra.sweep.dir={sweep_dir}"]
    if launcher == "joblib":
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    cmd += extra
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=sweep_dir.parent, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (sweep_dir.parent / f"{sweep_dir.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}); log: {sweep_dir.parent / sweep_dir.name}.log")
    return wall


def job_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Args:
        sweep_dir: a sweep folder.

    Returns:
        Every job's result.json (excluding the report's folder).
    """
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))]


def no_cache_seconds(results: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """The sequential cost of the sweep if no artifact were shared.

    Args:
        results: the cold sweep's results (every artifact computed by one of its jobs).

    Returns:
        (total seconds, compute seconds per artifact kind as used by all jobs).
    """
    compute = {
        (r["kind"], r["key"]): float(r["seconds"])
        for res in results
        for r in res.get("artifacts", [])
        if r["computed"]
    }
    total = 0.0
    by_kind: dict[str, float] = {}
    for res in results:
        recs = res.get("artifacts", [])
        own = float(res.get("wall_seconds") or 0.0) - sum(float(r["seconds"]) for r in recs)
        total += max(own, 0.0)
        for r in recs:
            seconds = compute.get((r["kind"], r["key"]), float(r["seconds"]))
            total += seconds
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + seconds
    return total, by_kind


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: command-line arguments; overrides for the sweep follow ``--``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launcher", choices=["basic", "joblib"], default="joblib")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temporary one)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    if cache.exists() and any(cache.iterdir()):
        raise SystemExit(f"{cache} is not empty: the cold run needs an empty cache")
    workers = args.n_jobs if args.launcher == "joblib" else 1

    cold = run_sweep(out / "cold", cache, args.launcher, args.n_jobs, args.overrides)
    warm = run_sweep(out / "warm", cache, args.launcher, args.n_jobs, args.overrides)
    cold_results = job_results(out / "cold")
    failed = [r.get("job", {}).get("name") for r in cold_results if r.get("status") != "completed"]
    sequential, by_kind = no_cache_seconds(cold_results)
    nocache = sequential / workers
    computed = sum(r["computed"] for res in cold_results for r in res.get("artifacts", []))
    reused = sum(not r["computed"] for res in cold_results for r in res.get("artifacts", []))
    warm_computed = sum(r["computed"] for res in job_results(out / "warm") for r in res.get("artifacts", []))
    summary = {
        "launcher": args.launcher,
        "workers": workers,
        "jobs": len(cold_results),
        "failed_jobs": failed,
        "overrides": args.overrides,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "cold_seconds": cold,
        "warm_seconds": warm,
        "no_cache_sequential_seconds": sequential,
        "no_cache_seconds": nocache,
        "no_cache_seconds_by_kind": by_kind,
        "cold_artifacts_computed": computed,
        "cold_artifacts_reused": reused,
        "warm_artifacts_computed": warm_computed,
        "ratios": {
            "no_cache / cold": nocache / cold,
            "cold / warm": cold / warm,
            "no_cache / warm": nocache / warm,
        },
        "folder": str(out),
    }
    (out / "bench_sweep.json").write_text(json.dumps(summary, indent=1))
    print(f"\nquick sweep: {len(cold_results)} jobs, {args.launcher} launcher, {workers} worker(s)")
    if failed:
        print(f"failed jobs: {failed}")
    print(f"{'cold cache':<28}{cold:10.1f} s   ({computed} artifacts built, {reused} reused)")
    print(f"{'warm cache':<28}{warm:10.1f} s   ({warm_computed} artifacts built)")
    print(f"{'no cache (estimated)':<28}{nocache:10.1f} s   (sequential sum {sequential:.1f} s / {workers})")
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<26}{seconds:10.1f} s of that, summed over jobs")
    for name, value in summary["ratios"].items():
        print(f"{name:<28}{value:10.2f} x")
    print(f"details: {out / 'bench_sweep.json'}")
    print(f"reports: {out / 'cold' / 'report' / 'report.html'}, {out / 'warm' / 'report' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
