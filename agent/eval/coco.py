"""COCO caption metrics through pycocoevalcap, at corpus level, exactly as ``COCOEvalCap.evaluate`` computes them.

References and candidates are tokenized with pycocoevalcap's PTBTokenizer (Stanford CoreNLP, Java), then scored
with Bleu(4), Meteor() (Java, ~2 GB heap), Rouge() and Cider(). SPICE is left out: it downloads CoreNLP models.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from typing import Hashable, Iterator, Mapping, Sequence, TypeVar

from caption_agent.errors import CaptionAgentError

K = TypeVar("K", bound=Hashable)  # a group's key (e.g. (run label, style))

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


class JavaMissingError(CaptionAgentError):
    fix = (
        "install a Java runtime (Debian/Ubuntu: `apt-get install default-jre-headless`) so that `java` is on "
        "PATH; pycocoevalcap's tokenizer and METEOR run in Java."
    )


def _one_line(text: str) -> str:
    # PTBTokenizer reads one caption per line: any line break inside a caption would shift every later caption.
    return " ".join(text.split())


def coco_scores(
    references: Mapping[str, Sequence[str]], candidates: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Corpus-level scores and per-image scores, for the images in ``candidates`` (each needs references).

    Returns ({metric: score}, {image_id: {metric: score}}); metric names are COCOEvalCap's (``METRICS``).
    """
    return coco_scores_groups(references, {"": candidates})[""]


def coco_scores_groups(
    references: Mapping[str, Sequence[str]], groups: Mapping[K, Mapping[str, str]]
) -> dict[K, tuple[dict[str, float], dict[str, dict[str, float]]]]:
    """``coco_scores`` for several groups of candidates (e.g. one per style), each scored on its own, with one
    tokenizer run and one METEOR process for all (Java start-up dominates on small sets)."""
    from caption_agent._extras import require

    require("pycocoevalcap", "eval", "COCO caption metrics")
    if shutil.which("java") is None:
        raise JavaMissingError("COCO caption metrics need Java (PTBTokenizer, METEOR), and `java` is not on PATH.")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted({i for cands in groups.values() for i in cands})
    missing = [i for i in ids if not references.get(i)]
    if not ids or missing or any(not cands for cands in groups.values()):
        raise CaptionAgentError(
            f"COCO metrics need at least one candidate per group, each with references; "
            f"{len(missing)} candidate(s) have none (e.g. {missing[:3]}).",
            fix="match results to the references' image ids before scoring.",
        )
    gts = {i: [{"caption": _one_line(c)} for c in references[i]] for i in ids}
    res = {(g, i): [{"caption": _one_line(text)}] for g, cands in groups.items() for i, text in cands.items()}
    out: dict[K, tuple[dict[str, float], dict[str, dict[str, float]]]] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print progress and BLEU internals
        tokenizer = PTBTokenizer()  # tokenizes line by line: one run for all groups gives the same tokens
        with _without_tokenizer_chatter():
            gts_tok = tokenizer.tokenize(gts)
            res_tok = tokenizer.tokenize(res)
        meteor = Meteor()
        try:
            for group, cands in groups.items():
                g_gts = {i: gts_tok[i] for i in cands}
                g_res = {i: res_tok[(group, i)] for i in cands}
                out[group] = _score(
                    g_gts,
                    g_res,
                    [(Bleu(4), list(METRICS[:4])), (meteor, ["METEOR"]), (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])],
                )
        finally:
            _close_meteor(meteor)
    return out


@contextlib.contextmanager
def _without_tokenizer_chatter() -> Iterator[None]:
    """PTBTokenizer's Java process writes "PTBTokenizer tokenized N tokens at ..." to the inherited stderr (file
    descriptor 2): capture it there and pass on every other line (a Java error stays visible)."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not line.startswith("PTBTokenizer tokenized"):
                    sys.stderr.write(line)


def _score(gts: dict, res: dict, scorers: list) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    overall: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {i: {} for i in gts}
    for scorer, names in scorers:
        score, scores = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, scores = [score], [scores]
        for name, value, values in zip(names, score, scores):
            overall[name] = float(value)
            for image_id, v in zip(gts.keys(), values):
                per_image[image_id][name] = float(v)
    return overall, per_image


def _close_meteor(meteor) -> None:
    """End METEOR's Java process now instead of at garbage collection."""
    proc = meteor.meteor_p
    with meteor.lock:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
