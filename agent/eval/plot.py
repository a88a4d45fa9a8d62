"""``--plot``: one PNG with the caption metrics per group (bars) and caption lengths per preset (strips); for a
comparison report, one bar series / strip per (group, configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caption_agent.eval.coco import METRICS


def plot_report(report: dict[str, Any], path: Path | str) -> Path:
    """Write the report's figure to ``path`` (PNG, matplotlib's Agg backend: no display needed)."""
    from caption_agent._extras import require

    matplotlib = require("matplotlib", "eval", "The evaluation plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"] if "comparison" in report else {"": report}
    tag = (lambda label: f" [{label}]") if len(runs) > 1 else (lambda label: "")
    group_names = dict.fromkeys(k for r in runs.values() for k in r["captions"])
    series = [
        (f"{group}{tag(label)}", r["captions"][group], r.get("clip_s"))
        for group in group_names
        for label, r in runs.items()
        if "metrics" in r["captions"].get(group, {})
    ]
    extra = ["CLIP-S"] if any(clip for _, _, clip in series) else []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    names = [*METRICS, *extra]
    width = 0.8 / max(len(series), 1)
    for i, (name, row, clip) in enumerate(series):
        values = [row["metrics"][m] for m in METRICS] + ([clip["mean"] if clip else 0.0] if extra else [])
        ax1.bar([x + i * width for x in range(len(names))], values, width, label=f"{name} (n={row['captions']})")
    gwidth = 0.6 / len(runs)
    for i, (label, r) in enumerate(runs.items()):
        g = r["grounding"]
        ax1.bar(
            [len(names) + i * gwidth, len(names) + 1 + i * gwidth],
            [g["precision"] or 0.0, g["recall"] or 0.0],
            gwidth,
            color="grey",
            alpha=1.0 - 0.5 * i / len(runs),
            label=f"grounding, all captions{tag(label)}",
        )
    gmid = gwidth * (len(runs) - 1) / 2
    ax1.set_xticks(
        [x + width * (len(series) - 1) / 2 for x in range(len(names))] + [len(names) + gmid, len(names) + 1 + gmid],
        [*names, "ground P", "ground R"],
        rotation=30,
    )
    ax1.set_title("Caption metrics (CIDEr on a 0-10 scale)", fontsize=10)
    ax1.legend(fontsize=8)
    preset_names = dict.fromkeys(k for r in runs.values() for k in r["compliance"])
    presets = [
        (f"{name}{tag(label)}", r["compliance"][name])
        for name in preset_names
        for label, r in runs.items()
        if name in r["compliance"]
    ]
    for i, (_name, row) in enumerate(presets):
        lengths = row["chars"].get("all", [])
        ax2.scatter([i] * len(lengths), lengths, alpha=0.6)
        ax2.hlines(row["limits"]["max_chars"], i - 0.3, i + 0.3, colors="red")
        if row["limits"]["min_chars"]:
            ax2.hlines(row["limits"]["min_chars"], i - 0.3, i + 0.3, colors="grey", linestyles="dashed")
    ax2.set_xticks(range(len(presets)), [name for name, _ in presets], rotation=30)
    ax2.set_ylabel("characters")
    ax2.set_title("Caption length per preset (red: max_chars, dashed: min_chars)", fontsize=10)
    return save_figure(fig, path, dpi=90)


def save_figure(fig: Any, path: Path | str, dpi: int) -> Path:
    """Lay ``fig`` out, write it as PNG to ``path`` (folders made) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
