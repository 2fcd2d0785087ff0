"""``python -m visearch``: the CLI."""

from visearch.cli import app

app()
