"""Coreset selectors: ``get_selector(name, **params).select(features, labels, ratio, seed)``.

Every method lives in its own module and registers itself in :data:`SELECTORS` under the name of its
YAML file in ``conf/selector/``. Definitions: ``SPEC.md`` section 1.
"""

from __future__ import annotations

from typing import Any

# Imported for their registration side effect; the order does not matter.
from coreset_interp.selectors import (  # noqa: F401
    dgpruning,
    full,
    kcenter,
    kernel_thinning,
    moderate,
    random,
    transfer,
)
from coreset_interp.selectors.base import SELECTORS, Selector, class_budget

__all__ = ["SELECTORS", "Selector", "class_budget", "get_selector", "list_selectors"]


def get_selector(name: str, **params: Any) -> Selector:
    """Build a registered selector.

    Args:
        name: one of :func:`list_selectors` (``full``, ``random``, ``moderate``, ``dgpruning``, ``kcenter``,
            ``kernel_thinning``, plus any registered elsewhere).
        **params: the selector's fields (its YAML's flat fields besides ``name``).

    Returns:
        The selector.

    Raises:
        RegistryError: for an unknown name or field (one line listing the valid ones).
    """
    return SELECTORS.get(name, **params)


def list_selectors() -> list[str]:
    """Returns:
    The registered selector names, sorted.
    """
    return SELECTORS.names()
