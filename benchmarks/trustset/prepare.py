"""Fetch the trust evaluation photos from their Debian packages and write downscaled copies.

Each package in photos.json is fetched with ``apt-get download`` (nothing is installed; run ``apt-get update``
once first) and unpacked with ``dpkg -x`` into ``<cache>/debs``; each photo is then written, its longest side at
most 768 px, to ``<cache>/images/<id>.jpg``. Nothing is committed: the manifest names every file and licence.

    python benchmarks/trustset/prepare.py [--cache .cache/trustset] [--split tune|final|all]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = Path(__file__).resolve().parent / "photos.json"
DEFAULT_CACHE = ROOT / ".cache" / "trustset"
SIDE = 768


def load_manifest(path: Path = MANIFEST) -> list[dict[str, Any]]:
    """The labelled photos (see the manifest's ``about``)."""
    photos: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["photos"]
    return photos


def unpack(package: str, cache: Path) -> Path:
    """The root of ``package``'s files: an installed copy under / when present, else an unpacked download."""
    target = cache / "debs" / package
    if (target / ".done").is_file():
        return target
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if not list(downloads.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=downloads, check=True, capture_output=True)
    deb = sorted(downloads.glob(f"{package}_*.deb"))[-1]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
    (target / ".done").write_text(deb.name, encoding="utf-8")
    return target


def source_path(photo: dict[str, Any], cache: Path) -> Path:
    installed = Path("/") / photo["path"]
    return installed if installed.is_file() else unpack(photo["package"], cache) / photo["path"]


def prepare(photos: list[dict[str, Any]], cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """id -> downscaled JPEG path, fetching and converting only what is missing."""
    from PIL import Image

    out_dir = cache / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for photo in photos:
        out = out_dir / f"{photo['id']}.jpg"
        if not out.is_file():
            with Image.open(source_path(photo, cache)) as im:
                im.draft("RGB", (SIDE * 2, SIDE * 2))
                rgb = im.convert("RGB")
                rgb.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
                rgb.save(out.with_suffix(".tmp"), "JPEG", quality=90)
            out.with_suffix(".tmp").replace(out)
        paths[photo["id"]] = out
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--split", choices=["tune", "final", "all"], default="all")
    args = parser.parse_args(argv)
    photos = [p for p in load_manifest() if args.split in ("all", p["split"])]
    paths = prepare(photos, args.cache)
    print(f"{len(paths)} photos in {args.cache / 'images'}")
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
