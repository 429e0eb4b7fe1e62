"""A small name -> class registry, one per config group (timm's ``register_model`` / ``create_model``).

Each config group (``selector``, ``interpreter``, ``model``, ``dataset``, ``logger``) owns one
:class:`Registry`, defined beside the group's base class. An entry registers itself with a decorator in
its own module, and its name is that module's name, so the YAML file ``conf/<group>/<name>.yaml``, the
module ``<package>/<name>.py`` and the registry key are one name written once (a test checks all three).

A group's YAML is ``name`` plus the entry's constructor arguments as flat fields; :meth:`Registry.build`
turns such a node into the object, and rejects a field the constructor does not take in one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown entry name or a field its constructor does not take (one line, valid choices listed)."""


class Registry(Generic[T]):
    """Maps names to factories (usually classes) for one config group.

    Args:
        group: the config group's name, used in error messages and in ``<group>.<field>`` paths.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, factory: Callable[..., T]) -> Callable[..., T]:
        """Class decorator: registers ``factory`` under its module's name and sets its ``name`` to it.

        Args:
            factory: a class defined in ``<package>/<name>.py``.

        Returns:
            ``factory`` unchanged except for its ``name`` attribute.

        Raises:
            ValueError: when that name is registered twice.
        """
        name = factory.__module__.rsplit(".", 1)[-1]
        if name in self._factories:
            raise ValueError(f"{self.group} {name!r} is registered twice")
        factory.name = name  # type: ignore[attr-defined]
        self._factories[name] = factory
        return factory

    def names(self) -> list[str]:
        """Returns:
        The registered names, sorted.
        """
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        """Args:
            name: a registered name.

        Returns:
            The registered class (not built).

        Raises:
            RegistryError: for an unknown name (the message lists the valid names).
        """
        if name not in self._factories:
            raise RegistryError(f"unknown {self.group} {name!r}; choose one of: {', '.join(self.names())}")
        return self._factories[name]

    def fields(self, name: str) -> list[str]:
        """Args:
            name: a registered name.

        Returns:
            The keyword arguments its constructor takes, in signature order (its valid YAML fields).
        """
        sig = inspect.signature(self.factory(name))
        return [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]

    def check_fields(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Reject fields that ``name``'s constructor does not take, in one line.

        Args:
            name: a registered name.
            kwargs: the fields of its YAML node besides ``name``.

        Raises:
            RegistryError: for the old ``<group>.params`` block (naming the new paths) or an unknown field
                (listing the valid ones).
        """
        valid = self.fields(name)
        if "params" in kwargs and "params" not in valid:
            inner = kwargs["params"]
            old = ", ".join(f"{self.group}.params.{k}" for k in inner) if isinstance(inner, Mapping) else ""
            new = ", ".join(f"{self.group}.{k}" for k in inner) if isinstance(inner, Mapping) else ""
            hint = f" ({old} -> {new})" if old else ""
            raise RegistryError(
                f"{self.group}.params is the old config shape: fields are flat now, "
                f"e.g. {self.group}.<field>=...{hint}"
            )
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            raise RegistryError(
                f"{self.group} {name!r} has no field(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )

    def get(self, name: str, **kwargs: Any) -> T:
        """Build the entry ``name`` from its flat fields.

        Args:
            name: a registered name.
            **kwargs: constructor arguments (the YAML's fields besides ``name``).

        Returns:
            The built object.

        Raises:
            RegistryError: for an unknown name or field.
        """
        self.check_fields(name, kwargs)
        return self.factory(name)(**kwargs)

    def build(self, node: Mapping[str, Any]) -> T:
        """Build an entry from its config node (``name`` plus flat constructor fields).

        Args:
            node: the group's resolved config, e.g. ``{"name": "dgpruning", "k": 5, "gamma_r": 0.1}``.

        Returns:
            The built object.

        Raises:
            RegistryError: when ``name`` is missing or unknown, or a field is unknown.
        """
        if "name" not in node:
            names = ", ".join(self.names())
            raise RegistryError(f"{self.group} config has no 'name'; choose one of: {names}")
        name, kwargs = split_node(node)
        return self.get(name, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def constructor_fields(cls: type) -> list[str]:
    """The fields an entry's ``params()`` reports: the keyword arguments of the nearest ``__init__`` in
    ``cls``'s MRO that lists them explicitly (a subclass taking ``**kwargs`` to pass them on, e.g. a test
    double, reports its parent's fields).

    Args:
        cls: a registered class or a subclass of one.

    Returns:
        The field names, in signature order.
    """
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        if any(p.kind == p.VAR_KEYWORD for p in params):
            continue
        return [
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
    return []


def split_node(node: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Args:
        node: a group's config node (``name`` plus flat fields).

    Returns:
        (name, the other fields).
    """
    return str(node["name"]), {k: v for k, v in node.items() if k != "name"}
