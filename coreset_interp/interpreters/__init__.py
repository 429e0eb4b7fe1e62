"""Interpretation methods, one registry entry per YAML in ``conf/interpreter/``."""

from __future__ import annotations

from typing import Any

from coreset_interp.interpreters.base import ClassPhi, InterpretContext, Interpreter
from coreset_interp.interpreters.ice import ICE
from coreset_interp.interpreters.topic import Topic
from coreset_interp.interpreters.vebi import VEBI
from coreset_interp.registry import Registry

INTERPRETERS: Registry[Interpreter] = Registry("interpreter")
INTERPRETERS.register("ice")(ICE)
INTERPRETERS.register("topic")(Topic)
INTERPRETERS.register("vebi")(VEBI)


def get_interpreter(name: str, **params: Any) -> Interpreter:
    """Build an interpretation method.

    Args:
        name: ``ice``, ``topic`` or ``vebi``.
        **params: the method's hyperparameters (the YAML's ``params``).

    Returns:
        The interpreter.
    """
    return INTERPRETERS.get(name, **params)


def list_interpreters() -> list[str]:
    """Returns:
    The registered names.
    """
    return INTERPRETERS.names()


__all__ = [
    "INTERPRETERS",
    "ClassPhi",
    "InterpretContext",
    "Interpreter",
    "get_interpreter",
    "list_interpreters",
]
