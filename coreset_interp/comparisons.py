"""Moved to :mod:`coreset_interp.metrics.compare` (kept so that old imports keep working)."""

from coreset_interp.metrics.compare import (  # noqa: F401
    BACKENDS,
    COMPARISON_DIR,
    COMPARISON_VERSION,
    ComparedFit,
    ComparisonLog,
    compare_class_outer,
    comparison_cache_size,
    comparison_key,
    resolve_backend,
)
