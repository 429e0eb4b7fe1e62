"""Interpretation methods: ``get_interpreter(name, **params)``, one module and one YAML per method.

Every method lives in its own module and registers itself in :data:`INTERPRETERS` under its module's
name, the name of its YAML file in ``conf/interpreter/``.
"""

from __future__ import annotations

from typing import Any

# Imported for their registration side effect; the order does not matter.
from coreset_interp.interpreters import ice, topic, vebi  # noqa: F401
from coreset_interp.interpreters.base import INTERPRETERS, ClassPhi, InterpretContext, Interpreter
from coreset_interp.interpreters.ice import ICE
from coreset_interp.interpreters.topic import Topic
from coreset_interp.interpreters.vebi import VEBI


def get_interpreter(name: str, **params: Any) -> Interpreter:
    """Build a registered interpretation method.

    Args:
        name: one of :func:`list_interpreters` (``ice``, ``topic``, ``vebi``).
        **params: the method's fields (its YAML's flat fields besides ``name``).

    Returns:
        The interpreter.

    Raises:
        RegistryError: for an unknown name or field (one line listing the valid ones).
    """
    return INTERPRETERS.get(name, **params)


def list_interpreters() -> list[str]:
    """Returns:
    The registered interpreter names, sorted.
    """
    return INTERPRETERS.names()


__all__ = [
    "ICE",
    "INTERPRETERS",
    "VEBI",
    "ClassPhi",
    "InterpretContext",
    "Interpreter",
    "Topic",
    "get_interpreter",
    "list_interpreters",
]
