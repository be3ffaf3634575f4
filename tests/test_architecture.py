"""medtl's shape: the layer table of docs/architecture.md holds for every import, nothing
imports another module's private names, functions and notebook cells stay short, package
``__init__`` files only re-export, and adding a metric / measure / architecture / dataset
family is one registration that flows through the whole stack."""

import ast
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn

import medtl.data as D
import medtl.models as M
import medtl.similarity as S
import medtl.transfer as TR
from medtl import study

PACKAGE = REPO / "medtl"
FILES = sorted(PACKAGE.rglob("*.py"))


def _module_name(path):
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layers() -> dict[str, int]:
    table = (REPO / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(medtl[\w.]*)` \|", table, re.M)
    assert len(rows) >= 20, "the layer table of docs/architecture.md was not found"
    return {module: int(level) for level, module in rows}


def _imports(path):
    """(module imported, names imported from it, line) for every import in a file, at any
    depth (function-level imports included); relative imports resolved."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno


def _layer_of(module: str, layers: dict[str, int]) -> tuple[str, int] | None:
    best = max((m for m in layers if module == m or module.startswith(m + ".")), key=len, default=None)
    return (best, layers[best]) if best else None


def test_no_module_imports_a_higher_layer():
    layers = _layers()
    problems = []
    for path in FILES:
        me = _layer_of(_module_name(path), layers)
        assert me is not None or _module_name(path) == "medtl", f"{path} is not in docs/architecture.md's layer table"
        for target, names, line in _imports(path):
            if not target.startswith("medtl"):
                continue
            targets = [f"{target}.{n}" for n in names] if target == "medtl" or target in layers else [target]
            for t in targets:
                other = _layer_of(t, layers)
                if other is None or me is None or other[0] == me[0]:
                    continue
                if other[1] >= me[1]:
                    problems.append(f"{path.relative_to(REPO)}:{line} ({me[0]}, level {me[1]}) imports {t} "
                                    f"(level {other[1]})")
    assert not problems, "\n".join(problems)


def test_similarity_does_not_use_train():
    for path in (PACKAGE / "similarity").rglob("*.py"):
        for target, names, line in _imports(path):
            assert not (target == "medtl.train" or target.startswith("medtl.train.") or
                        (target == "medtl" and "train" in names)), f"{path}:{line} imports medtl.train"


def test_running_and_recording_experiments_does_not_import_torch():
    """A Slurm array task, ``medtl sweep`` and ``medtl status`` start from medtl.experiments
    and medtl.results: neither may pull in torch (~1.3 s per process), which only the
    notebooks they run need."""
    code = ("import sys, medtl.experiments, medtl.results, medtl.runtime\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"torch modules imported: {out[:300]}"

def test_nothing_imports_a_private_name_of_another_module():
    problems = []
    for path in FILES:
        for target, names, line in _imports(path):
            if target.startswith("medtl"):
                problems += [f"{path.relative_to(REPO)}:{line} imports {n} from {target}" for n in names
                             if n.startswith("_") and not n.startswith("__")]
        tree = ast.parse(path.read_text())
        imported = {alias.asname or alias.name.split(".")[-1]
                    for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
                    for alias in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                problems.append(f"{path.relative_to(REPO)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not problems, "\n".join(problems)


def test_package_inits_only_reexport():
    for path in PACKAGE.rglob("__init__.py"):
        if path.parent == PACKAGE:
            continue  # the top package: lazy namespaces and __version__
        for node in ast.parse(path.read_text()).body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
                isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"])
            assert ok, f"{path.relative_to(REPO)}:{node.lineno} holds implementation ({type(node).__name__})"


def test_no_function_is_over_80_lines():
    long = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {n} lines")
    assert not long, "\n".join(long)


def test_notebook_code_cells_are_short():
    """Logic lives in medtl: a code cell has at most 15 lines; the tagged ``parameters`` cell
    may be longer (up to 25) only because it holds nothing but plain assignments."""
    for path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            lines = len(cell.source.strip().splitlines())
            if "parameters" in cell.metadata.get("tags", []):
                body = ast.parse(cell.source).body
                assert all(isinstance(s, ast.Assign) for s in body), f"{path.relative_to(REPO)}: parameters cell has logic"
                assert lines <= 25, f"{path.relative_to(REPO)} parameters cell has {lines} lines (at most 25)"
            else:
                assert lines <= 15, f"{path.relative_to(REPO)} cell {i} has {lines} lines (at most 15)"


# --- one registration flows everywhere ---------------------------------------------------------
@pytest.fixture
def toys():
    """A toy metric, measure, architecture (a non-torchvision builder) and dataset family,
    registered at run time and removed afterwards."""

    @TR.register_metric(kind="features", label="toy", citation="a test")
    def toy_feature_mean(features, labels):
        """Mean of the first feature (a toy)."""
        x, _, _ = TR.check_features(features, labels)
        return float(x[:, 0].mean())

    @S.register_measure(label="toy")
    def toy_corr(x, y):
        """Correlation of the first columns (a toy)."""
        return float(np.corrcoef(np.asarray(x)[:, 0], np.asarray(y)[:, 0])[0, 1])

    class Tiny(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.block = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.fc(self.pool(self.block(torch.relu(self.conv(x)))).flatten(1))

    M.register_arch(M.ArchSpec("tiny", builder=Tiny, family="toy", head="fc", head_in=16, feature_node="fc",
                               feature_dim=16, layers=("conv", "block"), fu_layers=("conv", "block.0"), stem="conv",
                               min_size=8))
    D.register_family(D.Family("toyset", match=lambda name: name.startswith("toyset:"),
                               load=lambda name, split, size, root, **o: D.synthetic(
                                   name.split(":")[1], split, size, n=40),
                               names=lambda root: ["toyset:shape-a"], description="a test family"))
    yield
    TR.METRIC_TABLE.unregister("toy_feature_mean")
    S.MEASURES.unregister("toy_corr")
    M.ARCHS.unregister("tiny")
    D.FAMILIES.unregister("toyset")


def test_registrations_flow_through_the_stack(toys):
    data = D.get("toyset:shape-a", "train")  # the family
    assert len(data) == 40 and len(study.split("toyset:shape-a", "val", n=20)) == 20
    model = M.create("tiny", num_classes=4, seed=0)  # the non-torchvision architecture
    assert type(model).__name__ == "Tiny" and model.fc.out_features == 4
    sources = {"a": model, "b": M.create("tiny", num_classes=4, seed=1)}
    table = TR.score(sources, data, metrics=["toy_feature_mean", "logme"], progress=False)  # the metric
    toy = table[table.metric == "toy_feature_mean"].set_index("source").value
    import medtl.features as F
    feats = F.extract(model, data, "penultimate", progress=False)["penultimate"]
    assert toy["a"] == pytest.approx(float(feats[:, 0].double().mean()), rel=1e-6)
    assert "toy_feature_mean" in TR.METRICS  # in the default set
    matrix = S.cka_matrix(model, sources["b"], data, measure="toy_corr", pool="avg")  # the measure
    assert set(matrix.measure) == {"toy_corr"} and len(matrix) == 4 and matrix.value.between(-1, 1).all()
    with pytest.raises(ValueError, match="metric 'leep' is already registered"):
        TR.register_metric("leep", kind="probs")(lambda p, y: 0.0)


def test_cli_lists_registrations(toys, capsys):
    from medtl.cli import main

    for what, name in (("metrics", "toy_feature_mean"), ("measures", "toy_corr"), ("archs", "tiny"),
                       ("datasets", "toyset")):
        assert main(["list", what]) == 0
        assert name in capsys.readouterr().out


def test_duplicates_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="architecture 'resnet18' is already registered"):
        M.register_arch(M.spec("resnet18"))
    with pytest.raises(ValueError, match="unknown similarity measure 'ckaa'; valid: cka, cka_debiased"):
        S.compare(np.eye(5), np.eye(5), "ckaa")
    with pytest.raises(ValueError, match="unknown dataset 'nosuchset'"):
        D.get("nosuchset")
    assert subprocess.run([sys.executable, "-m", "medtl.cli", "list", "metrics"], capture_output=True,
                          text=True, check=True).stdout.count("\n") >= len(TR.METRICS)
