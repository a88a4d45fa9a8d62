"""The docs cannot drift: every command and code block of README.md and docs/*.md is checked (scripts/check_docs.py
says how each kind is checked), quick ones are run, `serve` is started, probed and stopped, and numbers quoted from
the repository's data are regenerated and compared."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
assert _spec is not None and _spec.loader is not None
check_docs = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check_docs  # dataclasses look their module up while the class is built
_spec.loader.exec_module(check_docs)

BLOCKS = check_docs.all_blocks()
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
ENV["PATH"] = f"{BIN}{os.pathsep}{ENV.get('PATH', '')}"


def _of(*kinds: str) -> list:
    return [pytest.param(b, id=b.where) for b in BLOCKS if b.kind in kinds]


def test_every_block_has_a_known_check():
    assert len(BLOCKS) >= 20
    unknown = [f"{b.where}: {b.kind}" for b in BLOCKS if b.kind not in check_docs.KINDS]
    assert not unknown, f"unknown <!-- doc: KIND --> marks: {unknown}; kinds: {check_docs.KINDS}"


@pytest.mark.parametrize("block", _of("parse", "run", "serve", "output", "setup", "gpu"))
def test_commands_parse(block):
    problems = []
    if block.lang == "python":
        problems = check_docs.python_problems(block)
    else:
        for tokens in check_docs.shell_lines(block.text):
            if block.kind == "output" and not block.text.lstrip().startswith("$") and tokens[0] != "caption-agent":
                continue  # output lines
            problems += check_docs.command_problems(tokens)
        problems += check_docs.env_problems(block.text)
    if block.kind in ("setup", "gpu") and block.lang in ("bash", "sh", ""):
        done = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        problems += [done.stderr] if done.returncode else []
    assert not problems, f"{block.where}: {problems}"


@pytest.mark.parametrize("block", _of("config"))
def test_configs_validate(block):
    problems = check_docs.config_problems(block)
    assert not problems, f"{block.where}: {problems}"


@pytest.mark.parametrize(("where", "command"), check_docs.inline_commands(), ids=lambda v: str(v)[:60])
def test_inline_commands_parse(where, command):
    tokens = check_docs.shell_lines(command)[0]
    if tokens[0] == "caption-agent":
        problems = check_docs.cli_problems(tokens[1:], complete=False)
    else:
        problems = check_docs.script_problems(
            tokens if tokens[0].endswith(("python", "python3")) else ["python", *tokens]
        )
    assert not problems, f"{where}: {problems}"


def test_generated_fragments_are_current():
    found = list(check_docs.fragments())
    assert {name for _, name, _ in found} == set(check_docs.GENERATORS), "a generator is unused or unknown"
    stale = [
        f"{path.name} gen:{name}: {text!r} != {check_docs.GENERATORS[name]()!r}"
        for path, name, text in found
        if text != check_docs.GENERATORS[name]()
    ]
    assert not stale, f"run `python scripts/check_docs.py --write`: {stale}"


def test_named_paths_exist_and_rates_name_their_benchmark():
    assert check_docs.missing_paths() == []
    assert check_docs.uncited_rates() == []


@pytest.mark.parametrize("block", _of("output:eval"))
def test_eval_output_sample_is_the_committed_report(block):
    from caption_agent.eval.report import render_table

    report = json.loads((ROOT / "docs" / "eval_report.json").read_text(encoding="utf-8"))
    assert render_table(report).strip() == block.text.strip()


# --- blocks that run ------------------------------------------------------------------------------------------------
def _run(command: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder that looks like the repo root to the docs (examples/, tests/ linked) with a var/ of its own, where
    `make demo` ran exactly as the README's first line runs it (its setup step aside): var/catalog is its catalog.
    Yields the folder and the demo's steps with their results."""
    work = tmp_path_factory.mktemp("docs")
    for name in ("examples", "tests", "policies", "prompts"):
        (work / name).symlink_to(ROOT / name)
    plan = _run(f"make -n -C {ROOT} demo CATALOG={work / 'var' / 'catalog'}", ROOT, 60)
    assert plan.returncode == 0, plan.stderr
    steps = [line for line in plan.stdout.splitlines() if line.startswith(".venv/bin/")]
    done = [(step, _run(step.replace(".venv/bin/", f"{BIN}/", 1), ROOT)) for step in steps]
    return work, done


@pytest.mark.slow
def test_readme_first_commands(workdir):
    """`make demo` (ingest, then the quickstart) and `make test` as the README's first two lines name them."""
    _, done = workdir
    assert [step.split()[0].rsplit("/", 1)[-1] for step, _ in done] == ["caption-agent", "python"], done
    for step, result in done:
        assert result.returncode == 0, f"{step}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), step
    assert _run(f"make -n -C {ROOT} test", ROOT, 60).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("block", _of("run"))
def test_run_blocks(block, workdir):
    workdir = workdir[0]
    if block.lang == "python":
        done = subprocess.run(
            [sys.executable, "-c", block.text], cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{block.where}\n{done.stderr[-3000:]}"
        return
    for tokens in check_docs.shell_lines(block.text):
        done = _run(shlex.join(tokens), workdir)
        assert done.returncode == 0, f"{block.where}: {shlex.join(tokens)}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), f"{block.where}: {shlex.join(tokens)} printed nothing"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
@pytest.mark.parametrize("block", _of("serve"))
def test_serve_blocks(block, workdir):
    """`caption-agent serve` as the block writes it (on a free port), then its other lines against it, stopped."""
    workdir = workdir[0]
    lines = check_docs.shell_lines(block.text)
    serve = next(t for t in lines if t[:2] == ["caption-agent", "serve"])
    old = serve[serve.index("--port") + 1]
    port = str(_free_port())
    argv = [a if a != old else port for a in serve if a != "&"]
    proc = subprocess.Popen(
        argv, cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("serve did not become ready in 180 s")
        for tokens in lines:
            if tokens[0] == "curl":
                url = next(t for t in tokens if t.startswith("http")).replace(f":{old}", f":{port}")
                status, body = _get(url)
                assert status == 200, f"{block.where}: {url} -> {status} {body[:300]}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), proc.returncode
