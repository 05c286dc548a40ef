"""The command line: ``campaign-analytics`` (``main``)."""

from streams.cli.main import main

__all__ = ["main"]
