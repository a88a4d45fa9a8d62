"""``python -m caption_agent``: the same command line as the ``caption-agent`` entry point."""

from caption_agent.cli import app

app()
