"""Manifests: every format yields the same items and keys; keys follow content and request, not location."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from agent.config import ImageLimits
from agent.jobs.manifest import ManifestError, content_id, iter_items


def _items(path: Path, **kw):
    return list(iter_items(path, style=kw.pop("style", "alt_text"), locale=kw.pop("locale", "en-US"), **kw))


@pytest.fixture()
def photos(tmp_path, images_dir) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copy(images_dir / name, folder / name)
    (folder / "README.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes((images_dir / "coffee.jpg").read_bytes())
    return folder


def test_folder_lists_images_sorted_and_skips_other_files(photos):
    items = _items(photos)
    assert [Path(i.source).name for i in items] == ["chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert all(i.error is None and Path(i.source).is_absolute() for i in items)
    assert len({i.key for i in items}) == 3


def test_key_depends_on_content_and_request_not_on_path(photos, tmp_path):
    first = {Path(i.source).name: i.key for i in _items(photos)}
    moved = tmp_path / "elsewhere"
    shutil.copytree(photos, moved)
    (moved / "chelsea.jpg").rename(moved / "cat.jpg")
    second = {Path(i.source).name: i.key for i in _items(moved)}
    assert second["cat.jpg"] == first["chelsea.jpg"]  # same bytes, same request
    assert second["coffee.jpg"] == first["coffee.jpg"]
    german = {Path(i.source).name: i.key for i in _items(photos, locale="de-DE")}
    assert not set(german.values()) & set(first.values())


def test_jsonl_csv_parquet_give_the_same_items(photos, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"image": "photos/chelsea.jpg", "sku": "CAT-1", "style": "seo_product"},
            {"image": "photos/coffee.jpg", "locale": "fr-FR", "id": "row-2"},
            {"image": str(photos / "rocket.jpg"), "n_candidates": 3, "max_chars": 80}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "sku", "style", "locale", "id", "n_candidates",
                                                "max_chars"])
        writer.writeheader()
        writer.writerows(rows)
    columns = ["image", "sku", "style", "locale", "id", "n_candidates", "max_chars"]
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), tmp_path / "m.parquet")
    got = {fmt: _items(tmp_path / f"m.{fmt}") for fmt in ("jsonl", "csv", "parquet")}
    assert got["jsonl"] == got["csv"] == got["parquet"]
    items = got["jsonl"]
    assert items[0].style == "seo_product" and items[0].sku == "CAT-1" and items[0].locale == "en-US"
    assert items[1].locale == "fr-FR" and items[1].id == "row-2" and items[1].style == "alt_text"
    assert items[2].n_candidates == 3 and items[2].max_chars == 80
    assert items[0].request().hint.sku == "CAT-1"


def test_caller_id_splits_the_key_but_not_the_cache_key(photos, tmp_path):
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"image": "photos/coffee.jpg", "id": "a"}, {"image": "photos/coffee.jpg", "id": "b"},
        {"image": "photos/coffee.jpg"}, {"image": "photos/coffee.jpg"}]))
    a, b, c, d = _items(tmp_path / "m.jsonl")
    assert len({a.key, b.key, c.key}) == 3 and c.key == d.key  # without ids, a repeat is the same item
    assert a.cache_key == b.cache_key == c.cache_key


def test_bad_rows_become_error_items_with_stable_keys(tmp_path, images_dir):
    shutil.copy(images_dir / "coffee.jpg", tmp_path / "ok.jpg")
    (tmp_path / "m.jsonl").write_text('{"image": "ok.jpg"}\n{not json\n[1, 2]\n{"image": "ok.jpg", "locle": "de"}\n'
                                      '{"sku": "X"}\n"ok.jpg"\n')
    items = _items(tmp_path / "m.jsonl")
    errors = [i for i in items if i.error]
    assert [i.row for i in errors] == [1, 2, 3, 4]
    assert "not valid JSON" in errors[0].error["message"]
    assert "locle" in errors[2].error["message"] and "Fix:" in errors[2].error["message"]
    assert "image" in errors[3].error["message"]
    assert items[5].error is None and items[5].key == items[0].key  # a bare path line is a row too
    assert [i.key for i in _items(tmp_path / "m.jsonl")] == [i.key for i in items]


def test_content_id_marks_files_that_cannot_be_hashed(tmp_path, images_dir):
    limits = ImageLimits(max_bytes=1000)
    (tmp_path / "empty.jpg").write_bytes(b"")
    shutil.copy(images_dir / "coffee.jpg", tmp_path / "big.jpg")
    assert content_id(str(tmp_path / "nope.jpg"), limits).startswith("missing:")
    assert content_id(str(tmp_path / "empty.jpg"), limits).startswith("empty:")
    assert content_id(str(tmp_path / "big.jpg"), limits).startswith("oversize:")
    assert content_id(str(tmp_path / "big.jpg"), ImageLimits()).startswith("sha256:")


def test_unknown_manifest_type_and_missing_manifest_say_the_fix(tmp_path):
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ManifestError, match="Fix:"):
        _items(tmp_path / "m.xlsx")
    with pytest.raises(ManifestError, match="does not exist"):
        _items(tmp_path / "missing.jsonl")
