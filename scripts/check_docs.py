"""Check every command and code block of README.md and docs/*.md against the code, so the docs cannot drift.

    python scripts/check_docs.py            # list every block and the check it gets (the tests run the checks)
    python scripts/check_docs.py --write    # regenerate the generated fragments from the repository's data

Each block (fenced, or indented by four spaces) gets a check from the comment right above it, ``<!-- doc: KIND -->``,
else from its language:

* ``run``     executed: quick commands, Python against the example catalog (tests/test_docs.py);
* ``serve``   ``caption-agent serve`` started on a free port, probed (/readyz, /v1/styles) and stopped;
* ``parse``   (default for shell and Python) ``caption-agent`` lines: the sub-command path and every option exist;
  ``make T``: the target exists; ``python scripts/S.py SUB``: the sub-command exists; Python: compiles, its imports
  resolve and its config/options calls validate;
* ``config``  (default for TOML, YAML, JSON) TOML validates as the agent config (or the service's, when the block
  names service.toml), YAML as a policy file, JSON parses; ``export CAPTION_AGENT_…`` lines validate as settings;
* ``output``  a sample of output: commands after ``$ `` are parse-checked; ``output:eval`` must equal the table
  ``eval captions`` renders from docs/eval_report.json;
* ``setup``, ``gpu``  installs, downloads, CUDA machines: shell syntax only (``bash -n``), ``caption-agent``
  lines parse-checked.

Inline ``caption-agent …`` code spans are parse-checked too. Numbers quoted from the repository's data sit in
generated fragments, ``<!-- gen:NAME -->…<!-- /gen -->``, that must equal what ``--write`` computes.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = ("run", "serve", "parse", "config", "output", "output:eval", "setup", "gpu")
_MARK = re.compile(r"<!--\s*doc:\s*([\w:]+)\s*-->")
_GEN = re.compile(r"<!-- gen:([\w-]+) -->(.*?)<!-- /gen -->", re.S)
_INLINE = re.compile(r"`(caption-agent [^`]+)`")
_INLINE_SCRIPT = re.compile(r"`(?:[^`]*&& )?((?:\S*python3? )?(?:benchmarks|scripts)/\w+\.py(?: [^`(]*)?)`")


@dataclass
class Block:
    file: Path
    line: int  # 1-based line of the block's first line of text
    lang: str
    kind: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def _default_kind(lang: str) -> str:
    return "config" if lang in ("toml", "yaml", "json") else "parse"


def blocks(path: Path) -> Iterator[Block]:
    """Fenced blocks and four-space indented blocks (after a blank line) of one markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i, mark = 0, ""
    while i < len(lines):
        line = lines[i]
        found = _MARK.search(line)
        if found:
            mark = found.group(1)
            i += 1
            continue
        if line.startswith("```"):
            lang, start, body = line[3:].strip(), i + 2, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield Block(path, start, lang, mark or _default_kind(lang), "\n".join(body))
            mark, i = "", i + 1
            continue
        if line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            start, body = i + 1, []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            yield Block(path, start, "", mark or "parse", "\n".join(body).rstrip())
            mark = ""
            continue
        if line.strip():
            mark = ""
        i += 1


def all_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path)]


def inline_commands() -> list[tuple[str, str]]:
    """(where, command) for every inline `caption-agent …` or `[python] benchmarks|scripts/S.py …` code span outside
    code blocks."""
    out = []
    for path in DOCS:
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            if fenced or line.startswith("    "):
                continue
            out += [(f"{path.relative_to(ROOT)}:{number}", m.group(1)) for m in _INLINE.finditer(line)]
            out += [(f"{path.relative_to(ROOT)}:{number}", m.group(1)) for m in _INLINE_SCRIPT.finditer(line)]
    return out


# --- shell lines --------------------------------------------------------------------------------------------------
def shell_lines(text: str) -> list[list[str]]:
    """Each command of a shell block as tokens: continuation lines joined, comments and ``$ `` prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    joined = re.sub(r"\n[ \t]+(?=\S)", " ", joined)  # an indented line continues the command above it
    out = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        if tokens:
            out.append(tokens)
    return out


def cli_problems(tokens: list[str], complete: bool = True) -> list[str]:
    """Why ``caption-agent TOKENS`` would not parse: an unknown sub-command or option, too many arguments, or (when
    ``complete``, i.e. not a mention in prose) too few (placeholders are fine)."""
    import typer

    from caption_agent.cli import app

    command: Any = typer.main.get_command(app)
    args = [t.strip("[]") for t in tokens if t.strip("[]") not in ("", "...", "…")]
    path = ["caption-agent"]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        names = args.pop(0).split("|")  # `review export|list|import` names several
        unknown = [n for n in names if command.get_command(None, n) is None]  # type: ignore[arg-type]
        if unknown:
            return [f"`{' '.join(path)}` has no sub-command {unknown[0]!r} (it has: {', '.join(command.commands)})"]
        path.append(names[0])
        hidden = [n for n in names if command.get_command(None, n).hidden]  # type: ignore[arg-type]
        if hidden:
            return [f"`{' '.join(path)}` is a hidden old spelling; the docs use the current one"]
        if len(names) > 1:
            return []
        command = command.get_command(None, names[0])  # type: ignore[arg-type]
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    problems, positional, i = [], 0, 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--help":
            return problems
        if arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\d.*", arg):
            name = arg.split("=", 1)[0]
            param = options.get(name)
            if param is None:
                problems.append(f"`{' '.join(path)}` has no option {name}")
            elif "=" not in arg and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                i += 1  # its value
        else:
            positional += 1
    if hasattr(command, "commands"):
        return problems + ([f"`{' '.join(path)}` needs a sub-command"] if complete and not args else [])
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if all(a.nargs >= 0 for a in arguments) and positional > sum(a.nargs for a in arguments):
        problems.append(f"`{' '.join(path)}` takes {sum(a.nargs for a in arguments)} argument(s), not {positional}")
    needed = sum(max(a.nargs, 1) for a in arguments if a.required)
    if complete and positional < needed:
        problems.append(f"`{' '.join(path)}` needs {needed} argument(s), got {positional}")
    return problems


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w-]+):", text, re.M))


def script_problems(tokens: list[str]) -> list[str]:
    """``python scripts/S.py SUB …``: the script exists and SUB is one of its sub-commands (``--help`` exits 0)."""
    import subprocess

    script = next((t for t in tokens if t.endswith(".py")), None)
    if script is None or not script.startswith(("scripts/", "benchmarks/", "examples/")):
        return []
    if not (ROOT / script).is_file():
        return [f"{script} does not exist"]
    rest = tokens[tokens.index(script) + 1 :]
    sub = [rest[0]] if rest and not rest[0].startswith("-") else []
    done = subprocess.run(
        [sys.executable, str(ROOT / script), *sub, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if done.returncode != 0:
        return [f"`{' '.join(tokens)}`: {done.stderr.strip()[-300:]}"]
    flags = [t.strip("[]").split("=")[0] for t in rest if t.strip("[]").startswith("--")]
    return [f"`{script}` has no option {f}" for f in flags if f not in done.stdout]


def command_problems(tokens: list[str]) -> list[str]:
    """Parse-check one shell command of a block."""
    if tokens[0] == "caption-agent":
        return cli_problems(tokens[1:])
    if tokens[0] == "make":
        missing = [t for t in tokens[1:] if "=" not in t and not t.startswith("-") and t not in make_targets()]
        return [f"Makefile has no target {t!r}" for t in missing]
    if tokens[0].endswith(("python", "python3")) and len(tokens) > 1 and tokens[1] != "-m":
        return script_problems(tokens)
    return []


# --- configs ------------------------------------------------------------------------------------------------------
def config_problems(block: Block) -> list[str]:
    import json
    import tomllib

    try:
        if block.lang == "toml":
            from caption_agent.config import AgentConfig
            from caption_agent.service.settings import ServiceSettings

            data = tomllib.loads(block.text)
            model: Any = ServiceSettings if "service.toml" in block.text else AgentConfig
            model.model_validate(data)
        elif block.lang == "json":
            json.loads(block.text)
        elif block.lang == "yaml":
            import tempfile

            from caption_agent.policies.schema import load_policy

            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / "policy.yaml"
                file.write_text(block.text, encoding="utf-8")
                load_policy(file)
        else:
            return env_problems(block.text)
    except Exception as exc:  # noqa: BLE001 - every failure is a doc problem to report
        return [f"{type(exc).__name__}: {exc}"]
    return []


def env_problems(text: str) -> list[str]:
    """``export CAPTION_AGENT_X__Y=value`` lines validate as agent settings (values that are shell expansions are
    replaced by a placeholder string)."""
    import os
    from unittest import mock

    from caption_agent.config import AgentConfig

    env = {}
    for tokens in shell_lines(text):
        if tokens[0] == "export" and len(tokens) > 1 and tokens[1].startswith("CAPTION_AGENT_"):
            name, _, value = tokens[1].partition("=")
            env[name] = "placeholder" if value.startswith("$") else value
    if not env:
        return []
    try:
        with mock.patch.dict(os.environ, env):
            AgentConfig.load()
    except Exception as exc:  # noqa: BLE001
        return [f"{type(exc).__name__}: {exc}"]
    return []


# --- python -------------------------------------------------------------------------------------------------------
_CONFIG_CALL = re.compile(r"(Config\.load|Settings|Options)$")


def python_problems(block: Block) -> list[str]:
    """Compiles; its imports resolve; statements that build configs or job options validate."""
    import ast

    try:
        tree = ast.parse(block.text)
    except SyntaxError as exc:
        return [f"SyntaxError: {exc}"]
    namespace: dict[str, Any] = {}
    problems = []
    for node in tree.body:
        run = isinstance(node, (ast.Import, ast.ImportFrom))
        call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if isinstance(call, ast.Call):
            run = run or bool(_CONFIG_CALL.search(ast.unparse(call.func)))
        if not run:
            continue
        try:
            exec(compile(ast.Module([node], []), block.where, "exec"), namespace)  # noqa: S102 - our own docs
        except NameError:
            continue  # a placeholder the prose defines (best_draft, facts)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"line {block.line + node.lineno - 1}: {type(exc).__name__}: {exc}")
    return problems


# --- measured numbers and the files the docs cite --------------------------------------------------------------------
_RATE = re.compile(r"\b\d[\d.,]*\s*(?:items|req|requests|captions|texts|img|images|records|products|sentences)/s\b")
_SOURCE = re.compile(r"benchmarks/\w+\.py|/usr/bin/time|<!-- gen:")
_PATH = re.compile(r"\b((?:benchmarks|scripts|examples|tests|agent|policies|prompts|retrieval)/[\w./-]*\w)")


def uncited_rates() -> list[str]:
    """Sections that quote a measured rate (``… items/s``) without naming what measured it (a benchmark script,
    ``/usr/bin/time``) or generating it: a rate must be reproducible by the command beside it."""
    out = []
    for path in DOCS:
        for section in re.split(r"\n(?=#+ )", path.read_text(encoding="utf-8")):
            found = _RATE.search(section)
            if found and not _SOURCE.search(section):
                out.append(f"{path.relative_to(ROOT)} '{section.splitlines()[0][:60]}': {found.group(0)}")
    return out


def missing_paths() -> list[str]:
    """Repository paths the docs name (benchmarks/…, scripts/…, examples/…) that do not exist."""
    out = []
    for path in DOCS:
        for m in _PATH.finditer(path.read_text(encoding="utf-8")):
            name = m.group(1).rstrip(".")
            placeholder = any(ch in name for ch in "*{<") or re.search(r"/[A-Z][A-Z_]+(\.|$)", name)
            if placeholder or (ROOT / name).exists():
                continue
            out.append(f"{path.relative_to(ROOT)}: {name}")
    return sorted(set(out))


# --- generated fragments ------------------------------------------------------------------------------------------
def _corpus_cases(folder: str) -> list[Any]:
    from caption_agent.eval.policies import load_corpus

    return load_corpus(ROOT / folder)


def _gen_corpus() -> str:
    return f"{len(_corpus_cases('tests/policies/corpus'))} cases"


def _gen_holdout() -> str:
    return f"{len(_corpus_cases('tests/policies/holdout'))} cases"


def _gen_corpus_rules() -> str:
    """Positives per rule (every case that names the rule) and the range of negatives, from the corpus files."""
    from caption_agent.eval.policies import STAGE_RULES

    cases = _corpus_cases("tests/policies/corpus")
    pos: dict[str, int] = {}
    neg: dict[str, int] = {}
    for case in cases:
        for rule in STAGE_RULES[case.stage]:
            bucket = pos if rule in case.fires else neg
            bucket[rule] = bucket.get(rule, 0) + 1
    shown = ", ".join(f"`{r}` {n}/{n}" for r, n in sorted(pos.items(), key=lambda kv: -kv[1]))
    return f"{shown}; {min(neg.values())}–{max(neg.values())} negatives per rule"


def _gen_presets() -> str:
    from caption_agent.drafters.presets import load_presets

    presets = load_presets()
    return f"{len(presets)} presets in {len({p.family for p in presets.values()})} families"


def _gen_basic_level() -> str:
    rows = (ROOT / "agent/drafters/data/basic_level.tsv").read_text(encoding="utf-8").splitlines()
    return f"{sum(1 for r in rows if r.strip() and not r.startswith('#'))} names"


GENERATORS: dict[str, Callable[[], str]] = {
    "policy-corpus": _gen_corpus,
    "policy-holdout": _gen_holdout,
    "policy-corpus-rules": _gen_corpus_rules,
    "vlm-presets": _gen_presets,
    "basic-level-names": _gen_basic_level,
}


def fragments() -> Iterator[tuple[Path, str, str]]:
    """(file, name, text as written) of every generated fragment in the docs."""
    for path in DOCS:
        for m in _GEN.finditer(path.read_text(encoding="utf-8")):
            yield path, m.group(1), m.group(2)


def write_fragments() -> int:
    changed = 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = _GEN.sub(lambda m: f"<!-- gen:{m.group(1)} -->{GENERATORS[m.group(1)]()}<!-- /gen -->", text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate the generated fragments")
    args = parser.parse_args(argv)
    if args.write:
        print(f"rewrote {write_fragments()} file(s)")
        return 0
    for block in all_blocks():
        first = block.text.strip().splitlines()[0] if block.text.strip() else ""
        print(f"{block.kind:12s} {block.where:28s} {first[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
