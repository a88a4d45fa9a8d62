"""Helpers for dataset inputs: img2dataset-style WebDataset shards and a real S3-compatible server (moto)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

S3_KEY = "testing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_shard(path: Path, samples: list[dict], truncate_at: int | None = None) -> Path:
    """A tar shard as img2dataset writes it: KEY.jpg (or png/webp) + KEY.txt + KEY.json, in key order.

    ``samples``: dicts with ``key`` and any of ``image`` (bytes), ``ext``, ``txt``, ``json``. ``truncate_at``
    cuts the file to that many bytes (a shard damaged in transfer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for s in samples:
            parts = []
            if s.get("image") is not None:
                parts.append((s.get("ext", "jpg"), s["image"]))
            if s.get("txt") is not None:
                parts.append(("txt", s["txt"].encode()))
            if s.get("json") is not None:
                parts.append(("json", json.dumps(s["json"]).encode()))
            for ext, data in parts:
                info = tarfile.TarInfo(f"{s['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[:truncate_at] if truncate_at else data)
    return path


class MotoServer:
    """moto in server mode: a real S3-compatible HTTP endpoint on loopback, in its own process."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_KEY}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(log, "ab"),  # noqa: SIM115 - kept for the server's life
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).read()  # noqa: S310 - loopback
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto server exited: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("moto server did not start")

    @property
    def storage_options(self) -> dict:
        return {
            "key": S3_KEY,
            "secret": S3_KEY,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }

    def filesystem(self, bucket: str):
        """An s3fs filesystem on this server, with ``bucket`` created (boto3, as a user would)."""
        import boto3
        import s3fs

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=bucket)
        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
