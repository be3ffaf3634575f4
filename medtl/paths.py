"""Where medtl reads and writes, resolved in one place (environment variable first, then
the checkout medtl runs from, never the current kernel's folder):

=================  ==========================================================================
folder             resolution
=================  ==========================================================================
results            ``$MEDTL_RESULTS``, else ``<checkout>/results``, else ``./results``
models (sources)   ``$MEDTL_MODELS``, else ``<results>/models``
cache              ``$MEDTL_CACHE/medtl``, else ``$XDG_CACHE_HOME/medtl``, else ``~/.cache/medtl``
notebooks          ``$MEDTL_NOTEBOOKS``, else ``<checkout>/notebooks``
published tables   ``$MEDTL_PUBLISHED``, else the tables shipped inside the package
=================  ==========================================================================

``<checkout>`` is the folder holding medtl's ``pyproject.toml`` and ``notebooks/`` when medtl
is installed from a clone (the quick start's editable install)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The clone medtl runs from (None for an installed wheel)."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else None


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """The results root: ``path`` (relative to the current folder), else ``$MEDTL_RESULTS``,
    else ``<checkout>/results``, else ``./results``."""
    if path is not None:
        return Path(path).expanduser().resolve()
    env = _env("MEDTL_RESULTS")
    if env is not None:
        return env
    root = checkout()
    return (root / "results") if root is not None else Path.cwd().resolve() / "results"


def models_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder of named medtl sources: ``path``, else ``$MEDTL_MODELS``, else
    ``<results root>/models``."""
    if path is not None:
        return Path(path).expanduser().resolve()
    return _env("MEDTL_MODELS") or results_dir() / "models"


def cache_dir(kind: str | None = None) -> Path:
    """medtl's cache (MD5 sums, features, fetched weights and tables), or its ``kind``
    sub-folder."""
    base = os.environ.get("MEDTL_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = Path(base).expanduser() / "medtl"
    return root / kind if kind else root


def notebooks_dir() -> Path:
    """The parameterised notebooks: ``$MEDTL_NOTEBOOKS``, else ``<checkout>/notebooks``."""
    env = _env("MEDTL_NOTEBOOKS")
    if env is not None:
        return env
    root = checkout()
    if root is None:
        raise FileNotFoundError("medtl's notebooks are not beside this installation; clone the repository "
                                "(the notebooks live in its notebooks/ folder) or set MEDTL_NOTEBOOKS")
    return root / "notebooks"


def published_dir(path: str | os.PathLike | None = None) -> Path:
    """The studies' published result tables: ``path``, else ``$MEDTL_PUBLISHED``, else the
    copy shipped in the package (``medtl/published``)."""
    p = Path(path).expanduser() if path is not None else (_env("MEDTL_PUBLISHED") or PACKAGE / "published")
    if not p.is_dir():
        raise FileNotFoundError(f"published tables not found at {p}; set MEDTL_PUBLISHED or pass the folder")
    return p
