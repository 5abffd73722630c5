"""Rich results on the experiment page, in Chromium: images with a step slider, a sortable
table, a matplotlib figure and a plotly figure, from a real `studio run` of the example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.ui import studio_ui

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCRIPT = """\
import numpy as np, pandas as pd, plotly.graph_objects as go, studio
for step in range(3):
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[:, :, step] = 255
    studio.log_image("samples", img, step=step)
studio.log_table("scores", pd.DataFrame({"name": ["b", "c", "a"], "score": [2.0, 10.0, 1.5]}))
studio.log_figure("bars", go.Figure(go.Bar(x=["x", "y"], y=[1, 2])))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is not installed (/usr/bin/chromium): run `bash scripts/test`")
    root = tmp_path_factory.mktemp("media")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")}
    env.update(STUDIOML_HOME=str(root / "home"), HOME=str(root), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    (root / "ws").mkdir()
    (root / "ws" / "media.py").write_text(SCRIPT)
    for _ in range(2):  # two runs, for the compare view
        run = subprocess.run([sys.executable, "-m", "studio", "run", "media.py"], cwd=root / "ws", env=env,
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, run.stderr
    listing = subprocess.run([sys.executable, "-m", "studio", "runs", "list", "all", "--json"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
    keys = [r["key"] for r in json.loads(listing.stdout)]
    try:
        with studio_ui(env, root) as base:
            yield base, keys
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_images_table_and_figure_on_the_experiment_page(site: tuple[str, list[str]]) -> None:
    from playwright.sync_api import sync_playwright

    base, (key, _) = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/experiment/{key}")
        page.wait_for_selector("#media:not([hidden]) .media-item[data-name='samples'] img.media-image")
        item = page.locator(".media-item[data-name='samples']")
        assert "step 2 (3 of 3)" in item.inner_text()  # the newest step first

        def pixel() -> list[int]:
            return list(page.evaluate("""() => {
                const img = document.querySelector(".media-item[data-name='samples'] img");
                const c = document.createElement("canvas"); c.width = 4; c.height = 4;
                const g = c.getContext("2d"); g.drawImage(img, 0, 0);
                return Array.from(g.getImageData(1, 1, 1, 1).data.slice(0, 3));
            }"""))

        page.wait_for_function("() => document.querySelector(\".media-item[data-name='samples'] img\").complete")
        assert pixel() == [0, 0, 255]
        item.locator("input[type=range]").fill("0")
        page.wait_for_function("() => document.querySelector(\".media-item[data-name='samples'] img\").src.includes('0000000000')")
        page.wait_for_function("() => document.querySelector(\".media-item[data-name='samples'] img\").complete")
        assert pixel() == [255, 0, 0] and "step 0 (1 of 3)" in item.inner_text()

        table = page.locator(".media-item[data-name='scores'] table")
        table.locator("td").first.wait_for()
        column = "rows => rows.map(r => r.cells[0].textContent)"
        assert table.locator("tbody tr").evaluate_all(column) == ["b", "c", "a"]
        table.locator("th", has_text="score").click()
        assert table.locator("tbody tr").evaluate_all(column) == ["a", "b", "c"]
        table.locator("th", has_text="score").click()
        assert table.locator("tbody tr").evaluate_all(column) == ["c", "b", "a"]

        page.wait_for_selector(".media-item[data-name='bars'] .plot-container")
        assert page.locator(".media-item[data-name='bars'] .main-svg").first.bounding_box()["height"] > 200
        assert page.locator(".media-item[data-name='bars'] .bars path").count() == 2
        if os.environ.get("STUDIO_DOCS_SCREENSHOTS") == "1":
            page.locator("#media").screenshot(path=str(REPO / "docs" / "img" / "media.png"))
        browser.close()
        assert not errors, errors


def test_compare_shows_each_runs_images_side_by_side(site: tuple[str, list[str]]) -> None:
    from playwright.sync_api import sync_playwright

    base, keys = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/compare?keys={','.join(keys)}")
        row = page.locator(".compare-media-row[data-name='samples']")
        row.locator("img").first.wait_for()
        assert row.locator(".media-item").evaluate_all("cells => cells.map(c => c.dataset.key)") == keys
        assert row.locator("img").count() == 2 and "step 2" in row.inner_text()
        row.locator("input[type=range]").fill("0")
        page.wait_for_function("() => [...document.querySelectorAll(\".compare-media-row[data-name='samples'] img\")].every(i => i.src.includes('0000000000'))")
        page.locator(".compare-media-row[data-name='bars'] .main-svg").first.wait_for()
        browser.close()
        assert not errors, errors
