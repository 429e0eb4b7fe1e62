"""A newcomer goes from any YAML name to its code in one step, and every registry group is built the same
way: for every YAML in ``conf/<group>/``, ``get_<group>(name)`` resolves to a class defined in the group's
package in a module named after the entry, the YAML is ``name`` plus flat fields the constructor takes
(explicit keyword arguments), and an unknown field is a one-line error listing the valid ones.

Which package each group uses (``ratio``, ``metric``, ``experiment``, launchers, tuning and the dataset
presets in ``dataset_defaults`` are plain config, not registries):

=========  ============================  ===================  =================
group      package (one module/entry)    registry             verbs
=========  ============================  ===================  =================
selector   ``coreset_interp.selectors``  ``SELECTORS``        ``get_selector``, ``list_selectors``
interpreter ``coreset_interp.interpreters`` ``INTERPRETERS`` ``get_interpreter``, ``list_interpreters``
model      ``coreset_interp.models``     ``MODELS``           ``get_model``, ``list_models``
dataset    ``coreset_interp.data``       ``DATASETS``         ``get_dataset``, ``list_datasets``
logger     ``coreset_interp.trackers``   ``TRACKERS``         ``get_logger``, ``list_loggers``
=========  ============================  ===================  =================
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from coreset_interp.data import DATASETS, get_dataset, list_datasets
from coreset_interp.interpreters import INTERPRETERS, get_interpreter, list_interpreters
from coreset_interp.models import MODELS, get_model, list_models
from coreset_interp.registry import Registry, RegistryError
from coreset_interp.selectors import SELECTORS, get_selector, list_selectors
from coreset_interp.trackers import TRACKERS, get_logger, list_loggers

CONF = Path(__file__).resolve().parents[1] / "conf"


class Group(NamedTuple):
    """One registry group: where its code lives and its verbs."""

    package: str
    registry: Registry[Any]
    get: Callable[..., Any]
    names: Callable[[], list[str]]


GROUPS: dict[str, Group] = {
    "selector": Group("coreset_interp.selectors", SELECTORS, get_selector, list_selectors),
    "interpreter": Group("coreset_interp.interpreters", INTERPRETERS, get_interpreter, list_interpreters),
    "model": Group("coreset_interp.models", MODELS, get_model, list_models),
    "dataset": Group("coreset_interp.data", DATASETS, get_dataset, list_datasets),
    "logger": Group("coreset_interp.trackers", TRACKERS, get_logger, list_loggers),
}
#: Entries cheap to build from their YAML alone (the others read data from disk).
BUILDABLE = {
    ("dataset", "digits"),
    *(("selector", n) for n in list_selectors()),
    *(("interpreter", n) for n in list_interpreters()),
    *(("model", n) for n in list_models()),
    *(("logger", n) for n in list_loggers()),
}


def _entries() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "name"), _entries(), ids=[f"{g}={n}" for g, n in _entries()])
def test_yaml_name_leads_to_its_module_and_flat_fields(group: str, name: str, make_config) -> None:
    spec = GROUPS[group]
    node = make_config([f"{group}={name}"])[group]
    assert node["name"] == name and name in spec.names()
    cls = spec.registry.factory(name)
    module = sys.modules[cls.__module__]
    assert cls.__module__ == f"{spec.package}.{name}", f"{group}={name} is defined in {cls.__module__}"
    assert Path(module.__file__).name == f"{name}.py" and cls.name == name
    params = inspect.signature(cls).parameters.values()
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params), "explicit keyword arguments"
    fields = {k: v for k, v in node.items() if k != "name"}
    assert "params" not in fields, f"conf/{group}/{name}.yaml still has a params block"
    assert set(fields) <= set(spec.registry.fields(name))
    spec.registry.check_fields(name, fields)
    if (group, name) in BUILDABLE:
        assert type(spec.get(**node)) is cls


@pytest.mark.parametrize(("group", "name"), _entries(), ids=[f"{g}={n}" for g, n in _entries()])
def test_unknown_field_is_one_line_listing_the_valid_ones(group: str, name: str) -> None:
    spec = GROUPS[group]
    with pytest.raises(RegistryError) as err:
        spec.get(name, no_such_field=1)
    message = str(err.value)
    valid = ", ".join(spec.registry.fields(name))
    assert message == f"{group} {name!r} has no field(s) 'no_such_field'; valid: {valid or '(none)'}"
    assert "\n" not in message


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_registered_entry_has_a_yaml(group: str) -> None:
    assert GROUPS[group].names() == sorted(p.stem for p in (CONF / group).glob("*.yaml"))
