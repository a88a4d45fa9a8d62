"""``python -m caption_agent.cli``: the same command line as the ``caption-agent`` entry point."""

from caption_agent.cli import app

app()
