"""Product schema and readers: no model, no store."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from caption_agent.errors import CatalogError, CatalogRowError
from caption_agent.retrieval.catalog import detect_format, read_catalog
from caption_agent.retrieval.product import Product, RowRejected

ROOT = Path(__file__).resolve().parents[2]


def _split(items: list) -> tuple[list, list]:
    good = [(row, p) for row, p in items if isinstance(p, Product)]
    bad = [(row, e) for row, e in items if isinstance(e, RowRejected)]
    return good, bad


def test_import_retrieval_is_light() -> None:
    code = (
        "import sys, caption_agent.retrieval, caption_agent.cli.catalog; "
        "from caption_agent.retrieval import __all__; "
        "heavy = [m for m in ('chromadb', 'torch', 'sentence_transformers', 'langchain_openai', 'pyarrow') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_example_catalog_is_valid_and_has_the_planted_products() -> None:
    good, bad = _split(list(read_catalog(ROOT / "examples" / "catalog.jsonl")))
    assert bad == []
    by_sku = {p.sku: p for _, p in good}
    assert len(by_sku) >= 25
    mug = by_sku["MUG-001"]
    assert mug.brand == "Hollowell" and mug.attributes == {
        "color": "matte black",
        "material": "stoneware",
        "capacity": "90 ml",
    }
    assert "matte black" in mug.description
    assert by_sku["CAT-BED-01"].attributes["color"] == "grey" and by_sku["CAT-BED-01"].brand == "Purrfect"
    assert "orders@hollowell-shop.example" in by_sku["TEA-777"].description
    assert "+1 (555) 013-2447" in by_sku["TEA-777"].description
    assert "Ignore all previous instructions" in by_sku["MUG-INJ"].description


def test_bad_csv_rows_are_reported_with_row_field_reason() -> None:
    items = list(read_catalog(ROOT / "examples" / "catalog_bad.csv"))
    good, bad = _split(items)
    assert [p.sku for _, p in good] == ["GOOD-1", "DUP-1", "DUP-1"]
    assert {(e.row, e.field) for _, e in bad} == {(3, "sku"), (4, "attributes"), (6, "locale"), (8, "title")}
    attr = next(e for _, e in bad if e.field == "attributes")
    assert isinstance(attr, CatalogRowError) and "not valid JSON" in str(attr) and attr.sku == "BAD-ATTR"
    assert attr.to_reject()["raw"]["sku"] == "BAD-ATTR"


def test_csv_attr_columns_bom_and_types(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(
        "\ufeffsku,title,attr.color,attr.size,attributes,locale\n"
        'S-1,Mug,red,,"{""material"": ""clay"", ""weight"": 300}",de_de\n'.encode()
    )
    ((_, product),) = read_catalog(path)
    assert product.attributes == {"material": "clay", "weight": "300", "color": "red"}
    assert product.locale == "de-DE" and product.language == "de"
    assert product.brand is None and product.description == ""


def test_jsonl_rows_numbered_by_line_and_bad_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"sku": "S-1", "title": "One"}\n\n{not json\n[1, 2]\n'
        '{"sku": 42, "title": "Numeric sku"}\n'
        '{"sku": "S-3", "title": "Nested", "attributes": {"size": {"w": 1}}}\n'
        '{"sku": "S-4", "title": "Extra", "price": 3}\n',
        encoding="utf-8",
    )
    items = list(read_catalog(path))
    good, bad = _split(items)
    assert [(row, p.sku) for row, p in good] == [(1, "S-1"), (5, "42")]
    reasons = {e.row: (e.field, e.detail) for _, e in bad}
    assert reasons[3][1].startswith("not valid JSON")
    assert reasons[4][1].startswith("expected a JSON object")
    assert reasons[6][0] == "attributes" and "must be text or a number" in reasons[6][1]
    assert reasons[7][0] == "price" and "unknown field" in reasons[7][1]


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz"])
def test_jsonl_bom_deep_nesting_and_overlong_lines_are_row_rejects(tmp_path: Path, monkeypatch: Any, name: str) -> None:
    from caption_agent.retrieval import catalog

    monkeypatch.setattr(catalog, "MAX_LINE_BYTES", 200_000)
    long_row = json.dumps({"sku": "L-1", "title": "Long", "description": "x" * 300_000})
    text = (
        "\n".join(
            [
                '{"sku": "B-1", "title": "After a BOM"}',
                "[" * 100_000,
                '{"sku": "D-1", "title": "Deep", "attributes": %s}' % ("[" * 100_000),
                long_row,
                '{"sku": "E-1", "title": "End"}',
            ]
        )
        + "\n"
    )
    path = tmp_path / name
    data = b"\xef\xbb\xbf" + text.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    good, bad = _split(list(read_catalog(path)))
    assert [(row, p.sku) for row, p in good] == [(1, "B-1"), (5, "E-1")]
    reasons = {e.row: e.detail for _, e in bad}
    assert reasons[2] == reasons[3] == "cannot be parsed as JSON (RecursionError)"
    assert reasons[4] == f"line is {len(long_row)} bytes long; at most 200000 are read"
    assert all(len(str(e.raw)) <= 2000 for _, e in bad)


def test_gzip_and_tsv(tmp_path: Path) -> None:
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"sku": "G-1", "title": "Zipped"}) + "\n")
    tsv = tmp_path / "c.tsv"
    tsv.write_text("sku\ttitle\tbrand\nT-1\tTabbed, with comma\tAcme\n", encoding="utf-8")
    assert [p.sku for _, p in read_catalog(gz)] == ["G-1"]
    assert [(p.title, p.brand) for _, p in read_catalog(tsv)] == [("Tabbed, with comma", "Acme")]


def test_parquet_reader_with_map_attributes(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "sku": ["P-1", "P-2", None],
            "title": ["Parquet mug", "Parquet bed", "No sku"],
            "attributes": pa.array(
                [[("color", "red")], [], [("color", "blue")]], type=pa.map_(pa.string(), pa.string())
            ),
            "attr.size": ["S", None, "L"],
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    good, bad = _split(list(read_catalog(path)))
    assert [(row, p.sku, p.attributes) for row, p in good] == [
        (1, "P-1", {"color": "red", "size": "S"}),
        (2, "P-2", {}),
    ]
    assert [(e.row, e.field) for _, e in bad] == [(3, "sku")]


@pytest.mark.parametrize("name", ["catalog.xlsx", "catalog", "catalog.parquet.gz"])
def test_unknown_format_is_a_clear_error(name: str) -> None:
    with pytest.raises(CatalogError, match="unknown catalog format"):
        detect_format(name)


def test_missing_and_unknown_columns_fail_before_any_row(tmp_path: Path) -> None:
    missing = tmp_path / "m.csv"
    missing.write_text("sku,name\nS-1,Mug\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="lacks required column.*title") as info:
        list(read_catalog(missing))
    assert "Fix:" in str(info.value)
    unknown = tmp_path / "u.csv"
    unknown.write_text("sku,title,price\nS-1,Mug,3\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="unknown column.*price.*attr.NAME"):
        list(read_catalog(unknown))


def test_bytes_that_are_not_utf8_reject_only_their_row(tmp_path: Path) -> None:
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"sku,title\nS-1,Caf\xe9\nS-2,Mug\n")
    jsonl_path = tmp_path / "mixed.jsonl"
    jsonl_path.write_bytes(b'{"sku": "S-1", "title": "Caf\xe9"}\n{"sku": "S-2", "title": "Mug"}\n')
    for path in (csv_path, jsonl_path):
        (_, bad), (_, good) = list(read_catalog(path))
        assert isinstance(bad, RowRejected) and bad.field == "title" and "not valid Unicode" in bad.detail
        assert bad.to_reject()["raw"]["title"] == "Caf\\udce9"  # the rejects file stays valid UTF-8
        assert isinstance(good, Product) and good.sku == "S-2"


def test_a_lone_surrogate_rejects_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"sku": "S-1", "title": "Mug \\ud800"}\n{"sku": "S-2", "title": "Cup"}\n', encoding="utf-8")
    (_, bad), (_, good) = list(read_catalog(path))
    assert isinstance(bad, RowRejected) and bad.field == "title" and bad.sku == "S-1"
    json.dumps(bad.to_reject(), ensure_ascii=False).encode("utf-8")  # writable as UTF-8
    assert isinstance(good, Product)


def test_content_hash_tracks_every_field_and_metadata_round_trips() -> None:
    base = Product(sku="H-1", title="Mug", brand="B", attributes={"color": "red"}, description="d")
    assert base.content_hash() == Product(**base.model_dump()).content_hash()
    for change in ({"title": "Mug 2"}, {"attributes": {"color": "blue"}}, {"description": "e"}, {"locale": "de"}):
        assert Product(**{**base.model_dump(), **change}).content_hash() != base.content_hash()
    meta = base.to_metadata()
    assert all(isinstance(v, str) for v in meta.values()) and "category" not in meta  # Chroma refuses None
    assert Product.from_metadata(meta) == base
    assert base.embedding_text() == "Mug. Brand: B. color: red. d"


@pytest.mark.parametrize("bad", [{"sku": "has space"}, {"sku": "a:b"}, {"sku": ""}, {"title": "  "}])
def test_invalid_products_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Product(**{"sku": "S-1", "title": "Mug", **bad})
