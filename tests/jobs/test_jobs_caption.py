"""Caption jobs on the real pipeline (lite drafter, refinement off): bad inputs, resume, retry, cache, Parquet."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from jobs_helpers import EXPECTED_ERRORS, key_counts

from caption_agent.jobs import CaptionJobOptions, read_records, run_caption_job
from caption_agent.jobs.manifest import iter_items

pytestmark = pytest.mark.slow


def _opts(out, **kw) -> CaptionJobOptions:
    return CaptionJobOptions(out=out, progress=False, batch_size=kw.pop("batch_size", 4), **kw)


def test_bad_inputs_become_error_records_and_the_rest_succeed(tmp_path, mixed_manifest, fast_agent):
    out = tmp_path / "out.jsonl"
    summary = run_caption_job(mixed_manifest, _opts(out), agent=fast_agent)
    records = list(read_records(out))
    by_id = {r.get("id", f"row{r['row']}"): r for r in records}
    assert summary.total == 11 and summary.written == 11 == len(records)
    for name, etype in EXPECTED_ERRORS.items():
        assert by_id[name]["status"] == "error", by_id[name]
        assert by_id[name]["error"]["type"] == etype, by_id[name]["error"]
        assert "Fix:" in by_id[name]["error"]["message"]
    assert by_id["row10"]["error"]["type"] == "ManifestRowError"
    for name in ("good-1", "good-2", "good-3"):
        assert by_id[name]["status"] in ("ok", "review"), by_id[name]
        assert by_id[name]["draft"] and by_id[name]["image"]["sha256"]
    assert any(f["sku"] == "MUG-001" for f in by_id["good-2"]["facts"])  # the known sku grounded the caption
    # Results keep the product hint they were asked with (another attempt grounds on it again), errors too.
    assert by_id["good-2"]["hint"] == {"sku": "MUG-001"} and by_id["unknown-sku"]["hint"] == {"sku": "NO-SUCH-SKU"}
    assert "hint" not in by_id["good-1"]
    assert by_id["good-3"]["style"] == "seo_product"
    assert summary.errors == 8 and summary.error_types["InvalidImageError"] == 4
    assert summary.ok + summary.review + summary.blocked == 3


def test_resume_skips_written_keys_and_retry_errors_redoes_only_them(tmp_path, mixed_manifest, fast_agent):
    out = tmp_path / "out.jsonl"
    first = run_caption_job(mixed_manifest, _opts(out, limit=5), agent=fast_agent)
    assert first.written == 5
    second = run_caption_job(mixed_manifest, _opts(out), agent=fast_agent)
    assert second.already_done == 5 and second.written == 6
    before = {r["key"]: r for r in read_records(out)}
    assert len(before) == 11 and set(key_counts(out).values()) == {1}

    # Fix two inputs, then retry: only the error records are redone, each item still appears once.
    images = mixed_manifest.parent / "imgs"
    shutil.copy(images / "rocket.jpg", images / "empty.jpg")
    shutil.copy(images / "chelsea.jpg", images / "missing.jpg")
    third = run_caption_job(mixed_manifest, _opts(out, retry_errors=True), agent=fast_agent)
    assert third.retried_errors == 8 and third.already_done == 3
    after = list(read_records(out))
    assert len(after) == 11 and set(key_counts(out).values()) == {1}
    by_id = {r.get("id"): r for r in after}
    assert by_id["zero-byte"]["status"] != "error" and by_id["missing"]["status"] != "error"
    assert by_id["corrupt"]["status"] == "error"
    for key, record in before.items():  # finished items are untouched
        if record["status"] != "error":
            assert next(r for r in after if r["key"] == key) == record


def test_cache_answers_repeated_items_and_each_row_gets_its_record(tmp_path, images_dir, fast_agent):
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": str(images_dir / "coffee.jpg")},
        {"image": str(images_dir / "coffee.jpg")},
        {"image": str(images_dir / "coffee.jpg"), "id": "again"},
        {"image": str(images_dir / "chelsea.jpg")},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    first = run_caption_job(manifest, _opts(tmp_path / "a.jsonl", cache_dir=cache, batch_size=8), agent=fast_agent)
    # Rows 2 (an exact repeat) and 3 (differs only by id) are rows of their own; they copy row 1's result.
    assert first.duplicates == 2 and first.written == 4 and first.cached == 2
    second = run_caption_job(manifest, _opts(tmp_path / "b.jsonl", cache_dir=cache), agent=fast_agent)
    assert second.cached == 4 and second.written == 4 and second.duplicates == 0
    a = {r["key"]: r for r in read_records(tmp_path / "a.jsonl")}
    b = {r["key"]: r for r in read_records(tmp_path / "b.jsonl")}
    assert a.keys() == b.keys() and len(a) == 4
    row0 = next(k for k in a if a[k]["row"] == 0)
    assert [a[k].get("duplicate_of") for k in sorted(a, key=lambda k: a[k]["row"])] == [None, row0, row0, None]
    for key in a:
        assert b[key]["cached"] is True
        assert {k: v for k, v in b[key].items() if k != "cached"} == {
            k: v for k, v in a[key].items() if k not in ("cached", "duplicate_of")
        }
    assert a[next(k for k in a if a[k].get("id") == "again")]["text"] == a[row0]["text"]


def test_parquet_output_with_overlapping_batches_feeds_readers(tmp_path, images_dir, fast_agent):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "flower.jpg"):
        shutil.copy(images_dir / name, folder / name)
    out = tmp_path / "out.parquet"
    summary = run_caption_job(folder, _opts(out, batch_size=1, workers=2, flush_every=1), agent=fast_agent)
    assert summary.written == 4 and summary.format == "parquet"
    assert [p.name for p in out.glob("*.parquet")] == ["compact-00000003.parquet"]  # merged at a clean end
    table = pq.read_table(out)
    expected = {i.key for i in iter_items(folder, style="alt_text", locale="en-US")}
    assert set(table.column("key").to_pylist()) == expected
    records = list(read_records(out))
    assert all(r["status"] in ("ok", "review") and r["text"] for r in records if r["status"] == "ok")
    again = run_caption_job(folder, _opts(out), agent=fast_agent)
    assert again.already_done == 4 and again.written == 0


def test_json_logs_and_progress_report_the_job(tmp_path, images_dir, fast_agent, capsys):
    import logging

    from caption_agent.jobs.metrics import configure_json_logging

    stream = io.StringIO()
    handler = configure_json_logging(stream)
    try:
        opts = CaptionJobOptions(out=tmp_path / "o.jsonl", limit=2, batch_size=2)  # progress on: stderr
        run_caption_job(images_dir, opts, agent=fast_agent)
    finally:
        logging.getLogger("caption_agent").removeHandler(handler)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = next(e for e in events if e["msg"] == "job finished")
    assert finished["summary"]["written"] == 2 and finished["level"] == "info"
    assert next(e for e in events if e["msg"] == "job started")["done_before"] == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("caption [") and "2/2 100.0%" in last and "errors 0" in last
    assert "it/s" in last and "ETA" in last
