"""A newcomer goes from any YAML name to its code in one step: for every registry group and every YAML
in ``conf/<group>/``, ``get_<group>(name)`` resolves to a class defined in
``coreset_interp/<package>/<name>.py``, the YAML is ``name`` plus flat constructor fields, and an unknown
field is a one-line error.

The table says which package each group uses and how its entries are built. (``ratio``, ``metric``,
``experiment``, launchers and tuning files are plain config, not registries.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coreset_interp.interpreters import INTERPRETERS, get_interpreter
from coreset_interp.registry import Registry, RegistryError
from coreset_interp.selectors import SELECTORS, get_selector
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Group:
    """One registry group: its package under ``coreset_interp/``, its registry and its builder verb."""

    package: str
    registry: Registry[Any]
    get: Callable[..., Any]


#: group (the folder in conf/) -> where its entries live. One row per registry group.
GROUPS: dict[str, Group] = {
    "selector": Group("selectors", SELECTORS, get_selector),
    "interpreter": Group("interpreters", INTERPRETERS, get_interpreter),
}

CASES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "name"), CASES, ids=[f"{g}={n}" for g, n in CASES])
def test_yaml_name_leads_to_its_module(group: str, name: str) -> None:
    row = GROUPS[group]
    built = row.get(name)
    cls = type(built)
    assert cls.__module__ == f"coreset_interp.{row.package}.{name}", (
        f"conf/{group}/{name}.yaml builds {cls.__module__}.{cls.__qualname__}, "
        f"not a class of coreset_interp/{row.package}/{name}.py"
    )
    assert built.name == name and row.registry.factory(name) is cls


@pytest.mark.parametrize(("group", "name"), CASES, ids=[f"{g}={n}" for g, n in CASES])
def test_yaml_is_flat_and_rejects_unknown_fields_in_one_line(group: str, name: str) -> None:
    row = GROUPS[group]
    node = compose_config([f"{group}={name}"])[group]
    fields = [k for k in node if k != "name"]
    assert "params" not in fields, f"conf/{group}/{name}.yaml still has a params block"
    assert set(fields) <= set(row.registry.fields(name))
    row.registry.build(node)
    with pytest.raises(RegistryError) as err:
        row.registry.build({**node, "not_a_field": 0})
    assert "\n" not in str(err.value) and "valid:" in str(err.value)
