"""Quality numbers from reviewers' verdicts: acceptance (approved as is), edit rate, rejection rate and edit
distance, per style, locale, drafter or refiner, per day or week. The numbers a team watches after changing a
model or a policy; the service's API, `caption-agent eval review` and its plot all read them from here."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterable, Literal

DIMENSIONS = ("style", "locale", "drafter", "refiner", "audit")
Period = Literal["day", "week", "all"]


def period_of(at: str, period: Period) -> str:
    """The bucket of an ISO timestamp: '2026-12-06' (day), '2026-W49' (ISO week) or 'all'."""
    if period == "all" or not at:
        return "all" if period == "all" else "unknown"
    when = dt.datetime.fromisoformat(at)
    if period == "day":
        return when.date().isoformat()
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def quality(rows: Iterable[dict[str, Any]], by: str | None = None, period: Period = "all") -> list[dict[str, Any]]:
    """One row per (period, value of ``by``): counts, rates and the mean word-level edit distance of edits.

    ``rows`` are verdicts with their item's dimensions (``ReviewDesk.verdict_rows``); ``by`` one of DIMENSIONS
    or None for all items together."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(DIMENSIONS)}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        value = "" if by is None else str(bool(row[by]) if by == "audit" else (row[by] or "(none)"))
        groups[(period_of(row.get("at") or "", period), value)].append(row)
    out = []
    for (bucket, value), members in sorted(groups.items()):
        n = len(members)
        counts = {v: sum(1 for m in members if m["verdict"] == v) for v in ("approve", "edit", "reject")}
        edits = [m for m in members if m["verdict"] == "edit"]
        words = sum(m.get("words") or 0 for m in edits)
        entry: dict[str, Any] = {"period": bucket}
        if by is not None:
            entry[by] = value
        entry.update(
            n=n,
            approved=counts["approve"],
            edited=counts["edit"],
            rejected=counts["reject"],
            acceptance=counts["approve"] / n,
            edit_rate=counts["edit"] / n,
            rejection_rate=counts["reject"] / n,
            # Words changed per edit, and per word of the caption the edit replaced.
            edit_distance=(sum(m.get("distance") or 0 for m in edits) / len(edits)) if edits else None,
            edit_share=(sum(m.get("distance") or 0 for m in edits) / words) if words else None,
        )
        out.append(entry)
    return out


def render_table(rows: list[dict[str, Any]], by: str | None) -> str:
    head = ["period", *([by] if by else []), "n", "accept", "edit", "reject", "edit dist"]
    lines = [head]
    for r in rows:
        dist = "-" if r["edit_distance"] is None else f"{r['edit_distance']:.1f}"
        lines.append(
            [r["period"], *([r[by]] if by else []), str(r["n"]), f"{r['acceptance']:.0%}", f"{r['edit_rate']:.0%}",
             f"{r['rejection_rate']:.0%}", dist]
        )  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
