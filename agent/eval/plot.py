"""``--plot``: one PNG with the caption metrics per group (bars) and caption lengths per preset (strips)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.eval.coco import METRICS


def plot_report(report: dict[str, Any], path: Path | str) -> Path:
    """Write the report's figure to ``path`` (PNG, matplotlib's Agg backend: no display needed)."""
    from agent._extras import require

    matplotlib = require("matplotlib", "eval", "The evaluation plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: v for k, v in report["captions"].items() if "metrics" in v}
    extra = ["CLIP-S"] if report.get("clip_s") else []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    names = [*METRICS, *extra]
    width = 0.8 / max(len(groups), 1)
    for i, (group, row) in enumerate(groups.items()):
        values = [row["metrics"][m] for m in METRICS] + ([report["clip_s"]["mean"]] if extra else [])
        ax1.bar([x + i * width for x in range(len(names))], values, width, label=f"{group} (n={row['captions']})")
    g = report["grounding"]
    ax1.bar([len(names), len(names) + 1], [g["precision"] or 0.0, g["recall"] or 0.0], 0.6, color="grey",
            label="grounding, all captions")
    ax1.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(names))] + [len(names), len(names) + 1],
                   [*names, "ground P", "ground R"], rotation=30)
    ax1.set_title("Caption metrics (CIDEr on a 0-10 scale)", fontsize=10)
    ax1.legend(fontsize=8)
    presets = report["compliance"]
    for i, (name, row) in enumerate(presets.items()):
        lengths = row["chars"].get("all", [])
        ax2.scatter([i] * len(lengths), lengths, alpha=0.6)
        ax2.hlines(row["limits"]["max_chars"], i - 0.3, i + 0.3, colors="red")
        if row["limits"]["min_chars"]:
            ax2.hlines(row["limits"]["min_chars"], i - 0.3, i + 0.3, colors="grey", linestyles="dashed")
    ax2.set_xticks(range(len(presets)), list(presets), rotation=30)
    ax2.set_ylabel("characters")
    ax2.set_title("Caption length per preset (red: max_chars, dashed: min_chars)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
