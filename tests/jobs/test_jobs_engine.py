"""The job driver with a fake stage: every input row gets one record, repeats share one computation."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from pathlib import Path

from caption_agent.jobs.engine import JobOptions, StageSpec, run_job
from caption_agent.jobs.localize_job import iter_localize_items
from caption_agent.jobs.manifest import iter_items
from caption_agent.records import read_records

SPEC = StageSpec(stage="unused:Stage", item="caption_agent.jobs.manifest:CaptionItem")


class CountingStage:
    """Captions an item with its source file's name; remembers every item it computed."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, items):
        with self._lock:
            self.seen += [i.key for i in items]
        return [i.annotate({"key": i.key, "status": "ok", "text": f"computed for {i.key}"}) for i in items]


def _run(manifest, out, stage, **kw):
    items = iter_items(manifest, style="alt_text", locale="en-US")
    opts = JobOptions(out=out, progress=False, batch_size=kw.pop("batch_size", 4), **kw)
    return run_job("caption", items, stage, SPEC, opts, fingerprint="fp")


def test_a_folder_of_byte_copies_gets_a_record_per_file_and_a_computation_per_content(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "more").mkdir(parents=True)
    for n in range(9):  # the fake stage never decodes: any distinct bytes are distinct contents
        data = f"image {n}".encode() * 100
        (folder / f"orig-{n}.jpg").write_bytes(data)
        (folder / f"copy-{n}.jpg").write_bytes(data)  # byte copies under other names
        (folder / "more" / f"orig-{n}.jpg").write_bytes(data)
    out = tmp_path / "out.jsonl"
    stage = CountingStage()
    summary = _run(folder, out, stage, workers=2)
    assert len(stage.seen) == 9  # one computation per distinct content
    assert summary.total == 27 and summary.written == 27 and summary.duplicates == 18
    records = list(read_records(out))
    assert len(records) == 27 and len({r["key"] for r in records}) == 27
    assert len({r["source"] for r in records}) == 27
    copies = [r for r in records if "duplicate_of" in r]
    assert len(copies) == 18 and all(r["cached"] is True for r in copies)
    by_key = {r["key"]: r for r in records}
    for r in copies:  # each copy names a computed row of the same content, and carries its result
        leader = by_key[r["duplicate_of"]]
        assert "duplicate_of" not in leader and leader["text"] == r["text"]
        assert Path(leader["source"]).read_bytes() == Path(r["source"]).read_bytes()

    again = CountingStage()
    rerun = _run(folder, out, again)
    assert again.seen == [] and rerun.written == 0 and rerun.already_done == 27 and rerun.duplicates == 0
    assert out.read_bytes().count(b"\n") == 27


def test_resume_after_a_partial_run_writes_each_row_once(tmp_path, images_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in range(6):
        shutil.copy(images_dir / "coffee.jpg", folder / f"c{n}.jpg")
    out = tmp_path / "out.jsonl"
    first = _run(folder, out, CountingStage(), batch_size=1, flush_every=1)
    assert first.written == 6
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]))  # as if killed after two records
    stage = CountingStage()
    second = _run(folder, out, stage)
    assert second.already_done == 2 and second.written == 4 and len(stage.seen) == 1
    assert set(Counter(r["key"] for r in read_records(out)).values()) == {1}
    assert out.read_bytes().count(b"\n") == 6


def test_a_manifest_row_listed_twice_gets_two_records(tmp_path, images_dir):
    manifest = tmp_path / "m.jsonl"
    row = json.dumps({"image": str(images_dir / "coffee.jpg"), "sku": "MUG-001"})
    manifest.write_text(f"{row}\n{row}\n{row}\n")
    out = tmp_path / "out.jsonl"
    stage = CountingStage()
    summary = _run(manifest, out, stage, batch_size=1)
    records = list(read_records(out))
    assert len(stage.seen) == 1 and summary.written == 3 and summary.duplicates == 2
    assert [r["row"] for r in sorted(records, key=lambda r: r["row"])] == [0, 1, 2]
    first = next(r for r in records if r["row"] == 0)
    assert [r["duplicate_of"] for r in records if r["row"]] == [first["key"], first["key"]]


def test_localize_rows_repeated_without_ids_get_a_record_per_row_and_locale(tmp_path):
    path = tmp_path / "captions.jsonl"
    row = json.dumps({"text": "A blue vase on a shelf."})
    path.write_text(f"{row}\n{row}\n")
    items = list(iter_localize_items(path, ["de-DE", "fr-FR"], style="alt_text"))
    assert len(items) == 4 and len({i.key for i in items}) == 4
    assert len({i.cache_key for i in items}) == 2  # one computation per locale
    results = tmp_path / "results.jsonl"  # a caption job's records: keyed by the source record's key
    results.write_text(
        "".join(
            json.dumps({"key": k, "status": "ok", "text": "A cup.", "style": "alt_text", "locale": "en-US"}) + "\n"
            for k in ("k1", "k2")
        )
    )
    from_results = list(iter_localize_items(results, ["de-DE"], style="alt_text"))
    assert len({i.key for i in from_results}) == 2 and len({i.cache_key for i in from_results}) == 1
