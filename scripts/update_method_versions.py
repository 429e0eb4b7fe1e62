"""Rewrite ``coreset_interp/method_versions.json`` from the code: per registered selector and interpreter,
its ``version`` and the hash of the code it runs (see :mod:`coreset_interp.method_versions`).

Run it after changing a method (and after bumping that method's ``version`` when its results change):

    .venv/bin/python scripts/update_method_versions.py
"""

from __future__ import annotations

from coreset_interp import method_versions


def main() -> None:
    """Rewrite the record and say what changed."""
    before = method_versions.load()
    after = method_versions.write()
    changed = [k for k in sorted(after) if before.get(k) != after[k]]
    print(f"{method_versions.RECORD}: {len(after)} methods, {len(changed)} changed")
    for key in changed:
        print(f"  {key}: version {after[key]['version']}")


if __name__ == "__main__":
    main()
