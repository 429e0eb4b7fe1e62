"""The checked-in ``coreset_interp/method_versions.json`` matches the code: a method whose code changed
without a ``version`` bump fails here (its cache keys would reuse artifacts of the old code)."""

from __future__ import annotations

import shutil
from pathlib import Path

from coreset_interp import method_versions as mv
from coreset_interp.interpreters import list_interpreters
from coreset_interp.selectors import list_selectors


def test_record_matches_the_code() -> None:
    problems = mv.stale(mv.load(), mv.current())
    assert not problems, "\n".join(problems)


def test_record_lists_every_registered_method() -> None:
    expected = {f"selector/{n}" for n in list_selectors()} | {f"interpreter/{n}" for n in list_interpreters()}
    assert set(mv.load()) == expected


def test_docstrings_and_comments_do_not_change_the_hash() -> None:
    code = 'def f(x):\n    """Doc."""\n    # why\n    return x + 1\n'
    reworded = 'def f(x):\n    """Another doc, longer."""\n    return x + 1  # another comment\n'
    assert mv.normalised_source(code) == mv.normalised_source(reworded)
    assert mv.normalised_source(code) != mv.normalised_source(code.replace("x + 1", "x + 2"))


def test_a_changed_method_without_a_bump_is_caught(tmp_path: Path) -> None:
    """Hash a modified copy of a method module: same version, other hash -> the message asks for a bump."""
    sources = mv.code_sources("coreset_interp.selectors.moderate")
    # The module and the package code it imports (the selector base, the registry), not other methods.
    assert {"coreset_interp.selectors.moderate", "coreset_interp.selectors.base"} <= set(sources)
    assert "coreset_interp.selectors.dgpruning" not in sources
    original = Path(mv.__file__).parent / "selectors" / "moderate.py"
    copy = tmp_path / "moderate.py"
    shutil.copy(original, copy)
    copy.write_text(copy.read_text().replace("np.argsort(", "np.argsort(-"), encoding="utf-8")
    changed = dict(sources, **{"coreset_interp.selectors.moderate": mv.normalised_source(copy.read_text())})
    assert mv.hash_sources(changed) != mv.hash_sources(sources)

    recorded = {"selector/moderate": {"version": 1, "hash": mv.hash_sources(sources)}}
    now = {"selector/moderate": {"version": 1, "hash": mv.hash_sources(changed)}}
    (problem,) = mv.stale(recorded, now)
    assert "bump `version` of selector/moderate" in problem and "scripts/update_method_versions.py" in problem
    # A bump alone is not enough: the record must be rewritten by the script.
    bumped = {"selector/moderate": {"version": 2, "hash": mv.hash_sources(changed)}}
    (problem,) = mv.stale(recorded, bumped)
    assert "run scripts/update_method_versions.py" in problem
    assert mv.stale(bumped, bumped) == []


def test_an_imported_package_module_is_part_of_the_hash() -> None:
    """A change in the selector base (imported by every selector) changes every selector's hash."""
    sources = mv.code_sources("coreset_interp.selectors.kcenter")
    changed = dict(
        sources, **{"coreset_interp.selectors.base": sources["coreset_interp.selectors.base"] + "\nX = 1"}
    )
    assert mv.hash_sources(changed) != mv.hash_sources(sources)
