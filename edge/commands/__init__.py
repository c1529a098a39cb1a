"""Implementations of the ``edge`` subcommands (argument parsing lives in ``edge.cli``)."""
