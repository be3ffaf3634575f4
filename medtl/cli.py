"""The ``medtl`` command.

    medtl demo [--out DIR] [--quick]            the main job: a small transferability study + report
    medtl run NOTEBOOK [-p KEY VALUE ...]       execute a notebook with papermill into results/
    medtl sweep GRID.yaml [--max-parallel N]    run a notebook over a parameter grid (resumable)
    medtl sweep GRID.yaml --executor slurm      ... as a Slurm job array; --status lists run states
    medtl report RESULTS_DIR                    analysis notebooks -> HTML + PNG figures
    medtl data info [--root DIR] [--no-md5]     every MedMNIST 2D flag and its files' status
    medtl data verify [FLAG ...] [--size N]     MD5-check files (all present ones by default)
    medtl data download FLAG ... [--size N]     fetch official files into the data root
    medtl data published                        fetch the studies' large published tables (sha256-checked)
    medtl list {metrics,measures,archs,datasets}   what medtl knows (its registries)
    medtl rank TARGET --sources S [S ...]       which source to transfer from: scores with intervals,
                                                a recommendation and a figure [--verify K]
"""

from __future__ import annotations

import argparse
import sys


def _data_info(args: argparse.Namespace) -> int:
    from . import data

    root = data.resolve_root(args.root)
    table = data.info_table(root, check_md5=not args.no_md5)
    size_cols = [c for c in table.columns if c.endswith("px")]
    marks = {"verified": "ok", "present": "present", "missing": "-", "md5 mismatch": "BAD MD5"}
    table[size_cols] = table[size_cols].apply(lambda col: col.map(marks))
    print(f"MedMNIST 2D data root: {root}")
    print("(file status per size: ok = present and MD5-verified, - = missing)")
    print(table.to_string(index=False))
    n_ok = int((table[size_cols] == "ok").to_numpy().sum())
    n_bad = int((table[size_cols] == "BAD MD5").to_numpy().sum())
    print(f"{n_ok} verified file(s), {n_bad} with a bad MD5 under {root}")
    return 1 if n_bad else 0


def _data_verify(args: argparse.Namespace) -> int:
    from . import data

    sizes = [args.size] if args.size else list(data.SIZES)
    flags = args.flags or list(data.FLAGS)
    bad = 0
    checked = 0
    for flag in flags:
        for size in sizes:
            if not args.flags and data.status(flag, size, args.root, check_md5=False) == "missing":
                continue
            checked += 1
            try:
                file = data.verify(flag, size, args.root, rehash=True)
                print(f"ok       {file}")
            except (FileNotFoundError, ValueError) as err:
                bad += 1
                print(f"FAILED   {err}")
    print(f"{checked - bad} of {checked} file(s) verified")
    return 1 if bad else 0


def _data_download(args: argparse.Namespace) -> int:
    from . import data

    for flag in args.flags:
        print(data.download(flag, args.size, args.root))
    return 0


def _data_published(args: argparse.Namespace) -> int:
    from . import analysis

    for file in analysis.fetch_published(args.study, args.dest, args.url):
        print(file)
    return 0


def _list(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import data, models, similarity, transfer

    if args.what == "metrics":
        table = transfer.metrics()[["metric", "label", "kind", "default", "citation"]]
    elif args.what == "measures":
        table = similarity.measures()[["measure", "label", "input", "pool", "citation"]]
    elif args.what == "archs":
        table = pd.DataFrame([{"arch": a.name, "family": a.family, "head": a.head, "feature_dim": a.feature_dim,
                               "min_size": a.min_size, "granularities": ", ".join(a.granularities),
                               "small_stem": a.small_stem or "-", "truncation": a.truncation or "-"}
                              for a in models.ARCHS.values()])
    else:
        table = data.families_table()
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.to_string(index=False))
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from . import models

    for name in args.names:
        print(models.fetch(name, url=args.url, progress=not args.quiet))
    return 0


def _models_convert(args: argparse.Namespace) -> int:
    from . import models

    if args.kind == "byol":
        print(models.convert_byol(args.path, args.dest))
    else:
        print(models.convert_simclr(args.path, args.kind, args.dest, ema=args.ema))
    return 0


def _models_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import models

    if args.kind == "foundation":
        table = models.foundation_table().drop(columns="repo")
        with pd.option_context("display.max_colwidth", 40, "display.width", 250):
            print(table.to_string(index=False))
        print(f"local copies: {models.foundation_dir()}/<name> (else the hub); cpu: yes < 10 GMACs/image, "
              "slow < 60, no above; gated rows need HF_TOKEN with access granted")
        return 0
    table = models.inits_table()[["name", "category", "data", "method", "fmt", "cached", "file"]]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(table.to_string(index=False))
    print(f"weights cache: {models.weights_cache()}")
    return 0


def _parse_value(text: str):
    """A -p value: YAML scalars/lists (``3``, ``0.1``, ``true``, ``[a, b]``), else the string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, root=args.root, prefer=args.data, quick=args.quick, fresh=args.fresh, offline=args.offline,
             keep_checkpoints=args.keep_checkpoints)
    return 0


def _rank(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from . import analysis, paths
    from . import plots as P
    from . import transfer as TR

    target = args.target
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(target)).name) or "target"
    out = Path(args.out) if args.out else paths.results_dir(args.results) / "rank" / name
    images = "the whole training split" if args.n is None else f"up to {args.n} training images"
    print(f"medtl rank: target {target}, {len(args.sources)} candidate(s), {images}; writing {out}", flush=True)
    try:
        ranking = TR.rank(target, args.sources, n=args.n, metrics=args.metrics, size=args.size, root=args.root,
                          n_boot=args.n_boot, seed=args.seed, verify=args.verify, verify_epochs=args.verify_epochs,
                          progress=True)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"medtl rank: {err}", file=sys.stderr)
        return 2
    params = {"target": str(target), "sources": list(args.sources), "n": args.n, "metrics": args.metrics,
              "size": args.size, "n_boot": args.n_boot, "seed": args.seed, "verify": args.verify}
    analysis.record_ranking(ranking, out, parameters=params)
    fig = P.save(P.ranking(ranking.scores, ranking.recommendation, title=f"{ranking.target}: recommended sources"),
                 out / "figures" / "ranking.png")
    print(ranking.summary())
    print(f"tables and figure: {out} ({fig.name}); HTML report: medtl report {out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from . import experiments

    params = {k: _parse_value(v) for k, v in (args.param or [])}
    if args.overwrite:
        params["overwrite"] = True
    r = experiments.run(args.notebook, params, out_dir=args.out, results_dir=args.results, raise_on_error=False,
                        progress=True)
    print(f"{r.run_id}: {r.status} in {r.seconds:.1f} s -> {r.run_dir}")
    if r.error:
        print(r.error.strip().splitlines()[-1], file=sys.stderr)
    return 0 if r.status == "finished" else 1


def _sweep(args: argparse.Namespace) -> int:
    from . import experiments

    if args.status:
        table = experiments.sweep_status(args.notebook, args.grid, results_dir=args.results)
        print(table.drop(columns="log").to_string(index=False))
        for row in table.itertuples():
            if row.log:
                print(f"\n{row.run_id} ({row.state}), last lines of its log:")
                print("\n".join(f"    {ln}" for ln in row.log.splitlines()))
        return 1 if table.state.isin(["failed", "timeout"]).any() else 0
    table = experiments.sweep(args.notebook, args.grid, results_dir=args.results, executor=args.executor,
                              max_parallel=args.max_parallel, retry_failed=args.retry_failed,
                              wait=not args.no_wait, kernel_name=args.kernel)
    print(table.to_string(index=False))
    return 1 if table.status.isin(["failed", "timeout"]).any() else 0


def _report(args: argparse.Namespace) -> int:
    from .report import build_report

    print(build_report(args.results_dir, args.out))
    return 0


def _add_models(sub) -> None:
    p_models = sub.add_parser("models", help="the initialisation zoo and foundation models: list, fetch, convert")
    models_sub = p_models.add_subparsers(dest="action", required=True)
    p_fetch = models_sub.add_parser("fetch", help="download initialisations into the weights cache ($TORCH_HOME)")
    p_fetch.add_argument("names", nargs="+", help="zoo names (see `medtl models list`)")
    p_fetch.add_argument("--url", default=None, help="a mirror URL replacing the row's (e.g. file:///...)")
    p_fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    p_fetch.set_defaults(func=_models_fetch)
    p_conv = models_sub.add_parser("convert", help="convert an upstream checkpoint in another framework's format "
                                                   "into the weights cache (byol: DeepMind's Haiku pickle; "
                                                   "simclr-v1/-v2: a TF1 checkpoint, read without TensorFlow)")
    p_conv.add_argument("kind", choices=("byol", "simclr-v1", "simclr-v2"), help="which zoo row it is")
    p_conv.add_argument("path", help="the downloaded file (e.g. pretrain_res50x1.pkl) or TF checkpoint prefix "
                                     "(e.g. r50_1x_sk0/model.ckpt-250228)")
    p_conv.add_argument("--ema", action="store_true", help="SimCLR-v2: the moving-average weights")
    p_conv.add_argument("--dest", default=None, help="where to write the state dict (default: the zoo row's file)")
    p_conv.set_defaults(func=_models_convert)
    p_mlist = models_sub.add_parser("list", help="the zoo's 21 initialisations and whether each is cached, or "
                                                 "(--kind foundation) the foundation / medical-zoo models")
    p_mlist.add_argument("--kind", choices=("init", "foundation"), default="init",
                         help="init: the benchmark study's ResNet-50 initialisations (default); foundation: "
                              "foundation models and per-dataset medical zoos with licence, gating and CPU feasibility")
    p_mlist.set_defaults(func=_models_list)


def _add_rank(sub) -> None:
    p_rank = sub.add_parser("rank", help="rank candidate sources for a target (scores with intervals, recommendation)")
    p_rank.add_argument("target", help="a MedMNIST flag, synthetic-suite name, image folder, list file or CSV")
    p_rank.add_argument("--sources", nargs="+", required=True,
                        help="candidates: ARCH (ImageNet), ARCH:random, ARCH:CHECKPOINT, FOUNDATION (medtl models list --kind "
                             "foundation), FOUNDATION:PATH, source:NAME, PATH.pt")
    p_rank.add_argument("--n", type=int, default=None,
                        help="score a stratified subsample of N training images (default: the whole training split)")
    p_rank.add_argument("--metrics", nargs="+", default=None, help="metric names (default: every default metric)")
    p_rank.add_argument("--size", type=int, default=28, help="image side the target is loaded at")
    p_rank.add_argument("--root", default=None, help="MedMNIST data root")
    p_rank.add_argument("--n-boot", type=int, default=20,
                        help="half-samples for the 95 %% intervals (0: no intervals; otherwise at least 2)")
    p_rank.add_argument("--seed", type=int, default=0)
    p_rank.add_argument("--verify", type=int, default=0, metavar="K",
                        help="fine-tune the top K and one random other candidate and report whether the ranking held")
    p_rank.add_argument("--verify-epochs", type=int, default=None, help="epochs per verification run")
    p_rank.add_argument("--out", default=None, help="run folder (default <results root>/rank/<target>)")
    p_rank.add_argument("--results", default=None, help="results root (default $MEDTL_RESULTS, else <checkout>/results)")
    p_rank.set_defaults(func=_rank)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer learning analysis for medical imaging.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser("demo", help="run the small end-to-end transferability study (the main job)")
    p_demo.add_argument("--out", default=None, help="default <results root>/demo")
    p_demo.add_argument("--root", default=None, help="MedMNIST data root (default $MEDTL_DATA, else ~/.medmnist)")
    p_demo.add_argument("--data", default="auto", choices=("auto", "medmnist", "synthetic"))
    p_demo.add_argument("--quick", action="store_true", help="the reduced form (tiny subsets, one epoch)")
    p_demo.add_argument("--fresh", action="store_true", help="start over instead of reusing finished steps")
    p_demo.add_argument("--offline", action="store_true", help="never download (use what is present, else synthetic)")
    p_demo.add_argument("--keep-checkpoints", action="store_true", help="keep every fine-tuning run's last.pt")
    p_demo.set_defaults(func=_demo)

    _add_rank(sub)

    p_run = sub.add_parser("run", help="execute a parameterised notebook with papermill")
    p_run.add_argument("notebook", help="a path or a name under notebooks/ (e.g. experiments/pretrain)")
    p_run.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    p_run.add_argument("--out", default=None, help="run folder (default results/<notebook>/<run id>)")
    p_run.add_argument("--results", default=None, help="results root (default $MEDTL_RESULTS, else <checkout>/results)")
    p_run.add_argument("--overwrite", action="store_true",
                       help="let the notebook replace saved sources of the same name (sets its overwrite parameter)")
    p_run.set_defaults(func=_run)

    p_sweep = sub.add_parser("sweep", help="run a notebook over a parameter grid (YAML: notebook, grid)")
    p_sweep.add_argument("grid", help="YAML file with 'notebook:' and 'grid:' (lists are swept)")
    p_sweep.add_argument("--notebook", default=None, help="overrides the file's notebook")
    p_sweep.add_argument("--results", default=None, help="results root (default $MEDTL_RESULTS, else <checkout>/results)")
    p_sweep.add_argument("--executor", default="local", choices=("local", "slurm"))
    p_sweep.add_argument("--max-parallel", type=int, default=1)
    p_sweep.add_argument("--retry-failed", action="store_true", help="run failed and timed-out runs again")
    p_sweep.add_argument("--no-wait", action="store_true", help="slurm: return once the jobs are submitted")
    p_sweep.add_argument("--status", action="store_true",
                         help="list each run's state (pending, running, done, failed + log tail) and run nothing")
    p_sweep.add_argument("--kernel", default=None, help="Jupyter kernel of the runs (default python3)")
    p_sweep.set_defaults(func=_sweep)

    p_report = sub.add_parser("report", help="analysis notebooks on a results folder -> HTML + PNG figures")
    p_report.add_argument("results_dir")
    p_report.add_argument("--out", default=None, help="default RESULTS_DIR/report")
    p_report.set_defaults(func=_report)

    p_data = sub.add_parser("data", help="MedMNIST files: info, verify, download")
    data_sub = p_data.add_subparsers(dest="action", required=True)
    p_info = data_sub.add_parser("info", help="list every MedMNIST 2D flag and its files' status")
    p_info.add_argument("--root", default=None, help="data root (default $MEDTL_DATA, else ~/.medmnist)")
    p_info.add_argument("--no-md5", action="store_true", help="report presence only, skip MD5 checks")
    p_info.set_defaults(func=_data_info)
    p_verify = data_sub.add_parser("verify", help="check files against medmnist INFO's MD5")
    p_verify.add_argument("flags", nargs="*", help="flags to check (default: every present file)")
    p_verify.add_argument("--size", type=int, default=None, choices=(28, 64, 128, 224))
    p_verify.add_argument("--root", default=None)
    p_verify.set_defaults(func=_data_verify)
    p_dl = data_sub.add_parser("download", help="download official files (needs network)")
    p_dl.add_argument("flags", nargs="+")
    p_dl.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224))
    p_dl.add_argument("--root", default=None)
    p_dl.set_defaults(func=_data_download)
    p_pub = data_sub.add_parser("published", help="fetch the studies' large published tables into the cache")
    p_pub.add_argument("--study", default="dataset-transferability")
    p_pub.add_argument("--dest", default=None, help="default <cache>/published")
    p_pub.add_argument("--url", default=None, help="a mirror replacing the repository URL prefix (e.g. file://...)")
    p_pub.set_defaults(func=_data_published)

    _add_models(sub)

    p_list = sub.add_parser("list", help="list registered metrics, similarity measures, architectures or datasets")
    p_list.add_argument("what", choices=("metrics", "measures", "archs", "datasets"))
    p_list.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"medtl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
