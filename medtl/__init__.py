"""medtl — transfer learning analysis for medical image classification.

Namespaces: :mod:`medtl.data`, :mod:`medtl.evaluate` (more arrive with later layers).
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("data", "evaluate", "cli")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f"medtl.{name}")
    raise AttributeError(f"module 'medtl' has no attribute {name!r}")
