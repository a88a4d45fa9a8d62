"""Ingest a product catalog: ``python scripts/ingest_catalog.py FILE --catalog DIR [options]``.

Same options and exit codes as ``caption-agent ingest`` (0 ok, 1 rows rejected, 2 fatal or usage error).
"""

from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ingest command on ``argv`` (``sys.argv[1:]`` when None) and return its exit code."""
    import typer

    from caption_agent.cli.catalog import ingest

    app = typer.Typer(add_completion=False)
    app.command()(ingest)
    try:
        # Standalone mode prints usage errors like the CLI does and always ends in SystemExit.
        app(args=list(sys.argv[1:] if argv is None else argv), prog_name="ingest_catalog")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
