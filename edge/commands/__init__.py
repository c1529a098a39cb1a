"""The ``edge`` subcommands, one module each: its parser (``add_parser``) and its handler (``run``)."""
