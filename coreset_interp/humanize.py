"""Sizes as short text for the command-line tables (the cache CLI and the planner)."""

from __future__ import annotations


def human_size(n: float, base: int = 1024) -> str:
    """Args:
        n: bytes.
        base: 1024 (``KB``, the cache CLI: what ``du`` shows) or 1000 (``kB``, the planner: disk sizes as
            vendors quote them).

    Returns:
        ``12.3 MB`` style text.
    """
    kilo = "KB" if base == 1024 else "kB"
    for unit in ("B", kilo, "MB", "GB", "TB"):
        if abs(n) < base or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    return f"{n:.1f} TB"
