"""The explorer in a real browser: JupyterLab on a free local port, driven by Playwright
with the system Chromium (Debian's ``chromium``; ``.ci/run`` installs it). The notebook
runs all cells (it opens on medtl's own results), the target and the metrics are changed,
and the ranking table and the scatter panel must change with them; switching to the
published tables shows the study's sources; no cell may show an error."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
from conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


#: Wait (in the page) until the notebook's kernel has connected and answered.
KERNEL_READY = """async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let w = window.jupyterapp.shell.currentWidget;
  for (let i = 0; i < 600 && !(w && w.sessionContext); i++) { await sleep(200); w = window.jupyterapp.shell.currentWidget; }
  await w.context.ready;
  await w.sessionContext.ready;
  for (let i = 0; i < 600 && !(w.sessionContext.session && w.sessionContext.session.kernel); i++) await sleep(200);
  await w.sessionContext.session.kernel.info;
  return true;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _medtl_results(folder):
    """A finished transferability study in medtl's record format: 4 sources, 2 targets."""
    from medtl import results as rs

    rows, ft = [], []
    for t_i, target in enumerate(("alpha", "beta")):
        for s_i, source in enumerate(("src-a", "src-b", "src-c", "src-d")):
            auc = 0.6 + 0.1 * ((s_i + t_i) % 4)
            for m_i, metric in enumerate(("leep", "logme", "lp_fu")):
                rows.append({"source": source, "target": target, "metric": metric,
                             "value": auc * (1 + 0.3 * m_i) + 0.05 * ((s_i * (m_i + 1)) % 3), "seconds": 0.0})
            ft.append({"source": source, "target": target, "config_id": "c", "seed": 0, "val_loss": 0.3,
                       "test_auc": auc, "selected": True})
    rs.record(pd.DataFrame(rows).assign(scenario="dataset"), folder / "demo" / "transferability", "scores")
    rs.record(pd.DataFrame(ft).assign(scenario="dataset"), folder / "demo" / "finetune", "finetune")


@pytest.fixture
def lab(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no system Chromium (Debian package 'chromium'; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency) is not installed")
    results = tmp_path / "results"
    _medtl_results(results)
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "explore.ipynb", work / "explore.ipynb")
    port = _free_port()
    env = {**os.environ, "MEDTL_RESULTS": str(results), "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrt")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             "--allow-root", "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                             f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    yield url, tmp_path
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text(timeout=60_000)


def _changed(page, table: str, img: str) -> None:
    """Wait until both the ranking table and the scatter image differ from before (a view
    that does not update fails here, after 60 s)."""
    page.wait_for_function(
        "([t0, i0]) => { const t = document.querySelector('.jp-OutputArea-output table');"
        " const i = document.querySelector('.jp-OutputArea-output img');"
        " return t && i && t.innerText !== t0 && i.getAttribute('src') !== i0; }",
        arg=[table, img], timeout=60_000, polling=250)


def test_explorer_updates_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    url, tmp = lab
    shots = tmp / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # a fresh temporary profile
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/lab/tree/explore.ipynb")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.wait_for_function("() => !!window.jupyterapp", timeout=120_000, polling=250)
        page.evaluate(KERNEL_READY)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".widget-dropdown select", timeout=120_000)
        page.wait_for_selector(".jp-OutputArea-output table", timeout=120_000)
        page.wait_for_selector(".jp-OutputArea-output img", timeout=120_000)
        page.screenshot(path=str(shots / "1-opened.png"), full_page=True)
        table_1 = _text(page, ".jp-OutputArea-output table")
        img_1 = page.locator(".jp-OutputArea-output img").first.get_attribute("src")
        assert "src-a" in table_1 and "alpha" in page.content()  # opened on the medtl results

        page.locator(".widget-dropdown select").first.select_option("beta")  # the target
        _changed(page, table_1, img_1)
        page.screenshot(path=str(shots / "2-target.png"), full_page=True)
        table_2 = _text(page, ".jp-OutputArea-output table")
        img_2 = page.locator(".jp-OutputArea-output img").first.get_attribute("src")
        assert table_2 != table_1 and img_2 != img_1

        page.locator(".widget-select-multiple select").first.select_option(["leep"])  # the metrics
        _changed(page, table_2, img_2)
        page.screenshot(path=str(shots / "3-metrics.png"), full_page=True)
        table_3 = _text(page, ".jp-OutputArea-output table")
        img_3 = page.locator(".jp-OutputArea-output img").first.get_attribute("src")
        assert "lp_fu" in table_2 and "lp_fu" not in table_3 and img_3 != img_2

        page.locator(".widget-toggle-button", has_text="published").first.click()  # the studies' tables
        page.wait_for_function("() => { const t = document.querySelector('.jp-OutputArea-output table');"
                               " return t && t.innerText.includes('imagenet'); }", timeout=60_000, polling=250)
        page.screenshot(path=str(shots / "4-published.png"), full_page=True)
        assert "radimagenet" in _text(page, ".jp-OutputArea-output table")

        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text() for i in range(errors.count())]
        assert not [t for t in texts if "Error" in t or "Traceback" in t], texts
        assert page.locator(".jp-OutputArea-output .jp-RenderedText[data-mime-type*='error']").count() == 0
        browser.close()
    assert len(list(shots.glob("*.png"))) == 4
