"""The code each selector and interpreter runs, hashed, beside the ``version`` its cache keys hold.

Every cached coreset, fit and evaluation is keyed by its method's ``version`` (a class attribute). When a
method's code changes and its results with it, the developer bumps that version so that stale artifacts
are not reused; ``method_versions.json`` (checked in beside this module) records, per registered method,
the version and a hash of the code it runs, and ``tests/test_method_versions.py`` fails when a hash changed
while the version did not. ``scripts/update_method_versions.py`` rewrites the file.

The hash covers the method's module and every ``coreset_interp`` module it imports, transitively (imports
inside functions too; those under ``if TYPE_CHECKING:`` are never run and are skipped), each with comments
and docstrings stripped (``ast``), so rewording a docstring needs no bump.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

PACKAGE = "coreset_interp"
#: The checked-in record.
RECORD = Path(__file__).with_name("method_versions.json")


def normalised_source(source: str) -> str:
    """Args:
        source: a module's Python source.

    Returns:
        The code without comments and docstrings (``ast.unparse`` of the tree).
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                # Keep the body non-empty: a function may consist of its docstring alone.
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def package_imports(name: str, source: str) -> set[str]:
    """The ``coreset_interp`` modules a module imports (directly).

    Args:
        name: the module's dotted name (to resolve relative imports).
        source: its source.

    Returns:
        Dotted module names; ``from pkg import sub`` counts ``pkg.sub`` when that is a module.
    """
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    is_package = Path(_module_file(name) or "").name == "__init__.py"
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}"))
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def code_sources(module: str) -> dict[str, str]:
    """Args:
        module: a ``coreset_interp`` module's dotted name.

    Returns:
        Dotted name -> normalised source of the module and of every package module it imports,
        transitively.
    """
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        source = path.read_text(encoding="utf-8")
        seen[name] = normalised_source(source)
        todo.extend(sorted(package_imports(name, source) - set(seen)))
    return seen


def hash_sources(sources: dict[str, str]) -> str:
    """Args:
        sources: dotted name -> normalised source (see :func:`code_sources`).

    Returns:
        Their sha256, in name order.
    """
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(f"{name}\n{sources[name]}\n".encode())
    return digest.hexdigest()


def code_hash(module: str) -> str:
    """Args:
        module: a ``coreset_interp`` module's dotted name.

    Returns:
        The hash of :func:`code_sources`.
    """
    return hash_sources(code_sources(module))


def current() -> dict[str, dict[str, Any]]:
    """Returns:
    ``"<group>/<name>" -> {"version", "hash"}`` for every registered selector and interpreter.
    """
    from coreset_interp.interpreters import INTERPRETERS
    from coreset_interp.selectors import SELECTORS

    out: dict[str, dict[str, Any]] = {}
    for registry in (SELECTORS, INTERPRETERS):
        for name in registry.names():
            cls: Any = registry.factory(name)
            out[f"{registry.group}/{name}"] = {"version": int(cls.version), "hash": code_hash(cls.__module__)}
    return out


def load(path: Path = RECORD) -> dict[str, dict[str, Any]]:
    """Args:
        path: the record.

    Returns:
        Its entries (empty when it does not exist).
    """
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write(path: Path = RECORD) -> dict[str, dict[str, Any]]:
    """Rewrite the record from the code.

    Args:
        path: the record.

    Returns:
        The entries written.
    """
    entries = current()
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return entries


def stale(recorded: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> list[str]:
    """What is out of date, one line each.

    Args:
        recorded: the checked-in entries.
        now: :func:`current`.

    Returns:
        An empty list when the record matches the code; else per method, what to do.
    """
    script = "scripts/update_method_versions.py"
    problems = []
    for key in sorted(set(recorded) | set(now)):
        old, new = recorded.get(key), now.get(key)
        if old is None or new is None:
            problems.append(f"{key} is {'new' if old is None else 'gone'}: run {script}")
        elif old["hash"] != new["hash"] and old["version"] == new["version"]:
            problems.append(
                f"{key}: its code changed; bump `version` of {key} if its results change, then run {script}"
            )
        elif old != new:
            problems.append(f"{key}: version or hash differs from the record: run {script}")
    return problems
