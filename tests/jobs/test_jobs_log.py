"""The output log: durable appends, torn-tail repair, one writer, error retry, crash-safe Parquet compaction."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from caption_agent.jobs.log import JobLockedError, JobMismatchError, OutputLog, OutputLogError
from caption_agent.records import read_records


def _rec(i: int, status: str = "ok") -> dict:
    rec = {"key": f"k{i:04d}", "status": status, "text": f"caption {i} — ünïcode", "facts": [{"id": "a:b"}]}
    if status == "error":
        rec["error"] = {"type": "InvalidImageError", "message": "bad", "stage": "input"}
    return rec


def _open(path, fmt="jsonl", **kw) -> OutputLog:
    return OutputLog(path, fmt, kind="caption", fingerprint=kw.pop("fingerprint", "fp1"), **kw)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_records_survive_reopen_and_build_the_index(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    with _open(out, fmt, flush_every=3) as log:
        log.append([_rec(0), _rec(1)])
        log.append([_rec(2, "error")])  # third record: flushed
        log.append([_rec(3)])
    with _open(out, fmt) as log:
        assert log.index == {"k0000": "ok", "k0001": "ok", "k0002": "error", "k0003": "ok"}
    records = list(read_records(out))
    assert [r["key"] for r in records] == ["k0000", "k0001", "k0002", "k0003"]
    assert records[0] == _rec(0) and records[2]["error"]["type"] == "InvalidImageError"


def test_torn_last_line_is_cut_off_and_never_counted(tmp_path):
    out = tmp_path / "out.jsonl"
    with _open(out) as log:
        log.append([_rec(0), _rec(1)])
    whole = out.read_bytes()
    torn = json.dumps(_rec(2)).encode()[:25]  # what a kill in the middle of a write leaves
    out.write_bytes(whole + torn)
    assert [r["key"] for r in read_records(out)] == ["k0000", "k0001"]  # readers skip it too
    with _open(out) as log:
        assert log.repaired_bytes == len(torn)
        assert set(log.index) == {"k0000", "k0001"}
        log.append([_rec(2)])
    assert [r["key"] for r in read_records(out)] == ["k0000", "k0001", "k0002"]
    assert out.read_bytes().count(b"\n") == 3


def test_a_damaged_middle_line_is_refused_not_skipped(tmp_path):
    out = tmp_path / "out.jsonl"
    _open(out).close()  # a real output: its header says which job and key scheme wrote it
    out.write_text(json.dumps(_rec(0)) + "\nhello\n" + json.dumps(_rec(1)) + "\n")
    with pytest.raises(OutputLogError, match="line 2"):
        _open(out)


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "out.jsonl"
    code = (
        "import sys; from caption_agent.jobs.log import OutputLog\n"
        "from caption_agent.jobs.log import JobLockedError\n"
        "try:\n  OutputLog(sys.argv[1], 'jsonl', kind='caption', fingerprint='fp1')\n"
        "except JobLockedError as e:\n  print('locked', e)\n"
    )
    with _open(out):
        with pytest.raises(JobLockedError, match="Fix:"):
            _open(out)
        proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
        assert proc.stdout.startswith("locked"), proc.stderr
    with _open(out):  # released on close
        pass


def test_other_settings_are_refused_unless_allowed(tmp_path):
    out = tmp_path / "out.jsonl"
    with _open(out) as log:
        log.append([_rec(0)])
    with pytest.raises(JobMismatchError, match="other settings"):
        _open(out, fingerprint="fp2")
    with _open(out, fingerprint="fp2", allow_config_change=True) as log:
        assert "k0000" in log.index
    header = json.loads((tmp_path / "out.jsonl.job.json").read_text())
    assert header["fingerprints"] == ["fp1", "fp2"]
    with pytest.raises(JobMismatchError, match="holds 'caption'"):
        OutputLog(out, "jsonl", kind="localize", fingerprint="fp1")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_drop_errors_leaves_each_key_once_after_the_retry(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    with _open(out, fmt, flush_every=1) as log:
        log.append([_rec(0), _rec(1, "error"), _rec(2), _rec(3, "error")])
    with _open(out, fmt) as log:
        assert log.drop_errors() == 2
        assert set(log.index) == {"k0000", "k0002"}
        log.append([_rec(1), _rec(3, "error")])  # the retry: one fixed, one still failing
    counts = Counter(r["key"] for r in read_records(out))
    assert counts == Counter({"k0000": 1, "k0001": 1, "k0002": 1, "k0003": 1})
    assert {r["key"]: r["status"] for r in read_records(out)}["k0001"] == "ok"


def test_parquet_compaction_is_crash_safe(tmp_path):
    out = tmp_path / "out.parquet"
    with _open(out, "parquet", flush_every=2) as log:
        for i in range(6):
            log.append([_rec(i)])
        log.flush()
        parts = sorted(p.name for p in out.glob("part-*.parquet"))
        assert len(parts) == 3
        saved = tmp_path / "saved"
        shutil.copytree(out, saved)
        log.compact()
    assert [p.name for p in out.glob("*.parquet")] == ["compact-00000002.parquet"]
    # A kill after the compacted file was renamed in but before the old parts were removed:
    for name in parts:
        shutil.copy(saved / name, out / name)
    (out / "part-00000009.parquet.tmp").write_bytes(b"half a file")
    assert Counter(r["key"] for r in read_records(out)) == Counter({f"k{i:04d}": 1 for i in range(6)})
    with _open(out, "parquet") as log:
        assert len(log.index) == 6
        log.append([_rec(6)])
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".parquet") == [
        "compact-00000002.parquet",
        "part-00000003.parquet",
    ]
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(out)  # the folder is a plain Parquet dataset for other tools
    assert table.num_rows == 7 and {"key", "status", "text", "record"} <= set(table.column_names)


def test_format_mismatch_with_existing_path_is_refused(tmp_path):
    (tmp_path / "file.parquet").write_text("x")
    with pytest.raises(OutputLogError, match="is a file"):
        _open(tmp_path / "file.parquet", "parquet")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(OutputLogError, match="is a folder"):
        _open(tmp_path / "dir.jsonl")


@pytest.mark.parametrize(
    "broken",
    [
        b'{"key":"k0002","status":"ok","te\n',  # a head that looks right
        b'{"key":"k0002","status":"ok","text":"x"\n',  # no closing brace
        b'{"key":"k0002","status":"ok","text":"x" }}\n',  # ends in }, not JSON
        b"[" * 100_000 + b"}\n",
        b"\n",
    ],
)
def test_a_newline_terminated_broken_last_line_is_torn_never_done(tmp_path, broken):
    out = tmp_path / "out.jsonl"
    with _open(out) as log:
        log.append([_rec(0), _rec(1)])
    out.write_bytes(out.read_bytes() + broken)
    assert [r["key"] for r in read_records(out)] == ["k0000", "k0001"]
    with _open(out) as log:
        assert set(log.index) == {"k0000", "k0001"} and log.repaired_bytes == len(broken)
        log.append([_rec(2)])
    assert [r["key"] for r in read_records(out)] == ["k0000", "k0001", "k0002"]


def test_a_broken_middle_line_that_looks_like_a_record_is_refused_naming_it(tmp_path):
    out = tmp_path / "out.jsonl"
    _open(out).close()
    out.write_bytes(
        json.dumps(_rec(0)).encode() + b'\n{"key":"k0001","status":"ok","te\n' + json.dumps(_rec(2)).encode() + b"\n"
    )
    with pytest.raises(OutputLogError, match=r"line 2 .*Fix: delete or repair line 2"):
        _open(out)
    with pytest.raises(OutputLogError, match="line 2"):
        list(read_records(out))
    assert out.read_bytes().count(b"\n") == 3  # nothing was cut


def test_an_output_made_with_the_old_key_scheme_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    with _open(out) as log:
        log.append([_rec(0)])
    header = tmp_path / "out.jsonl.job.json"
    assert json.loads(header.read_text())["key_version"] == "k2"
    old = {**json.loads(header.read_text()), "key_version": "k1"}
    header.write_text(json.dumps(old))
    for kw in ({}, {"allow_config_change": True}):
        with pytest.raises(JobMismatchError, match=r"key scheme 'k1'.*Fix: pass a new --out path"):
            _open(out, **kw)
    del old["key_version"]  # headers from before the field existed are k1 too
    header.write_text(json.dumps(old))
    with pytest.raises(JobMismatchError, match="key scheme 'k1'"):
        _open(out)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_symlinked_out_meets_the_same_lock_and_header(tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    real = tmp_path / "data" / f"out.{fmt}"
    real.parent.mkdir()
    link = tmp_path / f"link.{fmt}"
    with _open(real, fmt) as log:
        log.append([_rec(0)])
    link.symlink_to(real, target_is_directory=fmt == "parquet")
    folder_link = tmp_path / "alias"
    folder_link.symlink_to(real.parent, target_is_directory=True)
    with _open(real, fmt):
        for other in (link, folder_link / real.name):
            with pytest.raises(JobLockedError):
                _open(other, fmt)
    with pytest.raises(JobMismatchError, match="other settings"):  # the header is found through the link
        _open(link, fmt, fingerprint="fp2")
    with _open(link, fmt, flush_every=1) as log:
        assert set(log.index) == {"k0000"}
        log.append([_rec(1, "error")])
        assert log.drop_errors() == 1  # a rewrite replaces the real file, not the link
    assert link.is_symlink() and [r["key"] for r in read_records(real)] == ["k0000"]


def test_a_log_without_its_header_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    with OutputLog(out, "jsonl", kind="caption", fingerprint="f1") as log:
        log.append([{"key": "a", "status": "ok"}])
    out.with_name(out.name + ".job.json").unlink()  # e.g. an old output, or a header deleted by hand
    with pytest.raises(JobMismatchError, match="no out.jsonl.job.json"):
        OutputLog(out, "jsonl", kind="caption", fingerprint="f1")
