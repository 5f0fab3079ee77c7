"""One module per framework; each exposes ``FRAMEWORK``, an instance of ``solvers.base.Framework``."""
