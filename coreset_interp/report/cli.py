"""The ``coreset-interp-report SWEEP_DIR`` command (also ``python -m coreset_interp.report SWEEP_DIR``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from coreset_interp.report.build import build_report


def main(argv: Sequence[str] | None = None) -> int:
    """The ``coreset-interp-report`` command.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status (0, or 2 when the folder holds no result.json).
    """
    parser = argparse.ArgumentParser(
        prog="coreset-interp-report",
        description="Aggregate a (finished or partial) sweep folder into Table 1, the paper's figures and "
        "report.html.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder, e.g. outputs/multirun/<date>")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default SWEEP_DIR/report)")
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "offline", "online", "disabled"],
        help="log Table 1 as a wandb.Table; auto = as the jobs' logger config (default)",
    )
    parser.add_argument("--vebi-percent", type=int, default=None, help="rho (%%) of the VEBI units figure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.sweep_dir.is_dir():
        print(f"error: no such folder: {args.sweep_dir}", file=sys.stderr)
        return 2
    report = build_report(args.sweep_dir, args.out, args.wandb, args.vebi_percent)
    if not sum(report.counts.values()):
        print(f"error: no result.json below {args.sweep_dir}", file=sys.stderr)
        return 2
    print(f"jobs: {report.counts}")
    print(report.files["table1.md"].read_text())
    for name, path in report.files.items():
        print(f"{name}: {path}")
    if report.wandb_run is not None:
        print(f"W&B run: {report.wandb_run} (upload with `wandb sync {report.wandb_run}` when offline)")
    return 0
