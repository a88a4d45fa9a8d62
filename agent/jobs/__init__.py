"""Resumable batch jobs: caption a manifest of images, localize captions into many locales.

Each item has a stable key; results go to an append-only, fsync'd log (JSONL or Parquet) and a re-run skips
keys already written, so a job can be killed at any moment and re-run without losing or duplicating an item.
Names load lazily: importing ``agent.jobs`` imports no model, Ray or Prometheus code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caption_agent._lazy import lazy_exports

__all__ = [
    "CaptionJobOptions",
    "JobSummary",
    "LocalizeJobOptions",
    "read_records",
    "run_caption_job",
    "run_localize_job",
]

if TYPE_CHECKING:  # pragma: no cover
    from caption_agent.jobs.caption_job import CaptionJobOptions, run_caption_job
    from caption_agent.jobs.engine import JobSummary
    from caption_agent.jobs.localize_job import LocalizeJobOptions, run_localize_job
    from caption_agent.records import read_records

_LAZY = {
    "CaptionJobOptions": "caption_agent.jobs.caption_job",
    "run_caption_job": "caption_agent.jobs.caption_job",
    "JobSummary": "caption_agent.jobs.engine",
    "LocalizeJobOptions": "caption_agent.jobs.localize_job",
    "run_localize_job": "caption_agent.jobs.localize_job",
    "read_records": "caption_agent.records",
}


__getattr__ = lazy_exports(__name__, _LAZY)
