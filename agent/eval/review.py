"""`caption-agent eval review`: the quality numbers of reviewed captions (acceptance, edit rate, rejection rate,
edit distance) per style, locale, drafter or refiner, over time, from a review queue and its verdicts; a plot
of the rates per period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caption_agent.policies.review_stats import Period, quality


def review_report(
    queue: Path | str, decisions: Path | str | None = None, by: str | None = None, period: Period = "day"
) -> dict[str, Any]:
    """The report of ``queue``'s verdicts (``decisions``: '<queue>.decisions.jsonl' by default, as the service
    writes them): overall numbers, and rows per (period, ``by``)."""
    from caption_agent.errors import PolicyError
    from caption_agent.policies.review_desk import ReviewDesk

    queue = Path(queue)
    if not queue.is_file():
        raise PolicyError(f"no review queue at {str(queue)!r}.", fix="pass the queue JSONL the service or jobs write.")
    decisions = Path(decisions) if decisions else queue.with_name(queue.name + ".decisions.jsonl")
    desk = ReviewDesk(queue, decisions)
    rows = desk.verdict_rows()
    overall = quality(rows, None, "all")
    return {
        "queue": str(queue),
        "decisions": str(decisions),
        "waiting": desk.waiting(),
        "by": by,
        "period": period,
        "overall": overall[0] if overall else None,
        "rows": quality(rows, by, period),
    }


def plot_review(report: dict[str, Any], path: Path | str) -> Path:
    """Acceptance, edit and rejection rate per period (one line per group) and the mean edit distance."""
    from caption_agent._extras import require

    matplotlib = require("matplotlib", "eval", "The evaluation plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from caption_agent.eval.plot import save_figure

    by = report["by"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        groups.setdefault(row.get(by, "all") if by else "all", []).append(row)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True)
    panels = (("acceptance", "accepted as is"), ("edit_rate", "edited"), ("rejection_rate", "rejected"),
              ("edit_distance", "words changed per edit"))  # fmt: skip
    for ax, (key, title) in zip(axes, panels):
        for name, rows in groups.items():
            points = [(r["period"], r[key]) for r in rows if r[key] is not None]
            if points:
                ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=f"{name}")
        ax.set_title(title)
        if key != "edit_distance":
            ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=45)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"review outcomes per {report['period']}" + (f" and {by}" if by else ""))
    return save_figure(fig, path, dpi=100)
