"""A real multi-process Ray cluster on loopback: `ray start --head` plus a second node process (`ray start
--address`), each with `--block` so that the test owns their processes and stops exactly those."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from datasets_helpers import free_port

RAY = str(Path(os.sys.executable).with_name("ray"))
# Token authentication turns itself on when ~/.ray holds a token; a loopback test cluster runs without it, and
# the drivers that join it (tests, job subprocesses) must say so too.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


class RayCluster:
    """Head node (``head_cpus``) and one worker node (``worker_cpus`` plus ``worker_resources``)."""

    def __init__(
        self,
        log_dir: Path,
        head_cpus: float = 1,
        worker_cpus: float = 1,
        worker_resources: dict[str, float] | None = None,
        object_store_mb: int = 200,
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's socket paths must stay under ~107 characters: a short temp folder of our own.
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.env = {**os.environ, **CLUSTER_ENV}
        self.procs: list[subprocess.Popen] = []
        common = [f"--object-store-memory={object_store_mb * 1024 * 1024}", "--disable-usage-stats", "--block"]
        self._start(
            log_dir / "ray-head.log",
            [
                "--head",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                f"--num-cpus={head_cpus}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
                *self._ports(),
                *common,
            ],
        )
        self.wait_nodes(1)
        self._start(
            log_dir / "ray-worker.log",
            [
                f"--address={self.address}",
                "--node-ip-address=127.0.0.1",
                f"--num-cpus={worker_cpus}",
                f"--resources={json.dumps(worker_resources or {})}",
                *self._ports(),
                *common,
            ],
        )
        self.wait_nodes(2)

    @staticmethod
    def _ports() -> list[str]:
        return [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
        ]

    def _start(self, log: Path, args: list[str]) -> None:
        out = open(log, "ab")  # noqa: SIM115 - kept for the node's life
        self.procs.append(subprocess.Popen([RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT, env=self.env))

    def nodes(self) -> list[dict]:
        code = (
            f"import ray, json; ray.init(address='{self.address}', log_to_driver=False);"
            "print(json.dumps([n for n in ray.nodes() if n['Alive']])); ray.shutdown()"
        )
        out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120)
        lines = [x for x in out.stdout.splitlines() if x.startswith("[")]
        return json.loads(lines[-1]) if lines else []

    def wait_nodes(self, n: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a ray node process exited during start-up")
            try:
                if len(self.nodes()) >= n:
                    return
            except (subprocess.TimeoutExpired, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes")

    def _session_pids(self) -> set[int]:
        """Processes of this cluster: those naming its temp folder (GCS, raylets, agents) and their children
        (workers). Found by that unique folder, so no other Ray on the machine is touched."""
        mine: set[int] = set()
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents[int(entry.name)] = ppid
            if self.temp_dir.encode() in cmdline:
                mine.add(int(entry.name))
        mine |= {p.pid for p in self.procs}
        grown = True
        while grown:
            children = {pid for pid, ppid in parents.items() if ppid in mine} - mine
            grown = bool(children)
            mine |= children
        return mine - {os.getpid()}

    def stop(self) -> None:
        # SIGTERM makes `ray start --block` stop what it started; whatever is left of this session goes after.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self._session_pids()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if left:
                time.sleep(3)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
