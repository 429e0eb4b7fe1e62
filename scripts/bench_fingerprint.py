"""Time an image folder's cache identity on a synthetic tree: one os.scandir walk with a stat per file
plus the listing digest, and the optional cheap broken-image scan (``dataset.on_bad_image=check|skip``).

The tree (``--files`` small JPEG-shaped files in ``--classes`` folders) is written to a temporary folder
and deleted afterwards. Times are also scaled linearly to ImageNet's 1.28M train images.

Usage: python scripts/bench_fingerprint.py --files 100000 [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from coreset_interp.data.files import check_files, listing_digest, scan_tree

IMAGENET_TRAIN = 1_281_167
# Start-of-image, a few bytes, end-of-image: passes the cheap check the way a whole JPEG does.
FAKE_JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 92 + b"\xff\xd9"


def build_tree(root: Path, files: int, classes: int) -> None:
    """Args:
    root: where to write.
    files: total number of files.
    classes: number of class folders.
    """
    per = -(-files // classes)
    n = 0
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(min(per, files - n)):
            with open(folder / f"n{c:08d}_{i}.JPEG", "wb") as fh:
                fh.write(FAKE_JPEG)
        n += min(per, files - n)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Args:
        argv: command-line arguments.

    Returns:
        The measured seconds and their 1.28M-file scaling.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dir", default=None, help="parent of the temporary tree (default: $TMPDIR)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fingerprint_", dir=args.dir))
    try:
        t0 = time.perf_counter()
        build_tree(tmp, args.files, args.classes)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, entries = scan_tree(tmp)
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        listing_digest(entries, [0] * len(entries))
        digest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bad = check_files(tmp, entries)
        check_s = time.perf_counter() - t0
        assert len(entries) == args.files and not bad
    finally:
        shutil.rmtree(tmp)
    scale = IMAGENET_TRAIN / args.files
    out = {
        "files": args.files,
        "build_seconds": build_s,
        "scan_seconds": scan_s,
        "digest_seconds": digest_s,
        "fingerprint_seconds": scan_s + digest_s,
        "fingerprint_seconds_at_1.28M": (scan_s + digest_s) * scale,
        "check_seconds": check_s,
        "check_seconds_at_1.28M": check_s * scale,
        "load_average": os.getloadavg()[0],
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
