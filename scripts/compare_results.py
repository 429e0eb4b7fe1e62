"""Compare two result.json files number by number, ignoring what is not a result.

Ignored: timings (``*_seconds``, ``seconds``, ``speedup``, ``*_per_second``), the heartbeat, the code and
provenance, the config, the job's paths and names, the artifact records (keys and computed flags) and
anything named with ``--ignore``. Every other leaf is compared: numbers within ``--rtol``/``--atol``
(default: exactly equal), everything else exactly; a key present on one side only is a difference.

Usage::

    python scripts/compare_results.py BEFORE.json AFTER.json [--rtol 1e-9] [--atol 0] [--ignore PATTERN]

Prints each difference (dotted path, before, after) and a one-line verdict; exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

#: Dotted-path patterns (``fnmatch``: ``*`` spans dots) that are never compared; a list index is ``[i]``.
IGNORED: tuple[str, ...] = (
    "*seconds",
    "*seconds.*",
    "*speedup",
    "*_per_second",
    "heartbeat",
    "heartbeat.*",
    "code",
    "code.*",
    "provenance",
    "provenance.*",
    "config",
    "config.*",
    "job",
    "job.*",
    "artifacts",
    "artifacts*",
    "traceback",
)


def _ignored(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(path, p) for p in patterns)


def _leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        if not obj:
            yield path, []
        for i, value in enumerate(obj):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, obj


def _equal(a: Any, b: Any, rtol: float, atol: float) -> bool:
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, numeric) and isinstance(b, numeric)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def compare(
    before: Any, after: Any, rtol: float = 0.0, atol: float = 0.0, ignore: tuple[str, ...] = ()
) -> tuple[list[tuple[str, Any, Any]], int, int]:
    """Args:
        before: the first result.json payload.
        after: the second.
        rtol: relative tolerance for numbers.
        atol: absolute tolerance for numbers.
        ignore: more path patterns to skip.

    Returns:
        (differences as (path, before, after), leaves compared, numbers among them).
    """
    patterns = IGNORED + tuple(ignore)
    left = {p: v for p, v in _leaves(before) if not _ignored(p, patterns)}
    right = {p: v for p, v in _leaves(after) if not _ignored(p, patterns)}
    missing = object()
    diffs: list[tuple[str, Any, Any]] = []
    numbers = 0
    for path in sorted(set(left) | set(right)):
        a, b = left.get(path, missing), right.get(path, missing)
        if a is missing or b is missing:
            diffs.append((path, "<absent>" if a is missing else a, "<absent>" if b is missing else b))
            continue
        numbers += isinstance(a, int | float) and not isinstance(a, bool)
        if not _equal(a, b, rtol, atol):
            diffs.append((path, a, b))
    return diffs, len(set(left) | set(right)), numbers


def main(argv: list[str] | None = None) -> int:
    """Compare two result.json files.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when equal, 1 on a difference.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for numbers")
    parser.add_argument("--ignore", action="append", default=[], help="another dotted-path pattern to skip")
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    diffs, leaves, numbers = compare(before, after, args.rtol, args.atol, tuple(args.ignore))
    for path, a, b in diffs:
        print(f"{path}: {json.dumps(a, default=str)[:200]} -> {json.dumps(b, default=str)[:200]}")
    tol = f"rtol={args.rtol:g}, atol={args.atol:g}"
    if diffs:
        print(f"DIFFERENT: {len(diffs)} of {leaves} compared values differ ({numbers} numbers; {tol})")
        return 1
    print(f"EQUAL: all {leaves} compared values agree ({numbers} numbers; timings, paths ignored; {tol})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
