"""Time and peak memory of linear CKA, minibatch CKA and SVCCA.

    python benchmarks/similarity_speed.py [--sizes 10000,100000] [--dim 512]

Each measurement runs in its own subprocess so its peak resident memory (ru_maxrss) is its
own; "extra MB" is the peak minus the process's footprint after imports. Linear CKA and
SVCCA take the full N×D activations; minibatch CKA streams batches of 1,000 rows generated
on the fly (as activations arrive from a model), so its memory should not grow with N.
Goal: minibatch CKA's peak at N=100,000 within 2x of its peak at N=10,000.
Prints a table and a JSON record (benchmarks/out/similarity_speed.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import save_record

WORKER = r"""
import json, resource, sys, time, torch
import medtl.similarity as S
n, d, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mix = torch.randn(d, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

def batches(batch=1000):
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        x = torch.randn(m, d, generator=g, dtype=torch.float64)
        yield x, x @ mix + torch.randn(m, d, generator=g, dtype=torch.float64)

t0 = time.perf_counter()
if which == "minibatch_cka":
    value = S.minibatch_cka(batches())
else:
    xs, ys = zip(*batches())
    x, y = torch.cat(xs), torch.cat(ys)
    del xs, ys
    t0 = time.perf_counter()
    value = S.cka(x, y) if which == "linear_cka" else S.svcca(x, y, keep=0.99)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": sec, "extra_mb": (peak - base) / 1024, "peak_mb": peak / 1024, "value": value}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rows = []
    print(f"{'measure':<16}{'N':>9}{'seconds':>10}{'extra MB':>10}{'peak MB':>10}{'value':>10}")
    for which in ("linear_cka", "minibatch_cka", "svcca"):
        for n in map(int, args.sizes.split(",")):
            out = subprocess.run([sys.executable, "-c", WORKER, str(n), str(args.dim), which], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"measure": which, "n": n, "d": args.dim, **{k: round(v, 4) for k, v in r.items()}})
            print(f"{which:<16}{n:>9}{r['seconds']:>10.2f}{r['extra_mb']:>10.1f}{r['peak_mb']:>10.1f}{r['value']:>10.4f}")
    mb = {r["n"]: r["extra_mb"] for r in rows if r["measure"] == "minibatch_cka"}
    sizes = sorted(mb)
    ratio = None
    if len(sizes) >= 2 and mb[sizes[0]] > 0:
        ratio = mb[sizes[-1]] / max(mb[sizes[0]], 1.0)
        print(f"minibatch CKA extra memory N={sizes[-1]} / N={sizes[0]}: {ratio:.2f}x (goal <= 2x): "
              f"{'met' if ratio <= 2 else 'NOT met'}")

    save_record("similarity_speed", results=rows, minibatch_memory_ratio=ratio)


if __name__ == "__main__":
    main()
