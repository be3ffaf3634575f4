"""The ``medtl`` command.

    medtl data info [--root DIR] [--no-md5]     every MedMNIST 2D flag and its files' status
    medtl data verify [FLAG ...] [--size N]     MD5-check files (all present ones by default)
    medtl data download FLAG ... [--size N]     fetch official files into the data root
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
                file = data.verify(flag, size, args.root)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer learning analysis for medical imaging.")
    sub = parser.add_subparsers(dest="command", required=True)

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
