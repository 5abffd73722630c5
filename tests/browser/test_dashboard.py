"""The dashboard in a real browser: `studio ui` in a subprocess over experiments recorded by real
`studio run` commands, driven by Playwright in Debian's Chromium.

Set STUDIO_DOCS_SCREENSHOTS=1 to also write the screenshots used by docs/ui.md into docs/img/.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.ui import studio_ui

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SHOTS = os.environ.get("STUDIO_DOCS_SCREENSHOTS") == "1"

# The sweep substitutes `lr` after the last `=` of a line (upstream's rule); the script logs a
# curve with a spike at step 150, and prints.
TRAIN = """\
import studio
rate = lr
for i in range(300):
    studio.log(loss=(1.0 + 5.0 * (i == 150)) / (1 + i * rate), acc=min(1.0, i * rate))
    if i % 100 == 0:
        print("epoch", i // 100, flush=True)
print("done", flush=True)
"""
FAIL = "print('about to fail', flush=True)\n1 / 0\n"
SLOW = """\
import time, studio
for i in range(600):
    print("tick", i, flush=True)
    studio.log(progress=i)
    time.sleep(0.25)
"""


class Site:
    def __init__(self, base: str, env: dict[str, str], workspace: Path, keys: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.workspace = workspace
        self.keys = keys

    def api(self, path: str, **params: Any) -> Any:
        return httpx.get(self.base + path, params=params, timeout=10).json()

    def delete(self, key: str) -> httpx.Response:
        """DELETE as a script does: with the CSRF token from GET /api/session."""
        token = httpx.get(self.base + "/api/session", timeout=10).json().get("csrf")
        return httpx.delete(f"{self.base}/api/experiments/{key}", headers={"X-CSRF-Token": token or ""}, timeout=30)


def studio(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "studio", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is not installed (/usr/bin/chromium): run `apt-get install chromium` or `bash scripts/test`")
    root = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")}
    env.update(STUDIOML_HOME=str(root / "home"), HOME=str(root / "userhome"), PYTHONUNBUFFERED="1")
    (root / "userhome").mkdir()
    ws = root / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    (ws / "fail.py").write_text(FAIL)
    (ws / "slow.py").write_text(SLOW)
    failing = subprocess.Popen([sys.executable, "-m", "studio", "run", "--project", "scratch", "fail.py"], cwd=ws,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = studio(env, ws, "run", "--project", "vision", "-hp", "lr=0.001,0.01,0.1", "--metric", "loss:min", "train.py")
    failing.wait(120)
    runs = {r["key"]: r for r in _list(env, ws)}
    assert len(runs) == 4, out
    keys = {f"lr={r['params']['lr']}": k for k, r in runs.items() if r["params"]}
    keys["failed"] = next(k for k, r in runs.items() if r["status"] == "failed")
    with studio_ui(env, ws, timeout=30) as base:
        yield Site(base, env, ws, keys)


def _list(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    import json

    return json.loads(subprocess.run([sys.executable, "-m", "studio", "runs", "list", "all", "--json"], cwd=cwd,
                                     env=env, capture_output=True, text=True, timeout=60).stdout)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, errors


def shot(page: Any, name: str, full: bool = False) -> None:
    if SHOTS:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / name), full_page=full)


def row_keys(page: Any) -> list[str]:
    return [str(k) for k in page.eval_on_selector_all("#runs tbody tr[data-key]", "rows => rows.map(r => r.dataset.key)")]


def test_table_sorts_and_filters(site: Site, page: Any) -> None:
    page.goto(site.base + "/all")
    page.wait_for_selector("#runs tbody tr[data-key]")
    assert len(row_keys(page)) == 4
    assert page.locator("#runs thead th", has_text="lr").count() == 1
    page.click("#runs thead th[data-sort='best']")
    page.wait_for_selector("#runs thead th.sorted-asc[data-sort='best']")
    first_key = site.keys["lr=0.1"]
    page.wait_for_function(f"document.querySelector('#runs tbody tr').dataset.key === '{first_key}'")
    page.click("#runs thead th[data-sort='best']")
    page.wait_for_selector("#runs thead th.sorted-desc[data-sort='best']")
    assert row_keys(page)[0] == site.keys["lr=0.001"]  # NULL metric values sort last either way
    shot(page, "table.png")

    page.fill("#f-filter", "lr < 0.05 and status = finished")
    page.press("#f-filter", "Enter")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr[data-key]').length === 2")
    assert set(row_keys(page)) == {site.keys["lr=0.001"], site.keys["lr=0.01"]}
    assert "filter=lr" in page.url  # the state is in the address, so links can be shared

    page.fill("#f-filter", "lr < ")
    page.press("#f-filter", "Enter")
    page.wait_for_selector("#filter-error:has-text('position 5')")
    assert "expected a value" in page.inner_text("#filter-error")
    assert len(row_keys(page)) == 2  # the last good result stays
    shot(page, "filter-error.png")

    page.fill("#f-filter", "")
    page.select_option("#f-status", "failed")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr[data-key]').length === 1")
    assert row_keys(page) == [site.keys["failed"]]


def test_experiment_page_chart_log_and_downloads(site: Site, page: Any, tmp_path: Path) -> None:
    page.goto(site.base + "/all")
    key = site.keys["lr=0.01"]
    page.click(f"#runs a[href='/experiment/{key}']")
    page.wait_for_url(f"**/experiment/{key}")
    page.wait_for_selector("#exp-status .status-finished")
    loss = ".panel-plot[data-metric='loss']"
    page.wait_for_selector(f"{loss}[data-rendered='1'] .scatterlayer .trace")
    page.wait_for_selector(".panel-plot[data-metric='acc'][data-rendered='1']")
    # A panel per metric, the run's own metric (--metric loss:min) first although acc sorts first.
    assert page.eval_on_selector_all(".panel", "ps => ps.map(p => p.dataset.metric)")[:2] == ["loss", "acc"]
    ys = page.evaluate(f"document.querySelector(\"{loss}\").data[0].y")
    assert max(ys) == pytest.approx(6.0 / 2.5)  # the spike at step 150
    page.wait_for_selector("#log:has-text('done')")
    assert "epoch 2" in page.inner_text("#log")
    assert "lr" in page.inner_text("#params") and "0.01" in page.inner_text("#params")
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function(f"document.querySelector(\"{loss}\").data.length === 2")  # raw (faint) + smoothed
    page.check(".panel[data-metric='loss'] input.logy")
    page.wait_for_function(f"document.querySelector(\"{loss}\").layout.yaxis.type === 'log'")
    assert page.evaluate("document.querySelector(\".panel-plot[data-metric='acc']\").layout.yaxis.type") == "linear"
    page.select_option("#x-axis", "relative")
    page.wait_for_function(f"document.querySelector(\"{loss}\").layout.xaxis.title.text === 'seconds since start'")
    xs = page.evaluate(f"document.querySelector(\"{loss}\").data[1].x")
    assert xs[0] == pytest.approx(0, abs=5) and all(b >= a for a, b in zip(xs, xs[1:], strict=False))
    assert "x=relative" in page.url and "logy=loss" in page.url and "smooth=0.9" in page.url  # shareable
    page.reload()
    page.wait_for_function(f"document.querySelector(\"{loss}\")?.layout?.yaxis?.type === 'log'")
    assert page.input_value("#x-axis") == "relative"
    page.select_option("#x-axis", "step")
    page.click("#packages-box summary")
    assert "==" in page.inner_text("#packages")
    shot(page, "experiment.png", full=True)

    page.click("#artifacts tr[data-tag='workspace'] button:has-text('Browse')")
    link = page.locator("#artifact-files a[download]", has_text="train.py")
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "train.py"
    info.value.save_as(saved)
    assert saved.read_text() == TRAIN.replace("rate = lr", "rate = 0.01")
    with page.expect_download() as info:
        page.click("#artifacts tr[data-tag='workspace'] a.archive")
    archive = tmp_path / "ws.tar.gz"
    info.value.save_as(archive)
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes()), mode="r:gz") as tar:
        assert f"{key}-workspace/train.py" in tar.getnames()


def test_live_log_of_a_running_experiment(site: Site, page: Any) -> None:
    runner = subprocess.Popen([sys.executable, "-m", "studio", "run", "--project", "live", "slow.py"],
                              cwd=site.workspace, env=site.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = ""
        deadline = time.monotonic() + 30
        while not key and time.monotonic() < deadline:
            live = site.api("/api/experiments", status="running")["items"]
            key = live[0]["key"] if live else ""
            time.sleep(0.2)
        assert key, "the slow experiment did not start"
        page.goto(f"{site.base}/experiment/{key}")
        page.evaluate("window.__samePage = true")
        page.wait_for_selector("#log-state:has-text('live')")
        page.wait_for_selector("#log:has-text('tick 2')", timeout=15000)
        first = page.inner_text("#log").count("tick")
        later = f"tick {first + 4}"
        page.wait_for_function(f"document.getElementById('log').textContent.includes('{later}')", timeout=15000)
        assert page.evaluate("window.__samePage") is True  # new lines arrived without a reload
        page.wait_for_selector(".panel-plot[data-metric='progress'][data-rendered='1']", timeout=15000)
        page.locator("#log").scroll_into_view_if_needed()
        shot(page, "live.png")
        page.click("#btn-stop")
        page.wait_for_selector("#exp-status .status-stopped", timeout=30000)
        page.wait_for_selector("#btn-stop:disabled")
        assert runner.wait(30) is not None
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)


def test_finished_rows_stay_unstruck_while_something_runs(site: Site, page: Any) -> None:
    """Issue 14: the table polls the status of its live rows only; rows it did not ask about
    (finished ones) must not be marked as gone by that poll."""
    runner = subprocess.Popen([sys.executable, "-m", "studio", "run", "--project", "live", "slow.py"],
                              cwd=site.workspace, env=site.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not site.api("/api/experiments", status="running")["items"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert site.api("/api/experiments", status="running")["items"], "the slow experiment did not start"
        page.goto(site.base + "/all")
        page.wait_for_selector("#runs tbody tr[data-status='running']")
        page.evaluate("""() => {
          window.__polls = 0;
          const orig = window.fetch;
          window.fetch = (url, init) => { if (String(url).startsWith('/api/status')) window.__polls++; return orig(url, init); };
        }""")
        page.wait_for_function("window.__polls >= 2", timeout=15000)  # two polls have come back or are in flight
        page.wait_for_timeout(500)
        finished = page.locator("#runs tbody tr[data-status='finished']")
        assert finished.count() >= 3
        assert page.locator("#runs tbody tr.gone").count() == 0
        # A live row deleted elsewhere is still marked as gone.
        key = page.get_attribute("#runs tbody tr[data-status='running']", "data-key")
        assert site.delete(key).status_code == 200
        page.wait_for_selector(f"#runs tbody tr.gone[data-key='{key}']", timeout=15000)
        assert page.locator("#runs tbody tr.gone").count() == 1
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.wait(30)


def test_compare_two_runs(site: Site, page: Any) -> None:
    page.goto(site.base + "/project/vision")
    page.wait_for_selector("#runs tbody tr[data-key]")
    page.wait_for_selector("#parcoords .parcoords")
    # A sweep's optimisation history and parameter importance (Optuna's evaluator).
    page.wait_for_selector("#opt-history[data-rendered='1']")
    best = page.evaluate("document.getElementById('opt-history').data[1].y")
    assert best == sorted(best, reverse=True)  # loss:min: the best so far only goes down
    page.wait_for_selector("#importance[data-rendered='1']")
    assert page.evaluate("document.getElementById('importance').data[0].y") == ["lr"]
    shot(page, "project.png", full=True)
    for name in ("lr=0.001", "lr=0.1"):
        page.check(f"#runs tr[data-key='{site.keys[name]}'] input[type=checkbox]")
    page.click("#act-compare")
    page.wait_for_url(re.compile(r".*/compare\?keys=.*"))
    page.wait_for_selector("#compare-table tr.differs[data-name='lr']")
    cells = page.locator("#compare-table tr[data-name='lr'] td").all_inner_texts()
    assert cells == ["0.001", "0.1"]
    page.wait_for_selector("#compare-chart[data-rendered='2'] .scatterlayer .trace")
    names = page.evaluate("document.getElementById('compare-chart').data.map(t => t.name)")
    assert names == ["train.py lr=0.001", "train.py lr=0.1"]  # legends show run names
    shot(page, "compare.png", full=True)


def test_name_tags_and_note_from_the_experiment_page(site: Site, page: Any) -> None:
    key = site.keys["lr=0.1"]
    page.goto(f"{site.base}/experiment/{key}")
    page.wait_for_selector("#exp-name:has-text('train.py lr=0.1')")  # the default: script + params
    page.click("#name-edit")
    page.fill("#name-input", "fast lr")
    page.press("#name-input", "Enter")
    page.wait_for_selector("#exp-name:has-text('fast lr')")
    page.fill("#tag-input", "baseline best-so-far")
    page.press("#tag-input", "Enter")
    page.wait_for_selector("#tags .tag[data-tag='best-so-far']")
    page.fill("#tag-input", "bad tag!")
    page.press("#tag-input", "Enter")
    page.wait_for_selector("#toast.error:has-text('bad tag')")
    page.click("#tags .tag[data-tag='best-so-far'] .tag-remove")
    page.wait_for_selector("#tags .tag[data-tag='best-so-far']", state="detached")
    page.click("#note-edit")
    page.fill("#note-text", "## Why\nLoss **plateaus** after step 100.\n\n<img src=x onerror=alert(1)>")
    page.click("#note-save")
    page.wait_for_selector("#note h2:has-text('Why')")
    assert page.inner_text("#note strong") == "plateaus"
    assert page.locator("#note img").count() == 0  # raw HTML is shown as text, never run
    shot(page, "annotations.png")
    page.reload()
    page.wait_for_selector("#exp-name:has-text('fast lr')")
    assert page.eval_on_selector_all("#tags .tag", "tags => tags.map(t => t.dataset.tag)") == ["baseline"]
    # The table shows the name and tags, and a tag filter finds the run.
    page.goto(site.base + "/all?filter=" + "tags%20%3D%20baseline")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr[data-key]').length === 1")
    assert row_keys(page) == [key]
    cell = page.inner_text(f"#runs tr[data-key='{key}'] td.name-cell")
    assert "fast lr" in cell and "baseline" in cell


def test_runs_and_charts_view(site: Site, page: Any) -> None:
    page.goto(site.base + "/project/vision")
    page.wait_for_selector("#runs tbody tr[data-key]")
    page.click("#view-charts")
    loss = "#run-panels .panel-plot[data-metric='loss']"
    page.wait_for_selector(f"{loss}[data-rendered='3']")
    page.wait_for_selector("#run-panels .panel-plot[data-metric='acc'][data-rendered='3']")
    # One colour per run, the same in every panel and on the run's row.
    colours = page.evaluate("""() => {
      const by = (m) => Object.fromEntries(document.querySelector(`#run-panels .panel-plot[data-metric='${m}']`).data.map(t => [t.meta, t.line.color]));
      return [by('loss'), by('acc')];
    }""")
    assert colours[0] == colours[1] and len(set(colours[0].values())) == 3
    key = site.keys["lr=0.1"]
    swatch = page.evaluate(f"getComputedStyle(document.querySelector(\"tr[data-key='{key}'] .swatch\")).borderColor")
    assert swatch.replace(" ", "") == _rgb(colours[0][key])
    # The project's metric (loss:min) is the first panel; the table is best first.
    assert page.eval_on_selector_all("#run-panels .panel", "ps => ps.map(p => p.dataset.metric)")[0] == "loss"
    assert row_keys(page)[0] == key
    # Visibility toggle.
    page.click(f"tr[data-key='{key}'] .swatch")
    page.wait_for_selector(f"{loss}[data-rendered='2']")
    page.click("#show-all-runs")
    page.wait_for_selector(f"{loss}[data-rendered='3']")
    # Selected runs only.
    for name in ("lr=0.001", "lr=0.01"):
        page.check(f"#runs tr[data-key='{site.keys[name]}'] input[type=checkbox]")
    page.wait_for_selector(f"{loss}[data-rendered='2']")
    assert "2 runs selected" in page.inner_text("#charts-title")
    # Group by a param: a mean line and a min/max band (3 traces) per group.
    page.select_option("#group-by", "lr")
    page.wait_for_selector(f"{loss}[data-rendered='6']")
    names = page.evaluate(f"document.querySelector(\"{loss}\").data.filter(t => t.showlegend !== false).map(t => t.name)")
    assert names == ["lr=0.001 (1)", "lr=0.01 (1)"]
    group_colour = page.evaluate(f"document.querySelector(\"{loss}\").data.find(t => t.name === 'lr=0.001 (1)').line.color")
    row_colour = page.evaluate(f"getComputedStyle(document.querySelector(\"tr[data-key='{site.keys['lr=0.001']}'] .swatch\")).borderColor")
    assert row_colour.replace(" ", "") == _rgb(group_colour)  # rows take their group's colour
    assert "view=charts" in page.url and "group=lr" in page.url
    shot(page, "runs-charts.png", full=True)
    page.reload()
    page.wait_for_selector("#runs-charts:not([hidden])")
    page.wait_for_selector(f"{loss}[data-rendered='9']")  # 3 runs on the page (nothing selected), grouped by lr
    assert page.input_value("#group-by") == "lr"


def test_chromium_gets_brotli_and_revalidates_with_etags(site: Site, page: Any) -> None:
    seen: dict[str, dict[str, str]] = {}
    page.on("response", lambda r: seen.setdefault(r.url.split("?")[0].removeprefix(site.base), {
        **r.all_headers(), "status": str(r.status), "sent": r.request.all_headers().get("accept-encoding", "")}))
    page.goto(site.base + "/project/vision")
    page.click("#view-charts")
    page.wait_for_selector("#run-panels .panel-plot[data-metric='loss'][data-rendered='3']")
    plotly, js = seen["/vendor/plotly.min.js"], seen["/static/panels.js"]
    assert "br" in plotly["sent"]  # what Chromium offers on a loopback (secure) origin
    for headers in (plotly, js, seen["/project/vision"]):
        assert headers["content-encoding"] == "br" and "accept-encoding" in headers["vary"].lower()
    series = [h for u, h in seen.items() if u.startswith("/api/charts/series")]
    assert series and all(h["content-encoding"] == "br" for h in series if int(h.get("content-length") or 2000) > 1024)
    assert plotly["etag"].endswith('-br"') and plotly["cache-control"] == "public, max-age=86400"
    # A conditional request with the ETag the browser holds is answered without a body.
    revalidated = httpx.get(site.base + "/vendor/plotly.min.js",
                            headers={"accept-encoding": "br", "if-none-match": plotly["etag"]}, timeout=30)
    assert revalidated.status_code == 304


LONG = """\
import time, studio
for i in range(20000):
    studio.log(i, loss=1.0 / (1 + i))
    if i % 1000 == 999:
        time.sleep(0.05)  # spread over a second or more of wall time
"""


@pytest.mark.parametrize("axis", ["relative", "time"])
def test_zooming_on_a_time_axis_fetches_finer_points(site: Site, page: Any, axis: str) -> None:
    project = f"zoom-{axis}"
    (site.workspace / "long.py").write_text(LONG)
    assert f"(project {project})" in studio(site.env, site.workspace, "run", "--project", project, "long.py")
    page.goto(f"{site.base}/project/{project}")
    page.wait_for_selector("#runs tbody tr[data-key]")
    page.click("#view-charts")
    loss = "#run-panels .panel-plot[data-metric='loss']"
    page.wait_for_selector(f"{loss}[data-rendered='1']")
    with page.expect_response(lambda r: "/api/charts/series" in r.url and "time=true" in r.url):
        page.select_option("#x-axis", axis)
    page.wait_for_function(f"document.querySelector(\"{loss}\").layout.xaxis.type === '{'date' if axis == 'time' else 'linear'}'")
    plot = f"document.querySelector(\"{loss}\")"
    whole = [x for x in page.evaluate(f"{plot}.data[0].x") if x is not None]
    assert len(whole) < 5000  # 20,000 points drawn as min/max buckets
    # Zoom on the middle fifth of the run's time, as a drag on the chart does (plotly reports a
    # date axis's range as UTC date strings).
    first, last = min(whole), max(whole)
    lo, hi = first + (last - first) * 0.4, first + (last - first) * 0.6
    shown = [lo, hi]
    if axis == "time":  # x is epoch milliseconds
        import datetime as dt

        shown = [dt.datetime.fromtimestamp(v / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for v in (lo, hi)]
    with page.expect_response(lambda r: "x_min=" in r.url) as zoomed:
        page.evaluate(f"Plotly.relayout({plot}, {{'xaxis.range': {shown!r}}})")
    assert f"x_axis={axis}" in zoomed.value.url and zoomed.value.status == 200
    page.wait_for_function(f"{plot}.data[0].x.length !== {len(whole)}")
    xs = [x for x in page.evaluate(f"{plot}.data[0].x") if x is not None]
    inside = [x for x in xs if lo <= x <= hi]
    coarse = [x for x in whole if lo <= x <= hi]
    assert len(inside) > 3 * len(coarse), (len(inside), len(coarse))  # finer than before the zoom
    assert len(xs) - len(inside) <= 2  # the range asked for, plus one point beyond each edge


def _rgb(hex_colour: str) -> str:
    n = int(hex_colour[1:], 16)
    return f"rgb({n >> 16},{(n >> 8) & 255},{n & 255})"


def test_a_bad_filter_in_a_shared_link_shows_its_error(site: Site, page: Any) -> None:
    page.goto(site.base + "/all?filter=lr%20%3C")
    page.wait_for_selector("#filter-error:has-text('expected a value')")
    page.wait_for_selector("#runs td.load-error")
    assert "Loading" not in page.inner_text("#runs tbody")
    assert page.input_value("#f-filter") == "lr <"


def test_dark_mode_follows_the_system(site: Site, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
    pg = context.new_page()
    try:
        pg.goto(site.base + f"/experiment/{site.keys['lr=0.01']}")
        pg.wait_for_selector(".panel-plot[data-metric='loss'][data-rendered='1']")
        background = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 18, 24)"
        font = pg.evaluate("document.querySelector(\".panel-plot[data-metric='loss']\").layout.font.color")
        assert font == "#d7dbe3"  # charts follow too
        shot(pg, "dark.png")
    finally:
        context.close()


def test_a_failed_run_shows_why_at_the_top(site: Site, page: Any) -> None:
    page.goto(f"{site.base}/experiment/{site.keys['failed']}")
    page.wait_for_selector("#status-box.failed:not([hidden])")
    assert "Failed (exit code 1)" in page.inner_text("#status-title")
    page.wait_for_selector("#error-tail:has-text('ZeroDivisionError')")
    tail = page.inner_text("#error-tail")
    assert tail.startswith("Traceback (most recent call last)") and "1 / 0" in tail
    shot(page, "failed.png")


def test_queues_page_and_a_queued_run_says_nobody_serves_it(site: Site, page: Any) -> None:
    studio(site.env, site.workspace, "run", "--queue", "nobody-here", "--project", "waiting", "slow.py")
    key = site.api("/api/experiments", project="waiting")["items"][0]["key"]
    page.goto(site.base + "/queues")
    page.wait_for_selector("#queues tr[data-queue='nobody-here'] td.unserved")
    assert "studio worker --queue nobody-here" in page.inner_text("#queues tr[data-queue='nobody-here']")
    assert "No worker is running" in page.inner_text("#workers")
    shot(page, "queues.png")
    page.goto(f"{site.base}/experiment/{key}")
    page.wait_for_selector("#status-box.waiting:not([hidden])")
    assert "Waiting on queue nobody-here" in page.inner_text("#status-title")
    page.wait_for_selector("#status-detail[data-served='0']")
    assert "No worker serves nobody-here" in page.inner_text("#status-detail")
    site.delete(key)


def test_delete_asks_for_confirmation(site: Site, page: Any) -> None:
    key = site.keys["failed"]
    page.goto(site.base + "/all")
    page.wait_for_selector(f"#runs tr[data-key='{key}']")
    total = len(row_keys(page))
    page.check(f"#runs tr[data-key='{key}'] input[type=checkbox]")
    page.click("#act-delete")
    page.wait_for_selector("#confirm-dialog[open]")
    assert "Delete 1 experiment?" in page.inner_text("#confirm-text")
    shot(page, "delete-confirm.png")
    page.click("#confirm-cancel")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert key in row_keys(page)
    page.click("#act-delete")
    page.click("#confirm-ok")
    page.wait_for_function(f"!document.querySelector(\"#runs tr[data-key='{key}']\")")
    assert len(row_keys(page)) == total - 1
    assert httpx.get(f"{site.base}/api/experiments/{key}").status_code == 404
    page.goto(f"{site.base}/experiment/{key}")
    assert "404" in page.inner_text("h1") and key in page.inner_text("#error-message")


def test_projects_and_users_pages(site: Site, page: Any) -> None:
    page.goto(site.base + "/projects")
    page.wait_for_selector("#projects tr[data-project='vision']")
    row = page.inner_text("#projects tr[data-project='vision']")
    assert "loss:min" in row and site.keys["lr=0.1"] in row
    shot(page, "projects.png")
    page.goto(site.base + "/users")
    page.wait_for_selector("#users tbody tr[data-user]")
