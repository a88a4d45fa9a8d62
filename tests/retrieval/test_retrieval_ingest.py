"""Ingestion on the real bundled embedder and an embedded Chroma store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from caption_agent.config import RetrievalSettings
from caption_agent.errors import CatalogError
from caption_agent.retrieval import CatalogStore, IngestSummary, ingest_file
from caption_agent.retrieval.ingest import WRITE_BATCHES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _state(store: CatalogStore) -> dict[str, tuple[str, str]]:
    got = store._collection.get(include=["metadatas", "documents"])
    return {i: (m["content_hash"], d) for i, m, d in zip(got["ids"], got["metadatas"], got["documents"])}


def test_add_update_unchanged_remove(
    settings: RetrievalSettings, minilm: Any, small_rows: list, write_jsonl: Callable[..., Path]
) -> None:
    path = write_jsonl(small_rows)
    with CatalogStore.open(settings, minilm, writer=True) as store:
        first = ingest_file(path, store)
        assert (first.added, first.updated, first.unchanged, first.rejected, first.removed) == (4, 0, 0, 0, 0)
        assert first.embedded == 4 and first.total == 4 and first.products_per_s > 0
        again = ingest_file(path, store)
        assert (again.added, again.unchanged, again.embedded) == (0, 4, 0)

        small_rows[1]["attributes"]["color"] = "charcoal"
        small_rows.append({"sku": "A-5", "title": "Stoneware saucer"})
        changed = ingest_file(write_jsonl(small_rows), store)
        assert (changed.added, changed.updated, changed.unchanged, changed.embedded) == (1, 1, 3, 2)
        assert store.get(["A-2"])[0].attributes == {"color": "charcoal"}

        snapshot = ingest_file(write_jsonl(small_rows[:2], "snap.jsonl"), store, full_snapshot=True)
        assert (snapshot.unchanged, snapshot.removed, snapshot.total) == (2, 3, 2)
        assert sorted(store.iter_skus(page=1)) == ["A-1", "A-2"]


def test_rejects_and_duplicates_are_reported_not_dropped(
    settings: RetrievalSettings, minilm: Any, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    with CatalogStore.open(settings, minilm, writer=True) as store:
        summary = ingest_file(ROOT / "examples" / "catalog_bad.csv", store, rejects_path=rejects)
        assert (summary.added, summary.rejected, summary.duplicates) == (2, 4, 1)
        assert summary.duplicate_skus == {"DUP-1": [5, 7]}
        assert store.get(["DUP-1"])[0].title == "Duplicate Mug (second)"  # the last row won
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in lines] == [(3, "sku"), (4, "attributes"), (6, "locale"), (8, "title")]
    assert all(r["reason"] and r["raw"] for r in lines)
    text = summary.render()
    assert "the last row won: DUP-1 (rows 5, 7)" in text and "rejected row 4, field 'attributes'" in text
    assert str(rejects) in text


def test_a_rejected_last_row_keeps_the_stored_product(
    settings: RetrievalSettings, minilm: Any, small_rows: list, write_jsonl: Callable[..., Path]
) -> None:
    with CatalogStore.open(settings, minilm, writer=True) as store:
        ingest_file(write_jsonl(small_rows), store)
        broken = dict(small_rows[0], title="Newer title", attributes="{broken")
        summary = ingest_file(
            write_jsonl([small_rows[0] | {"title": "Changed"}, broken, small_rows[1]], "b.jsonl"),
            store,
            full_snapshot=True,
        )
        # A-1's last row is bad: its earlier row is not applied, and the snapshot does not remove it.
        assert (summary.rejected, summary.updated, summary.removed) == (1, 0, 2)
        assert store.get(["A-1"])[0].title == "Espresso cup"
        assert sorted(store.iter_skus()) == ["A-1", "A-2"]


def test_fatal_errors_write_nothing(
    settings: RetrievalSettings, minilm: Any, tmp_path: Path, write_jsonl: Callable[..., Path]
) -> None:
    bad_columns = tmp_path / "cols.csv"
    bad_columns.write_text("sku,title,colour\nS-1,Mug,red\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    with CatalogStore.open(settings, minilm, writer=True) as store:
        with pytest.raises(CatalogError, match="unknown column"):
            ingest_file(bad_columns, store, rejects_path=rejects)
        with pytest.raises(CatalogError, match="unknown catalog format"):
            ingest_file(tmp_path / "catalog.xml", store)
        assert store.count() == 0 and not rejects.exists() and not Path(f"{rejects}.tmp").exists()
        ingest_file(write_jsonl([{"sku": "K-1", "title": "Keep me"}]), store)
        with pytest.raises(CatalogError, match="refusing to treat it as a full snapshot"):
            ingest_file(write_jsonl([{"sku": "K-2"}], "empty.jsonl"), store, full_snapshot=True)
        assert list(store.iter_skus()) == ["K-1"]


def test_interrupted_run_converges_on_rerun(settings: RetrievalSettings, tmp_path: Path, minilm: Any) -> None:
    catalog = ROOT / "examples" / "catalog.jsonl"

    def stop_after_first_batch(done: int) -> None:
        raise KeyboardInterrupt

    with CatalogStore.open(settings, minilm, writer=True) as store:
        with pytest.raises(KeyboardInterrupt):
            ingest_file(catalog, store, batch_size=2, on_batch=stop_after_first_batch)
        first = 2 * WRITE_BATCHES
        assert store.count() == first  # one write batch landed, completely
        rerun = ingest_file(catalog, store, batch_size=2)
        assert (rerun.unchanged, rerun.added) == (first, 31 - first)
        interrupted_state = _state(store)
        vec = store._collection.get(ids=["MUG-001"], include=["embeddings"])["embeddings"][0]
    clean_settings = RetrievalSettings(catalog_dir=tmp_path / "clean")
    with CatalogStore.open(clean_settings, minilm, writer=True) as clean:
        ingest_file(catalog, clean, batch_size=64)
        assert _state(clean) == interrupted_state
        clean_vec = clean._collection.get(ids=["MUG-001"], include=["embeddings"])["embeddings"][0]
    assert np.allclose(vec, clean_vec, atol=1e-5)


def test_parquet_ingest_and_progress_bar(
    settings: RetrievalSettings, minilm: Any, small_rows: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [dict(r, attributes=json.dumps(r["attributes"])) for r in small_rows]
    path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with CatalogStore.open(settings, minilm, writer=True) as store:
        summary: IngestSummary = ingest_file(path, store, progress=True)
        assert summary.format == "parquet" and summary.added == 4
        assert store.get(["A-1"])[0].attributes == {"color": "matte black", "material": "stoneware"}
    err = capsys.readouterr().err
    assert "4/4" in err and "product/s" in err  # count and rate (tqdm prints the ETA in the same field)


def test_a_file_rewritten_during_ingestion_is_detected(
    settings: RetrievalSettings, minilm: Any, small_rows: list, write_jsonl: Callable[..., Path]
) -> None:
    path = write_jsonl(small_rows)

    def rewrite(done: int) -> None:
        path.write_text(path.read_text() + json.dumps({"sku": "LATE-1", "title": "Appended mid-run"}) + "\n")

    with CatalogStore.open(settings, minilm, writer=True) as store:
        with pytest.raises(CatalogError, match="changed while it was being ingested"):
            ingest_file(path, store, batch_size=1, on_batch=rewrite)
        assert ingest_file(path, store).added == 1  # re-running converges, the late row included
        assert store.count() == 5


def test_unparseable_lines_are_rejects_and_the_ingest_goes_on(
    settings: RetrievalSettings, minilm: Any, small_rows: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caption_agent.retrieval import catalog

    monkeypatch.setattr(catalog, "MAX_LINE_BYTES", 100_000)
    lines = [
        json.dumps(small_rows[0]),
        "[" * 100_000,
        '{"sku": "D-1", "title": "Deep", "attributes": %s}' % ("[" * 50_000),
        json.dumps({"sku": "L-1", "title": "Long", "description": "x" * 200_000}),
        json.dumps(small_rows[1]),
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    with CatalogStore.open(settings, minilm, writer=True) as store:
        summary = ingest_file(path, store, rejects_path=rejects)
        assert (summary.rows, summary.added, summary.rejected) == (5, 2, 3)
        assert sorted(store.iter_skus()) == ["A-1", "A-2"]
    got = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["row"] for r in got] == [2, 3, 4]
    assert "RecursionError" in got[0]["reason"] and "bytes long" in got[2]["reason"]


def test_rows_that_are_not_unicode_are_rejects_and_the_ingest_goes_on(
    settings: RetrievalSettings, minilm: Any, small_rows: list, tmp_path: Path
) -> None:
    lines = [
        json.dumps(small_rows[0]).encode(),
        b'{"sku": "U-1", "title": "Mug \\ud800 black"}',  # a lone surrogate, as a JSON escape
        b'{"sku": "U-2", "title": "Caf\xe9 cup"}',  # Latin-1 bytes in a UTF-8 file
        json.dumps(small_rows[1]).encode(),
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.jsonl"
    with CatalogStore.open(settings, minilm, writer=True) as store:
        summary = ingest_file(path, store, rejects_path=rejects)
        assert (summary.rows, summary.added, summary.rejected) == (4, 2, 2)
        assert sorted(store.iter_skus()) == ["A-1", "A-2"]
    got = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["row"], r["field"], r["sku"]) for r in got] == [(2, "title", "U-1"), (3, "title", "U-2")]
    assert all("not valid Unicode" in r["reason"] for r in got)
    assert got[0]["raw"]["title"] == "Mug \\ud800 black"
