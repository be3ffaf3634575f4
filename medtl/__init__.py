"""medtl — transfer learning analysis for medical image classification.

Namespaces (imported on first use, as scanpy's ``sc.pp`` / ``sc.tl``):

* :mod:`medtl.data` — MedMNIST and user images as in-memory ``ImageSet``s, folds, unions, loaders
* :mod:`medtl.evaluate` — task-aware AUC / ACC (medmnist's definitions), bootstrap CIs
* :mod:`medtl.models` — architecture table, weight sources, surgery, truncation, RI/WT/ST
* :mod:`medtl.train` — ``fit`` / ``evaluate`` with resume, pre-training and grid recipes
* :mod:`medtl.features` — activations of named layers, cached
* :mod:`medtl.transfer` — transferability metrics, ``score``, ``correlate`` and statistics
* :mod:`medtl.similarity` — CKA, CCA family, prediction similarity, probes, layer importance
* :mod:`medtl.results`, :mod:`medtl.experiments` — tidy run records, papermill runs and sweeps
* :mod:`medtl.plots`, :mod:`medtl.widgets`, :mod:`medtl.analysis`, :mod:`medtl.report` — figures,
  explorers, analyses of published or own results, HTML reports
* :mod:`medtl.study`, :mod:`medtl.demo` — the study's steps as functions; the ``medtl demo`` job
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("data", "evaluate", "models", "train", "features", "transfer", "similarity", "results",
               "experiments", "plots", "widgets", "analysis", "report", "study", "demo", "cli")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f"medtl.{name}")
    raise AttributeError(f"module 'medtl' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
