"""Manifests: every format yields the same items and keys; a key is one input row (origin, id, content, request),
a cache key is content and request only; unreadable rows (bad JSON, too deep, too long) become error items."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from caption_agent.config import ImageLimits
from caption_agent.jobs.manifest import ManifestError, content_id, iter_items


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


def test_key_follows_relative_path_content_and_request(photos, tmp_path, images_dir):
    first = {Path(i.source).name: i for i in _items(photos)}
    moved = tmp_path / "elsewhere"
    shutil.copytree(photos, moved)
    (moved / "chelsea.jpg").rename(moved / "cat.jpg")
    shutil.copy(images_dir / "flower.jpg", moved / "rocket.jpg")  # same name, new bytes
    second = {Path(i.source).name: i for i in _items(moved)}
    assert second["coffee.jpg"].key == first["coffee.jpg"].key  # moving the folder keeps keys (relative paths)
    assert second["cat.jpg"].key != first["chelsea.jpg"].key  # another row (renamed file) ...
    assert second["cat.jpg"].cache_key == first["chelsea.jpg"].cache_key  # ... asking the same computation
    assert second["rocket.jpg"].key != first["rocket.jpg"].key  # a changed file is recomputed
    german = {Path(i.source).name: i.key for i in _items(photos, locale="de-DE")}
    assert not set(german.values()) & {i.key for i in first.values()}


def test_byte_copies_in_a_folder_are_separate_rows_sharing_a_cache_key(tmp_path, images_dir):
    folder = tmp_path / "copies"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "sub/a.jpg"):
        shutil.copy(images_dir / "coffee.jpg", folder / name)
    items = _items(folder)
    assert len(items) == 3 and len({i.key for i in items}) == 3 and len({i.cache_key for i in items}) == 1


def test_jsonl_csv_parquet_give_the_same_items(photos, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"image": "photos/chelsea.jpg", "sku": "CAT-1", "style": "seo_product"},
        {"image": "photos/coffee.jpg", "locale": "fr-FR", "id": "row-2"},
        {"image": str(photos / "rocket.jpg"), "n_candidates": 3, "max_chars": 80},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "sku", "style", "locale", "id", "n_candidates", "max_chars"])
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
    (tmp_path / "m.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"image": "photos/coffee.jpg", "id": "a"},
                {"image": "photos/coffee.jpg", "id": "b"},
                {"image": "photos/coffee.jpg"},
                {"image": "photos/coffee.jpg"},
            ]
        )
    )
    a, b, c, d = _items(tmp_path / "m.jsonl")
    assert len({a.key, b.key, c.key, d.key}) == 4  # an exact repeat is another row (another row number)
    assert a.cache_key == b.cache_key == c.cache_key == d.cache_key
    again = _items(tmp_path / "m.jsonl")
    assert [i.key for i in again] == [i.key for i in (a, b, c, d)]  # stable across runs


def test_bad_rows_become_error_items_with_stable_keys(tmp_path, images_dir):
    shutil.copy(images_dir / "coffee.jpg", tmp_path / "ok.jpg")
    (tmp_path / "m.jsonl").write_text(
        '{"image": "ok.jpg"}\n{not json\n[1, 2]\n{"image": "ok.jpg", "locle": "de"}\n{"sku": "X"}\n"ok.jpg"\n'
    )
    items = _items(tmp_path / "m.jsonl")
    errors = [i for i in items if i.error]
    assert [i.row for i in errors] == [1, 2, 3, 4]
    assert "not valid JSON" in errors[0].error["message"]
    assert "locle" in errors[2].error["message"] and "Fix:" in errors[2].error["message"]
    assert "image" in errors[3].error["message"]
    assert items[5].error is None and items[5].cache_key == items[0].cache_key  # a bare path line is a row too
    assert items[5].key != items[0].key
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


def test_bom_deep_nesting_and_overlong_lines_are_row_errors(tmp_path, images_dir, monkeypatch):
    from caption_agent.jobs import manifest_rows

    shutil.copy(images_dir / "coffee.jpg", tmp_path / "ok.jpg")
    monkeypatch.setattr(manifest_rows, "MAX_LINE_BYTES", 200_000)
    long_row = json.dumps({"image": "ok.jpg", "id": "x" * 300_000})
    path = tmp_path / "m.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + "\n".join(
            [
                '{"image": "ok.jpg", "id": "first"}',
                "[" * 100_000,
                '{"image": "ok.jpg", "id": %s}' % ("[" * 100_000),
                long_row,
                long_row + long_row + "\n" + '{"image": "ok.jpg", "id": "last"}',
            ]
        ).encode()
        + b"\n"
    )
    items = _items(path)
    assert [i.row for i in items] == [0, 1, 2, 3, 4, 5]
    assert items[0].error is None and items[0].id == "first"  # the BOM does not break the first row
    assert "cannot be parsed as JSON (RecursionError)" in items[1].error["message"]
    assert "RecursionError" in items[2].error["message"]
    assert "bytes long" in items[3].error["message"] and "bytes long" in items[4].error["message"]
    assert items[5].error is None and items[5].id == "last"  # reading went on after the long line
    assert len({i.key for i in items}) == 6


def test_bounded_lines_never_reads_past_the_bound(tmp_path):
    import io

    from caption_agent._iter import bounded_lines

    class Counting(io.BufferedReader):
        largest = 0

        def readline(self, size=-1):
            line = super().readline(size)
            Counting.largest = max(Counting.largest, len(line))
            return line

    path = tmp_path / "big.jsonl"
    path.write_bytes(b"a" * 5_000_000 + b"\nshort\n")
    with Counting(io.FileIO(path)) as fh:
        got = list(bounded_lines(fh, limit=1000))
    assert got == [(b"a" * 1000, 5_000_000), (b"short\n", 5)]
    assert Counting.largest <= 1 << 20


def test_csv_bom_and_an_oversized_cell_is_a_row_error(tmp_path, images_dir):
    shutil.copy(images_dir / "coffee.jpg", tmp_path / "ok.jpg")
    path = tmp_path / "m.csv"
    path.write_bytes(("\ufeffimage,id\nok.jpg,a\nok.jpg," + "x" * 200_000 + "\nok.jpg,c\n").encode())
    items = _items(path)
    assert [(i.row, i.id, bool(i.error)) for i in items] == [(0, "a", False), (1, None, True), (2, "c", False)]
    assert "CSV" in items[1].error["message"]
