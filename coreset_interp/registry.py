"""A small name -> factory registry, one per config group.

Each config group (``selector``, ``interpreter``, ``model``, ``dataset``, ``logger``) owns one
:class:`Registry`; the registered names equal the YAML file names in ``conf/<group>/`` (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories for one config group.

    Args:
        group: the config group's name, used in error messages.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory (usually a class) under ``name``.

        Args:
            name: the registry key; must equal the YAML file name in ``conf/<group>/``.

        Returns:
            The decorator, which returns the factory unchanged.
        """

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.group} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        """Returns:
        The registered names, sorted.
        """
        return sorted(self._factories)

    def get(self, name: str, **params: object) -> T:
        """Build the entry ``name`` with keyword parameters.

        Args:
            name: a registered name.
            **params: passed to the factory.

        Returns:
            The built object.

        Raises:
            ValueError: if ``name`` is not registered (the message lists the valid names).
        """
        if name not in self._factories:
            raise ValueError(f"unknown {self.group} {name!r}; choose one of: {', '.join(self.names())}")
        return self._factories[name](**params)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
