"""The declared images: compose.yaml read and edited, versions asked of PyPI, hash locks, builds."""
