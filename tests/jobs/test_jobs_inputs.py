"""One row, one failure: inputs that are not ordinary image files, or not Unicode, fail only their own row with
a record (never the job, never silently), and a full disk or an output that is not a file ends the job with one
clear error and nothing lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from caption_agent.jobs import CaptionJobOptions, read_records, run_caption_job
from caption_agent.jobs.log import OutputLog
from caption_agent.jobs.manifest import iter_items
from caption_agent.records import OutputLogError

pytestmark = pytest.mark.slow


def _opts(out: Path, **kw) -> CaptionJobOptions:
    return CaptionJobOptions(out=out, progress=False, batch_size=kw.pop("batch_size", 8), **kw)


def _hostile_folder(tmp_path: Path, images_dir: Path) -> Path:
    """One good photo and every kind of folder entry named like an image that is not one."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(images_dir / "chelsea.jpg", folder / "a-good.jpg")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"), "wb") as fh:  # a Latin-1 name, not UTF-8
        fh.write((images_dir / "coffee.jpg").read_bytes())
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/null", folder / "device.jpg")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    return folder


def test_folder_entries_that_are_not_image_files_each_get_their_own_record(tmp_path, images_dir, fast_agent, capfd):
    folder = _hostile_folder(tmp_path, images_dir)
    out = tmp_path / "out.jsonl"
    summary = run_caption_job(folder, _opts(out), agent=fast_agent)
    records = list(read_records(out))
    assert summary.total == 5 and len(records) == 5 and summary.errors == 4
    by_problem = {r["status"]: r for r in records if r["status"] != "error"}
    assert len(by_problem) == 1  # the good photo was captioned
    messages = " | ".join(r["error"]["message"] for r in records if r["status"] == "error")
    for expected in ("caf\\xe9.jpg", "not valid UTF-8", "is a FIFO", "is a character device", "missing file"):
        assert expected in messages
    # Every record is valid UTF-8 JSON, and nothing printed a traceback.
    json.loads(json.dumps(records))
    assert "Traceback" not in capfd.readouterr().err
    # A rerun finds every row answered.
    again = run_caption_job(folder, _opts(out), agent=fast_agent)
    assert again.already_done == 5 and again.written == 0


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="Linux /proc")
def test_an_unreadable_path_and_a_lone_surrogate_fail_only_their_rows(tmp_path, images_dir, fast_agent, capfd):
    manifest = tmp_path / "rows.jsonl"
    rows = [
        json.dumps({"image": str(images_dir / "chelsea.jpg")}),
        json.dumps({"image": "/proc/self/mem"}),
        '{"image": "' + str(images_dir / "coffee.jpg") + '", "brand": "Lumen \\ud800"}',
        json.dumps({"image": str(images_dir / "rocket.jpg")}),
    ]
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    summary = run_caption_job(manifest, _opts(out), agent=fast_agent)
    records = sorted(read_records(out), key=lambda r: r["row"])
    assert [r["status"] == "error" for r in records] == [False, True, True, False]
    assert summary.errors == 2
    assert records[1]["error"]["type"] == "InvalidImageError" and "cannot be read" in records[1]["error"]["message"]
    assert "brand: not valid Unicode" in records[2]["error"]["message"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_folder_that_cannot_be_listed_is_a_row_not_silence(tmp_path, images_dir, monkeypatch):
    folder = tmp_path / "imgs"
    (folder / "locked").mkdir(parents=True)
    shutil.copy(images_dir / "chelsea.jpg", folder / "a.jpg")
    real_scandir = os.scandir

    def denied(path):  # permission denied on one subfolder (chmod 0 does not stop root, who runs CI)
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    items = list(iter_items(folder, style="alt_text", locale="en-US"))
    assert len(items) == 2 and items[0].error is None
    assert "'locked' is a folder that cannot be listed (Permission denied)" in items[1].error["message"]


def test_output_that_is_not_a_file_is_refused_before_anything_is_written(tmp_path, images_dir, fast_agent):
    link = tmp_path / "null.jsonl"
    os.symlink("/dev/null", link)
    before = set(os.listdir("/dev"))
    for out in (Path("/dev/null"), link):
        with pytest.raises(OutputLogError, match="not a regular file") as err:
            run_caption_job(images_dir, _opts(out), agent=fast_agent)
        assert "Fix:" in str(err.value)
    assert set(os.listdir("/dev")) == before  # no /dev/null.job.json, no /dev/null.lock


def test_a_full_disk_ends_the_job_with_one_error_and_a_rerun_finishes_it(tmp_path, images_dir, fast_agent, monkeypatch):
    out = tmp_path / "out.jsonl"
    real_write = os.write
    calls = {"n": 0}

    def full_after_first(fd, data):  # the disk fills after the first flush (a fault a test cannot make real)
        calls["n"] += 1
        if calls["n"] > 1:
            real_write(fd, bytes(data)[:10])  # a torn half line first, as a real ENOSPC can leave
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(images_dir / name, folder / name)
    monkeypatch.setattr("caption_agent.jobs.log.os.write", full_after_first)
    with pytest.raises(OutputLogError, match="No space left on device") as err:
        run_caption_job(folder, _opts(out, batch_size=1, flush_every=1), agent=fast_agent)
    assert "run the same command again" in str(err.value)
    kept = list(read_records(out))  # the log ends whole: the torn write was cut back off
    assert len(kept) == 1
    monkeypatch.setattr("caption_agent.jobs.log.os.write", real_write)
    again = run_caption_job(folder, _opts(out), agent=fast_agent)
    total = len(list(read_records(out)))
    assert again.already_done == 1 and total == again.total == 2 and again.repaired_bytes == 0


def test_output_log_writes_a_record_with_a_lone_surrogate_as_its_escape(tmp_path):
    out = tmp_path / "o.jsonl"
    with OutputLog(out, "jsonl", kind="caption", fingerprint="f") as log:
        log.append([{"key": "k1", "status": "ok", "text": "bad \udc80 text"}])
    (record,) = read_records(out)
    assert record["text"] == "bad \udc80 text"  # kept exactly, as the JSON escape \udc80
    assert b"\\udc80" in out.read_bytes()


def test_a_shard_member_whose_name_is_not_utf8_fails_only_its_sample(tmp_path, images_dir):
    import io
    import tarfile

    shard = tmp_path / "shard-000.tar"
    photo = (images_dir / "chelsea.jpg").read_bytes()
    with tarfile.open(shard, "w", encoding="utf-8", errors="surrogateescape") as tar:
        for name in ("good.jpg", "caf\udce9.jpg"):  # the second: Latin-1 bytes in the member name
            info = tarfile.TarInfo(name)
            info.size = len(photo)
            tar.addfile(info, io.BytesIO(photo))
    items = list(iter_items([str(shard)], style="alt_text", locale="en-US"))
    assert len(items) == 2 and len({i.key for i in items}) == 2
    by_error = sorted(items, key=lambda i: i.error is not None)
    assert by_error[0].error is None and "not valid Unicode" in by_error[1].error["message"]
    from caption_agent.jobs.stages import error_record
    from caption_agent.records import dumps

    bad = by_error[1]
    line = dumps(error_record(bad, bad.error["type"], bad.error["message"], bad.error["stage"]))
    assert json.loads(line.decode("utf-8"))["source"] == bad.source  # written as valid UTF-8, nothing lost
