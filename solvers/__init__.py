"""gdbench solvers: one gradient-descent linear-regression problem, every framework, honest timings as JSON.

Importing this package needs only NumPy; each framework is imported on demand through ``registry``.
"""

from .registry import FRAMEWORKS, REGISTRY, load
from .schema import SCHEMA_VERSION

__all__ = ["FRAMEWORKS", "REGISTRY", "SCHEMA_VERSION", "load"]
