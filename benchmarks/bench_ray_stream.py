"""Streaming Ray runner benchmarks, measured in one run (ratios, not absolute speeds).

1. scaling: items/s of a CPU-bound stage (BurnStep: fixed SHA-256 work per item, one intra-op thread in every
   actor) with 1 and then 2 actors on the same local Ray instance; reports the ratio. Timed from the first record
   to the last, so actor start-up is left out on both sides. Also the CPU time the whole run (driver, Ray, actors)
   spends per item beyond the work itself, which does not depend on the machine's load, and the share of the
   machine ratio it allows on 2 idle cores (cpu_bound_share_of_machine_ratio). Blocks of --batch-size rows (16, the
   job's default; 4 made 4x the blocks, and each block costs a claims call, a step call and its transfers; rows are
   keyed in the read tasks, so a block no longer costs a key actor's call and transfer).
2. rss: peak RSS of the driver process while it streams an N-row Parquet manifest (default 1,000,000) through
   zero-cost steps (NoopStep) into a JSONL output log. Ray workers are other processes; the driver holds the
   done keys and a block in flight, never the rows.

usage: python benchmarks/bench_ray_stream.py [scaling|rss|all] [--rows N] [--items N] [--rounds R]
Each part runs in its own process (a fresh driver for the RSS figure); prints one JSON object per part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "images" / "coffee.jpg"
SPEC_ITEM = "caption_agent.jobs.manifest:CaptionItem"


def _job(manifest: Path, out: Path, step: str, kwargs: dict, **opts: object) -> tuple[object, float]:
    from caption_agent.jobs.engine import JobOptions, run_job
    from caption_agent.jobs.ray_sources import RaySource, StepSpec
    from caption_agent.jobs.stages import StageSpec

    source = RaySource(
        inputs=[str(manifest)],
        style="alt_text",
        locale="en-US",
        limits={},
        steps=(StepSpec(f"caption_agent.jobs.pipeline_steps:{step}", kwargs, "cpu"),),
    )
    options = JobOptions(out=out, runner="ray", progress=False, **opts)  # type: ignore[arg-type]
    arrivals: list[tuple[float, int]] = []  # (time, records so far) as records reach the driver
    from caption_agent.jobs import engine

    real_write = engine.OutputLog.append
    cpu = CpuMeter()
    t_start = time.perf_counter()

    first: list[float] = []  # (CPU so far, records) when the first records arrive: start-up is before that

    def timed_append(self, records):
        if not arrivals:
            first.extend((cpu.total(), len(records)))
        done = (arrivals[-1][1] if arrivals else 0) + len(records)
        arrivals.append((time.perf_counter(), done))
        cpu.sample()
        return real_write(self, records)

    engine.OutputLog.append = timed_append  # type: ignore[method-assign]
    try:
        summary = run_job(
            "caption", iter(()), None, StageSpec("unused:Unused", SPEC_ITEM), options, fingerprint="b", source=source
        )
    finally:
        engine.OutputLog.append = real_write  # type: ignore[method-assign]
    _job.cpu_s = cpu.total()  # type: ignore[attr-defined]
    # Start-up (Ray Data planning, actors importing the package) apart from the CPU of the streaming itself.
    _job.startup_cpu_s = first[0]  # type: ignore[attr-defined]
    _job.steady_cpu_per_item = (_job.cpu_s - first[0]) / max(1, arrivals[-1][1] - first[1])  # type: ignore[attr-defined]
    _job.wall_s = time.perf_counter() - t_start  # type: ignore[attr-defined]
    _job.cpu_by_process = cpu.by_process()  # type: ignore[attr-defined]
    return summary, steady_rate(arrivals)


class CpuMeter:
    """CPU seconds (user + system) spent by this driver and every process under it (Ray's GCS, raylet, workers and
    actors) since the meter was made: sampled as records arrive, so actors that exit at the end still count up to
    their last sample. CPU time does not depend on how busy the machine is, which a shared box's wall clock does."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self.sample()
        self._first = dict(self._last)

    def sample(self) -> None:
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                if proc.pid not in self._names:  # Ray titles its workers "ray::<actor or task>"
                    title = " ".join(proc.cmdline()) or proc.name()
                    self._names[proc.pid] = "driver" if proc.pid == self._me.pid else title.split(" ")[0][:60]
            except Exception:  # noqa: BLE001 - a process that exited between listing and reading
                continue
            self._last[proc.pid] = t.user + t.system

    def total(self) -> float:
        self.sample()
        return sum(v - self._first.get(pid, 0.0) for pid, v in self._last.items())

    def by_process(self) -> dict[str, float]:
        """CPU seconds per process title (Ray's workers by the actor or task they last ran)."""
        out: dict[str, float] = {}
        for pid, v in self._last.items():
            name = self._names.get(pid, "?")
            out[name] = out.get(name, 0.0) + v - self._first.get(pid, 0.0)
        return out


def burn_cpu_per_item(rounds: int, n: int = 20) -> float:
    """CPU seconds of one BurnStep item on one thread: the work every runner overhead is compared with."""
    from caption_agent.jobs.pipeline_steps import BurnStep

    step = BurnStep(rounds=rounds, threads=1, final=False)
    step([(None, None)])
    t0 = time.process_time()
    for _ in range(n):
        step([(None, None)])
    return (time.process_time() - t0) / n


def steady_rate(arrivals: list[tuple[float, int]]) -> float:
    """Records/s between the arrival of 20% and of 90% of the records: actor start-up (one actor may start
    seconds after the other) and the drain at the end are left out on both sides of a comparison."""
    total = arrivals[-1][1]
    t20, n20 = next(a for a in arrivals if a[1] >= 0.2 * total)
    t90, n90 = next(a for a in arrivals if a[1] >= 0.9 * total)
    return (n90 - n20) / (t90 - t20) if t90 > t20 else float("nan")


def _burn(args: tuple[int, int]) -> int:
    from caption_agent.jobs.pipeline_steps import BurnStep

    n, rounds = args
    step = BurnStep(rounds=rounds, threads=1, final=False)
    for _ in range(n):
        step([(None, None)])
    return n


def machine_ratio(items: int, rounds: int) -> float:
    """The same work in 1 and in 2 plain processes (no Ray): what this machine gives two workers right now.

    Spawned, never forked: a pool forked from a driver that has (or had) Ray running inherits its threads and
    sockets, and the process then never exited (two runs of ``scaling --items 3000`` hung after their timed runs)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rates = []
    for procs in (1, 2):
        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_burn, [(1, rounds)] * procs))  # start-up out of the timing
            t0 = time.perf_counter()
            done = sum(pool.map(_burn, [(items // procs, rounds)] * procs))
            rates.append(done / (time.perf_counter() - t0))
    return round(rates[1] / rates[0], 3)


def scaling(items: int, rounds: int, batch_size: int = 16) -> dict:
    import ray

    # The machine's own ratio before Ray starts and again after it stopped (load on a shared box drifts).
    machine = [machine_ratio(items // 2, rounds)]
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    idle = CpuMeter()  # what Ray's own processes spend per second with no job: paid per second, not per item
    time.sleep(5)
    idle_per_s = idle.total() / 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    manifest = tmp / "m.jsonl"
    # A brand hint per row makes every row its own computation (rows that differ only by id would share one).
    rows = ({"image": str(IMAGE), "id": f"r{i}", "brand": f"b{i}"} for i in range(items))
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result: dict = {"bench": "ray_scaling", "items": items, "rounds": rounds, "batch_size": batch_size}
    result["intra_op_threads"] = 1
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpu_per_item: list[float] = []
    idle_per_item: list[float] = []  # Ray's idle cost over each run's wall time, per item
    startup: list[float] = []  # CPU seconds before the first records came back
    by_process: dict[str, float] = {}  # CPU seconds per item by process title, mean of the four runs
    work = burn_cpu_per_item(rounds)
    try:
        for run, actors in enumerate((1, 2, 1, 2)):  # interleaved, so a change in machine load hits both sides
            summary, rate = _job(
                manifest,
                tmp / f"out{run}.jsonl",
                "BurnStep",
                {"rounds": rounds, "threads": 1},
                batch_size=batch_size,
                ray_cpu_actors=actors,
                ray_cpu_per_actor=1.0,
                flush_every=256,
            )
            assert summary.written == items, summary  # type: ignore[attr-defined]
            rates[actors].append(round(rate, 2))
            cpu_per_item.append(_job.steady_cpu_per_item)  # type: ignore[attr-defined]
            startup.append(_job.startup_cpu_s)  # type: ignore[attr-defined]
            idle_per_item.append(idle_per_s * _job.wall_s / items)  # type: ignore[attr-defined]
            for name, sec in _job.cpu_by_process.items():  # type: ignore[attr-defined]
                by_process[name] = by_process.get(name, 0.0) + sec / items / 4
        result["items_per_s_1_actor"], result["items_per_s_2_actors"] = rates[1], rates[2]
        # Where the runner loses, without the wall clock: the CPU the whole run spent per item beyond the work
        # itself (reading, keying, claims, transfers, actors, driver), from the first records back to the last
        # (start-up reported apart, as the wall-clock rates leave it out). With 1 actor that overhead runs on the idle
        # core; with 2 it takes from the workers, so on 2 idle cores the ratio is at best 2 * work / (work + overhead).
        overhead = max(0.0, sum(cpu_per_item) / len(cpu_per_item) - work)
        idle_ms = sum(idle_per_item) / len(idle_per_item) * 1e3
        result["cpu_ms_per_item"] = {
            "work": round(work * 1e3, 2),
            "runner_overhead": round(overhead * 1e3, 2),
            "of_which_ray_idle": round(idle_ms, 2),  # grows with wall time: a loaded machine inflates it
        }
        result["ray_idle_cpu_s_per_s"] = round(idle_per_s, 3)
        result["startup_cpu_s"] = [round(x, 2) for x in startup]
        result["cpu_bound_share_of_machine_ratio"] = round(work / (work + overhead), 3)
        top = sorted(by_process.items(), key=lambda kv: -kv[1])[:8]
        result["cpu_ms_per_item_by_process_with_startup"] = {name: round(sec * 1e3, 2) for name, sec in top}
        result["ratio_2_vs_1"] = round(sum(rates[2]) / sum(rates[1]), 3)
        result["load_average_1m"] = os.getloadavg()[0]
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    machine.append(machine_ratio(items // 2, rounds))
    result["machine_ratio_2_vs_1_processes_no_ray"] = machine
    result["runner_share_of_machine_ratio"] = round(result["ratio_2_vs_1"] / (sum(machine) / 2), 3)
    return result


def rss(rows: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    tiny = tmp / "tiny.jpg"
    tiny.write_bytes(IMAGE.read_bytes()[:2048])  # hashed per row: keep the keys cheap, the rows many
    manifest = tmp / "m.parquet"
    schema = pa.schema([("image", pa.string()), ("id", pa.string()), ("brand", pa.string())])
    with pq.ParquetWriter(manifest, schema) as w:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            ids = [f"r{i}" for i in range(start, start + n)]
            # One computation per row (a brand hint each): the claims ledger and the done keys at full size.
            w.write_table(pa.table({"image": [str(tiny)] * n, "id": ids, "brand": ids}), row_group_size=50_000)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 1024 * 1024)
    t0 = time.perf_counter()
    try:
        summary, _ = _job(
            manifest, tmp / "out.jsonl", "NoopStep", {}, batch_size=1024, flush_every=8192, ray_key_actors=2
        )
    finally:
        ray.shutdown()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(tmp / "out.jsonl", "rb") as fh:
        lines = sum(1 for _ in fh)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "bench": "ray_driver_rss",
        "rows": rows,
        "written": summary.written,  # type: ignore[attr-defined]
        "records_in_output": lines,
        "driver_peak_rss_mb": round(peak, 1),
        "driver_rss_before_ray_mb": round(base, 1),
        "elapsed_s": round(elapsed, 1),
        "rows_per_s": round(rows / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=["scaling", "rss", "all"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=16, help="Rows per block and per actor call (scaling).")
    parser.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "all":
        for part in ("scaling", "rss"):
            cmd = [sys.executable, __file__, part, "--rows", str(args.rows), "--items", str(args.items)]
            cmd += ["--batch-size", str(args.batch_size)]
            subprocess.run([*cmd, "--rounds", str(args.rounds)], check=True)
        return 0
    out = scaling(args.items, args.rounds, args.batch_size) if args.part == "scaling" else rss(args.rows)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
