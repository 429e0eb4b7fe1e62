"""``coreset-interp-cache``: inspect and clean the artifact cache, safely while jobs run.

    coreset-interp-cache ls [--kind fit]          artifacts by kind: size, age, the spec that made them
    coreset-interp-cache du                       disk use per kind (and leftovers of killed writers)
    coreset-interp-cache verify                   check every artifact against its manifest
    coreset-interp-cache gc --older-than 30d      remove artifacts built more than 30 days ago
    coreset-interp-cache gc --unused-by SWEEP...  remove what no listed sweep's result.json uses

``gc`` takes each artifact's lock before removing it and skips one whose lock is held (a job is building
or repairing it), naming the holder; a listed sweep with running jobs stops ``--unused-by`` (their artifacts
are only recorded when they finish). Also runnable as ``python -m coreset_interp.cache_cli``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreset_interp.cache import ArtifactCache, LockTimeoutError, tmp_owner_alive
from coreset_interp.humanize import human_size
from coreset_interp.jobstate import liveness
from coreset_interp.locks import parse_duration
from coreset_interp.manifest import has_manifest, verify_manifest

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
_LEFTOVERS = (".tmp-", ".damaged-", ".trash-")


@dataclass(frozen=True)
class Artifact:
    """One published artifact folder.

    Attributes:
        kind: its kind (folder below the cache root).
        key: its key.
        path: its folder.
    """

    kind: str
    key: str
    path: Path

    def size(self) -> int:
        """Returns:
        Bytes of all its files.
        """
        return folder_size(self.path)

    def age(self, now: float | None = None) -> float:
        """Returns:
        Seconds since it was published.
        """
        return (time.time() if now is None else now) - self.path.stat().st_mtime

    def spec(self) -> dict[str, Any]:
        """Returns:
        The specification that made it (``spec.json``), empty when unreadable.
        """
        try:
            spec = json.loads((self.path / "spec.json").read_text())
            return spec if isinstance(spec, dict) else {}
        except (OSError, ValueError):
            return {}


def folder_size(path: Path) -> int:
    """Args:
        path: a folder.

    Returns:
        Bytes of the files below it (files vanishing meanwhile count 0).
    """
    total = 0
    for child in path.rglob("*"):
        try:
            if child.is_file():
                total += child.stat().st_size
        except OSError:
            continue
    return total


def artifacts(root: Path, kinds: Sequence[str] | None = None) -> Iterator[Artifact]:
    """The published artifacts of a cache, by kind then key.

    Args:
        root: the cache folder.
        kinds: only these kinds (None = all).

    Yields:
        Each artifact.
    """
    if not root.is_dir():
        return
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if kinds and kind_dir.name not in kinds:
            continue
        for path in sorted(p for p in kind_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield Artifact(kind_dir.name, path.name, path)


def leftovers(root: Path) -> Iterator[Path]:
    """Temporary, damaged and half-removed folders (``.tmp-*``, ``.damaged-*``, ``.trash-*``).

    Args:
        root: the cache folder.

    Yields:
        Each such folder.
    """
    if root.is_dir():
        for kind_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from sorted(p for p in kind_dir.iterdir() if p.is_dir() and p.name.startswith(_LEFTOVERS))


def human_age(seconds: float) -> str:
    """Args:
        seconds: an age.

    Returns:
        ``45s`` / ``12m`` / ``3.5h`` / ``9.0d``.
    """
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def spec_summary(spec: dict[str, Any], width: int = 90) -> str:
    """The spec in one short line: scalars as ``key=value``, nested configs by their ``name``.

    Args:
        spec: an artifact's specification.
        width: at most this many characters.

    Returns:
        The line.
    """
    parts = []
    for key in sorted(spec):
        value = spec[key]
        if isinstance(value, dict):
            if "name" in value:
                parts.append(f"{key}={value['name']}")
        elif isinstance(value, list):
            parts.append(f"{key}=[{len(value)}]")
        elif not (isinstance(value, str) and len(value) > 24):
            parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def used_keys(sweeps: Sequence[Path]) -> tuple[set[tuple[str, str]], list[str]]:
    """The artifacts the jobs of some sweeps recorded, and the jobs still running.

    Args:
        sweeps: sweep (or job) folders.

    Returns:
        ((kind, key) pairs from every result.json ``artifacts`` list, names of jobs still running).
    """
    used: set[tuple[str, str]] = set()
    running: list[str] = []
    for sweep in sweeps:
        for path in Path(sweep).rglob("result.json"):
            if "wandb" in path.parts:
                continue
            try:
                payload = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(payload, dict):
                continue
            if liveness(payload) == "running":
                running.append(str(path.parent))
            for rec in payload.get("artifacts") or []:
                if isinstance(rec, dict) and "kind" in rec and "key" in rec:
                    used.add((str(rec["kind"]), str(rec["key"])))
    return used, running


def cmd_ls(cache: ArtifactCache, args: argparse.Namespace) -> int:
    now = time.time()
    rows = list(artifacts(cache.root, args.kind))
    if args.json:
        out = [
            {"kind": a.kind, "key": a.key, "bytes": a.size(), "age_seconds": round(a.age(now), 1),
             "verified": has_manifest(a.path), "spec": a.spec()}
            for a in rows
        ]  # fmt: skip
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"{'KIND':<14} {'KEY':<22} {'SIZE':>10} {'AGE':>7}  MADE BY")
    for a in rows:
        print(f"{a.kind:<14} {a.key:<22} {human_size(a.size()):>10} {human_age(a.age(now)):>7}  "
              f"{spec_summary(a.spec())}")  # fmt: skip
    print(f"{len(rows)} artifacts in {cache.root}")
    return 0


def cmd_du(cache: ArtifactCache, args: argparse.Namespace) -> int:
    per_kind: dict[str, list[int]] = {}
    for a in artifacts(cache.root, args.kind):
        entry = per_kind.setdefault(a.kind, [0, 0])
        entry[0] += 1
        entry[1] += a.size()
    for kind, (count, size) in sorted(per_kind.items()):
        print(f"{kind:<14} {count:>6} artifacts {human_size(size):>10}")
    extra = [folder_size(p) for p in leftovers(cache.root)]
    if extra:
        print(f"{'leftovers':<14} {len(extra):>6} folders   {human_size(sum(extra)):>10}  "
              "(killed writers, damaged copies: `gc` removes them)")  # fmt: skip
    total = sum(s for _, s in per_kind.values()) + sum(extra)
    count = sum(c for c, _ in per_kind.values())
    print(f"{'total':<14} {count:>6} artifacts {human_size(total):>10}  {cache.root}")
    return 0


def cmd_verify(cache: ArtifactCache, args: argparse.Namespace) -> int:
    ok = unverified = 0
    damaged: list[str] = []
    for a in artifacts(cache.root, args.kind):
        if not has_manifest(a.path):
            unverified += 1
            if args.verbose:
                print(f"unverified {a.kind}/{a.key}: no manifest (published before manifests)")
            continue
        problem = verify_manifest(a.path)
        if problem is None:
            ok += 1
            if args.verbose:
                print(f"ok         {a.kind}/{a.key}")
        else:
            damaged.append(problem)
            print(f"DAMAGED    {a.kind}/{a.key}: {problem}")
    hint = "; the next job that needs a damaged one rebuilds it (cache.on_damaged=rebuild)" if damaged else ""
    print(f"{ok} ok, {len(damaged)} damaged, {unverified} unverified (no manifest) in {cache.root}{hint}")
    return 1 if damaged else 0


def _remove(path: Path) -> None:
    """Rename out of the way first (one atomic step), then delete: a reader never sees half a folder."""
    aside = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def cmd_gc(cache: ArtifactCache, args: argparse.Namespace) -> int:
    if args.older_than is None and not args.unused_by:
        print("error: gc needs --older-than DURATION and/or --unused-by SWEEP_DIR", file=sys.stderr)
        return 2
    older = parse_duration(args.older_than, "--older-than") if args.older_than is not None else None
    used: set[tuple[str, str]] | None = None
    if args.unused_by:
        used, running = used_keys([Path(p) for p in args.unused_by])
        if running and not args.force:
            print(f"error: {len(running)} job(s) of the listed sweeps are still running (e.g. {running[0]}); "
                  "their artifacts are recorded when they finish: rerun gc then, or pass --force",
                  file=sys.stderr)  # fmt: skip
            return 2
    now = time.time()
    removed = skipped = 0
    freed = 0
    for a in artifacts(cache.root, args.kind):
        if older is not None and a.age(now) < older:
            continue
        if used is not None and (a.kind, a.key) in used:
            continue
        size = a.size()
        if args.dry_run:
            print(f"would remove {a.kind}/{a.key} ({human_size(size)}, {human_age(a.age(now))})")
            removed, freed = removed + 1, freed + size
            continue
        try:
            with cache.lock(a.kind, a.key):
                if a.path.is_dir():
                    _remove(a.path)
        except LockTimeoutError as err:
            skipped += 1
            print(f"kept {a.kind}/{a.key}: in use ({str(err).split(' held by ', 1)[-1].split(';')[0]})")
            continue
        removed, freed = removed + 1, freed + size
        print(f"removed {a.kind}/{a.key} ({human_size(size)})")
    for path in leftovers(cache.root):
        # A live writer's temporary folder is never touched; dead ones (and damaged copies) always go.
        if path.name.startswith(".tmp-") and tmp_owner_alive(path) is True:
            local = path.name.endswith(f"@{socket.gethostname()}")
            # Another host's writer cannot be checked from here: its folder goes only once old enough.
            if local or older is None or now - path.stat().st_mtime < older:
                continue
        size = folder_size(path)
        if args.dry_run:
            print(f"would remove leftover {path.parent.name}/{path.name} ({human_size(size)})")
        else:
            shutil.rmtree(path, ignore_errors=True)
        freed += size
    verb = "would free" if args.dry_run else "freed"
    print(
        f"{'would remove' if args.dry_run else 'removed'} {removed} artifacts, kept {skipped} in use; "
        f"{verb} {human_size(freed)} in {cache.root}"
    )
    return 0


def default_cache_dir() -> str:
    """Returns:
    ``cache_dir`` of ``conf/config.yaml`` (relative to the current folder, as the runner resolves it).
    """
    from omegaconf import OmegaConf

    return str(OmegaConf.load(CONF_DIR / "config.yaml")["cache_dir"])


def build_parser() -> argparse.ArgumentParser:
    """Returns:
    The command's argument parser.
    """
    parser = argparse.ArgumentParser(prog="coreset-interp-cache", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cache-dir", default=None, help="the cache folder (default: cache_dir of conf/config.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("ls", "list artifacts"), ("du", "disk use per kind"), ("verify", "check manifests"),
                       ("gc", "remove old or unused artifacts")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("--kind", action="append", help="only this kind (repeatable)")
        if name == "ls":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "verify":
            p.add_argument("-v", "--verbose", action="store_true", help="also list sound artifacts")
        if name == "gc":
            p.add_argument(
                "--older-than", default=None, help="built longer ago than this (30d, 12h, seconds)"
            )
            p.add_argument("--unused-by", nargs="+", default=[], metavar="SWEEP_DIR",
                           help="remove what no result.json below these folders used")  # fmt: skip
            p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
            p.add_argument("--force", action="store_true", help="--unused-by even while listed jobs run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit status: 0, 1 when ``verify`` found damage, 2 on a usage error.
    """
    args = build_parser().parse_args(argv)
    root = Path(args.cache_dir or default_cache_dir()).expanduser()
    if root.exists() and not root.is_dir():
        print(f"error: cache folder {root} is a file", file=sys.stderr)
        return 2
    # gc never waits for a lock: a held one means a job is using that artifact right now.
    cache = ArtifactCache(root, lock_timeout=0)
    commands = {"ls": cmd_ls, "du": cmd_du, "verify": cmd_verify, "gc": cmd_gc}
    return commands[args.command](cache, args)


if __name__ == "__main__":
    sys.exit(main())
