"""The ``gdbench`` command line (Typer): commands only parse options and call plain functions."""
