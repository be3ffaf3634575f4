"""The README's code blocks run as written, or say in their first line what they need.

Every ```python / ```bash block other than the quick start (which `.ci/run` runs) either
starts with ``# needs: …`` (files, weights, time) or is run here: offline, in a fresh
interpreter or shell, after the offline synthetic demo, from a folder whose ``results/`` is
the results root (as a new user's checkout is)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = [(lang, body) for lang, body in re.findall(r"```(python|bash)\n(.*?)```", README, re.S)]
QUICK_START = BLOCKS[0][1]


def _runnable():
    return [(lang, body) for lang, body in BLOCKS[1:]
            if not body.startswith("# needs:") and body.strip() != "source .venv/bin/activate"]


def test_every_block_runs_here_or_says_what_it_needs():
    assert "medtl demo" in QUICK_START and len(QUICK_START.strip().splitlines()) == 2
    for _, body in BLOCKS[1:]:
        first = body.splitlines()[0]
        if first.startswith("# needs:"):
            assert len(first) > len("# needs: ") + 10, first  # says what, not just that
    kinds = [lang for lang, _ in _runnable()]
    assert kinds.count("python") >= 1 and kinds.count("bash") >= 2  # offline blocks exist and are run below


@pytest.mark.slow
def test_offline_blocks_run_as_written_after_the_offline_demo(offline_demo):
    folder, _ = offline_demo
    env = dict(os.environ, MEDTL_RESULTS=str(folder / "results"), MEDTL_DATA=str(folder / "no-data"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MEDTL_MODELS", None)
    # Each block needs only the demo, not another block's output, so they run two at a time,
    # one core each (the longest first); the commands within a block run in order.
    from concurrent.futures import ThreadPoolExecutor

    def run(lang, body):
        cmd = [sys.executable, "-c", body] if lang == "python" else ["bash", "-euo", "pipefail", "-c", body]
        return subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": "1"}, cwd=folder, capture_output=True, text=True,
                              timeout=900)

    blocks = sorted(_runnable(), key=lambda b: "medtl rank" not in b[1])
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda b: run(*b), blocks))
    for (lang, body), proc in zip(blocks, procs):
        assert proc.returncode == 0, f"README block ({lang}) failed:\n{body}\n{proc.stdout[-2000:]}\n" \
                                     f"{proc.stderr[-3000:]}"
    # what the blocks produced: the ranking of the known-answer target and its report
    from medtl import analysis

    r = analysis.load_ranking(folder / "results" / "rank" / "texture-b")
    assert r.recommendation.source.iloc[0] == "texture-a-resnet18", r.summary()
    assert (folder / "results" / "rank" / "texture-b" / "report" / "index.html").is_file()
    # a clash with the demo's source is refused, and --overwrite lets it through
    clash = subprocess.run([sys.executable, "-m", "medtl.cli", "run", "experiments/pretrain", "-p", "sources",
                            "[texture-a]", "-p", "epochs", "1", "-p", "n_train", "40", "-p", "n_val", "20"],
                           env=env, cwd=folder, capture_output=True, text=True, timeout=600)
    assert clash.returncode != 0 and "already exists" in clash.stdout + clash.stderr
