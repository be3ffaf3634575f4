"""The table of transferability metrics: one :class:`Metric` row per estimator, read by
:func:`medtl.transfer.score`, the CLI, notebooks, widgets, benchmarks and tests. Adding a
metric is one decorated function::

    @TR.register_metric(kind="features", citation="Me et al. 2026", label="MyScore")
    def my_score(features, labels):
        '''…formula, shapes…'''
        return float(...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._registry import Registry

#: What a metric reads: penultimate ``features`` (N×D), source-head ``probs`` (N×K), the
#: ``model`` itself (gradients), the features of the whole ``zoo`` of candidates at once,
#: a ``combination`` of other metrics' scores across the candidates, or ``static`` facts
#: about a source that ignore the target (size, ImageNet accuracy, pre-training data).
KINDS = ("features", "probs", "model", "zoo", "combination", "static")


@dataclass(frozen=True)
class Metric:
    """One transferability metric.

    Attributes:
        name: registry key (``"logme"``).
        fn: the pure function: ``fn(features, labels, **kw)`` (kind ``features``),
            ``fn(probs, labels)`` (``probs``), ``fn(model, data, **kw)`` (``model``),
            ``fn({source: features}, labels, **kw) -> {source: score}`` (``zoo``),
            ``fn(*required score Series, exclude=, **kw) -> Series`` (``combination``), or
            ``fn(facts: SourceFacts)`` (``static``: :mod:`.static`).
        kind: one of :data:`KINDS`.
        higher_is_better: the score's direction (every built-in metric: True).
        needs_seed: ``fn`` takes ``seed=`` (stochastic fits: mixtures, NCA, PCA, FU order).
        variants: the ``variant=`` values ``fn`` knows (``"study"``: a study's deviations).
        requires: for combinations, the metrics whose scores it combines.
        labels: the target label kinds it accepts: ``"single"`` (class indices) and/or
            ``"multilabel"`` (multi-hot).
        default: part of ``score``'s default set.
        label: display name (``"LP×FU"``); citation and description: one line each.
    """

    name: str
    fn: Callable
    kind: str
    higher_is_better: bool = True
    needs_seed: bool = False
    variants: tuple[str, ...] = ("official",)
    requires: tuple[str, ...] = ()
    labels: tuple[str, ...] = ("single",)
    default: bool = True
    label: str = ""
    citation: str = ""
    description: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


#: The registered metrics, in reporting order.
METRIC_TABLE: Registry[Metric] = Registry("metric")


def register_metric(name: str | None = None, *, kind: str, replace: bool = False, **fields) -> Callable:
    """Decorator registering a metric function (under its own name unless ``name``);
    ``fields`` are :class:`Metric` attributes. Returns the function unchanged."""
    if kind not in KINDS:
        raise ValueError(f"metric kind must be one of {KINDS}, got {kind!r}")

    def wrap(fn: Callable) -> Callable:
        key = name or fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        desc = fields.pop("description", None) or (doc[0] if doc else "")
        for req in fields.get("requires", ()):
            if req not in METRIC_TABLE:
                raise ValueError(f"combination {key!r} requires unknown metric {req!r}")
        METRIC_TABLE.register(key, Metric(key, fn, kind, description=desc, **fields), replace=replace)
        return fn

    return wrap


def metric(name: str) -> Metric:
    """The registered metric ``name`` (a ValueError lists the valid names)."""
    return METRIC_TABLE.get(name)


def metric_names(default_only: bool = False) -> tuple[str, ...]:
    """Registered metric names (with ``default_only``, those ``score`` runs by default)."""
    return tuple(n for n, m in METRIC_TABLE.items() if m.default or not default_only)


def metrics():
    """The metric table as a DataFrame: name, label, kind, direction, seed, variants,
    requires, label kinds, default, citation, description."""
    import pandas as pd

    return pd.DataFrame([{"metric": m.name, "label": m.display, "kind": m.kind,
                          "direction": "higher is better" if m.higher_is_better else "lower is better",
                          "seeded": m.needs_seed, "variants": ", ".join(m.variants), "requires": ", ".join(m.requires),
                          "labels": ", ".join(m.labels), "default": m.default, "citation": m.citation,
                          "description": m.description} for m in METRIC_TABLE.values()])


class _LiveNames(Sequence):
    """The default metric names, read from the registry at each use (so metrics registered
    later appear): behaves like a tuple of strings."""

    def __getitem__(self, i):
        return metric_names(default_only=True)[i]

    def __len__(self) -> int:
        return len(metric_names(default_only=True))

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, Sequence)) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


#: The default metric names (a live view of :data:`METRIC_TABLE`).
METRICS: Sequence[str] = _LiveNames()
