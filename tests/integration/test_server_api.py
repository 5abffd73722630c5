"""Every endpoint of the dashboard's JSON API and every page, in process (FastAPI TestClient)
over real SQLite and object stores populated by `tests.fixtures.dashboard`."""

from __future__ import annotations

import io
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from studio.api.context import Context
from studio.config import load_settings
from studio.server.app import create_app
from tests.fixtures.dashboard import DIFF, LOSS_POINTS, SPIKE_STEP, SPIKE_VALUE, TRAIN_PY, populate


def make(tmp: Path, **app_options: Any) -> tuple[TestClient, Context, dict[str, str]]:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
    keys = populate(ctx, tmp / "data")
    app = create_app(ctx, **app_options)
    # A page's writes carry the CSRF token it was rendered with (see test_server_auth.py for
    # what happens without it); the Host is one of the allow-listed loopback names.
    csrf = {"X-CSRF-Token": app.state.auth.csrf_for("local")}
    return TestClient(app, base_url="http://127.0.0.1", headers=csrf), ctx, keys


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Shared by the tests that only read."""
    client, ctx, keys = make(tmp_path_factory.mktemp("dash"))
    with client:
        yield client, keys
    ctx.close()


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[TestClient, Context, dict[str, str]]]:
    client, ctx, keys = make(tmp_path)
    with client:
        yield client, ctx, keys
    ctx.close()


def error(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["detail"] and isinstance(body["detail"], str)
    return str(body["detail"])


# -- the experiments table -------------------------------------------------------------
def test_list_pages_newest_first(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    data = client.get("/api/experiments", params={"limit": 2}).json()
    assert data["total"] == 5
    assert [r["key"] for r in data["items"]] == [keys["odd"], keys["queued"]]
    page2 = client.get("/api/experiments", params={"limit": 2, "offset": 2}).json()
    assert [r["key"] for r in page2["items"]] == [keys["running"], keys["second"]]
    row = client.get("/api/experiments", params={"text": "best"}).json()["items"][0]
    assert row["params"] == {"lr": 0.001, "layers": 3, "opt": "adam"}
    assert row["metrics"]["loss"] == pytest.approx(1 / 100.99, abs=0.011)
    assert row["duration"] == pytest.approx(60)
    assert "lr" in data["param_columns"]


def test_list_scopes(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    mine = client.get("/api/experiments", params={"scope": "mine"}).json()
    assert {r["key"] for r in mine["items"]} == {keys["best"], keys["second"], keys["odd"]}
    alice = client.get("/api/experiments", params={"owner": "alice"}).json()
    assert {r["key"] for r in alice["items"]} == {keys["running"], keys["queued"]}
    nlp = client.get("/api/experiments", params={"project": "nlp", "status": "running"}).json()
    assert [r["key"] for r in nlp["items"]] == [keys["running"]]
    several = client.get("/api/experiments", params={"status": "queued,failed"}).json()
    assert {r["key"] for r in several["items"]} == {keys["queued"], keys["odd"]}


@pytest.mark.parametrize(
    ("sort", "first"),
    [("params.lr", "best"), ("-params.lr", "odd"), ("lr", "best"), ("metric_value", "best"),
     ("-metrics.loss", "odd"), ("metrics.loss", "best"), ("key", "best"), ("-duration", "running"),
     ("duration", "odd")],
)
def test_sort(reader: tuple[TestClient, dict[str, str]], sort: str, first: str) -> None:
    client, keys = reader
    data = client.get("/api/experiments", params={"sort": sort}).json()
    assert data["items"][0]["key"] == keys[first]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("lr < 0.01 and status = finished", {"best"}),
        ("lr >= 0.01", {"second", "running", "queued", "odd"}),
        ("opt = adam", {"best", "odd"}),
        ("opt = 'sgd' and layers = 3", {"second"}),
        ("metrics.loss < 0.05", {"best"}),
        ("status in (running, queued)", {"running", "queued"}),
        ("status != finished and project = vision", {"odd"}),
        ("params.note != null", {"odd"}),
        ("note = \"\"", {"best", "second", "running", "queued", "odd"}),
        ("script ~ train", {"best", "second", "running", "queued", "odd"}),
        ("status = running and status = finished", set()),
    ],
)
def test_filter(reader: tuple[TestClient, dict[str, str]], expr: str, expected: set[str]) -> None:
    client, keys = reader
    resp = client.get("/api/experiments", params={"filter": expr})
    assert resp.status_code == 200, resp.text
    assert {r["key"] for r in resp.json()["items"]} == {keys[k] for k in expected}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"filter": "lr <"}, "position 5"),
        ({"filter": "lr < 0.1 or lr > 2"}, "`or` is not supported"),
        ({"filter": "status = nope"}, "unknown status"),
        ({"filter": "metrics.loss = low"}, "is a number"),
        ({"filter": "'x"}, "unterminated"),
        ({"sort": "drop table"}, "cannot sort"),
        ({"status": "bogus"}, "unknown status"),
        ({"filter": "attempts < 99999999999999999999"}, "beyond 64-bit integers"),
        ({"filter": "lr > -9223372036854775809"}, "beyond 64-bit integers"),
        ({"filter": "metrics.loss < 1e999"}, "too large"),
    ],
)
def test_malformed_filters_are_400_with_a_message(reader: tuple[TestClient, dict[str, str]], params: dict[str, str], words: str) -> None:
    client, _ = reader
    assert words in error(client.get("/api/experiments", params=params), 400)


def test_filter_error_carries_position(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = reader
    body = client.get("/api/experiments", params={"filter": "lr 3"}).json()
    assert body["position"] == 4 and body["error"] == "FilterSyntaxError"


def test_bad_paging_is_422(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = reader
    assert "limit" in error(client.get("/api/experiments", params={"limit": 0}), 422)
    error(client.get("/api/experiments", params={"offset": -1}), 422)
    error(client.get("/api/experiments", params={"scope": "everyone"}), 422)


def test_status_of_visible_keys(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    data = client.get("/api/status", params={"keys": f"{keys['running']},{keys['best']},nope"}).json()
    assert data["statuses"][keys["running"]]["status"] == "running"
    assert data["statuses"][keys["best"]]["status"] == "finished"
    assert data["missing"] == ["nope"]
    assert client.get("/api/status").json() == {"statuses": {}, "missing": []}
    assert "at most" in error(client.get("/api/status", params={"keys": ",".join(f"k{i}" for i in range(501))}), 400)


# -- one experiment ----------------------------------------------------------------------
def test_show(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get(f"/api/experiments/{keys['best']}").json()
    assert d["command"] == "python train.py --lr 0.001"
    assert [h["status"] for h in d["history"]] == ["queued", "running", "finished"]
    assert d["metrics"]["loss"]["max"] == SPIKE_VALUE
    assert d["git"]["diff"] == DIFF and d["pythonenv"] == ["numpy==2.0.0", "studio==0.1.0"]
    assert d["env"]["API_TOKEN"] == "***"


def test_nan_and_inf_become_null(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get(f"/api/experiments/{keys['odd']}").json()
    assert d["metric_value"] is None
    assert d["metrics"]["loss"]["last"] is None and d["metrics"]["loss"]["max"] is None
    rows = client.get("/api/experiments", params={"filter": "status = failed"}).json()["items"]
    assert rows[0]["metrics"] == {"loss": None}


@pytest.mark.parametrize("key", ["nope", "a%20b", "..", "x" * 300])
def test_unknown_experiment_is_404_json(reader: tuple[TestClient, dict[str, str]], key: str) -> None:
    client, _ = reader
    for suffix in ("", "/output", "/metrics", "/series?keys=loss", "/artifacts", "/artifacts/workspace/files",
                   "/artifacts/workspace/archive"):
        resp = client.get(f"/api/experiments/{key}{suffix}")
        assert resp.status_code == 404, (suffix, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.json()["detail"]


def test_output_tail(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    base = f"/api/experiments/{keys['best']}/output"
    d = client.get(base).json()
    assert d["text"] == "epoch 1\nepoch 2\ndone\n" and d["last_seq"] == 2 and d["terminal"]
    after = client.get(base, params={"after_seq": 0}).json()
    assert after["text"] == "epoch 2\ndone\n"
    assert client.get(base, params={"after_seq": 2}).json()["text"] == ""
    cut = client.get(base, params={"max_chars": 5}).json()
    assert cut["truncated"] and cut["text"] == "done\n"
    live = client.get(f"/api/experiments/{keys['running']}/output").json()
    assert live["text"] == "starting\n" and not live["terminal"]


# -- metrics -----------------------------------------------------------------------------
def test_metric_names(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get(f"/api/experiments/{keys['best']}/metrics").json()
    assert d["keys"] == ["acc", "loss"] and d["system"] == ["sys/cpu"]
    assert d["summaries"]["loss"]["count"] == LOSS_POINTS
    live = client.get(f"/api/experiments/{keys['running']}/metrics").json()
    assert live["keys"] == ["loss"]  # read from the live folder: no summary stored yet


def test_series_buckets_keep_the_spike(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get(f"/api/experiments/{keys['best']}/series", params={"keys": "loss,acc,nope", "buckets": 100}).json()
    loss = d["series"]["loss"]
    assert loss["sampled"] and loss["total"] == LOSS_POINTS and 100 <= len(loss["x"]) <= 202
    assert max(loss["y"]) == SPIKE_VALUE and SPIKE_STEP in loss["x"]
    assert loss["x"] == sorted(loss["x"]) and loss["x"][0] == 0 and loss["x"][-1] == LOSS_POINTS - 1
    assert d["series"]["acc"]["count"] == 300
    small = client.get(f"/api/experiments/{keys['best']}/series", params={"keys": "acc", "buckets": 150}).json()
    assert not small["series"]["acc"]["sampled"] and len(small["series"]["acc"]["x"]) == 300
    assert d["missing"] == ["nope"]


def test_series_zoom_gets_finer(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    url = f"/api/experiments/{keys['best']}/series"
    zoom = client.get(url, params={"keys": "loss", "buckets": 100, "x_min": 4990, "x_max": 5010}).json()["series"]["loss"]
    assert not zoom["sampled"] and zoom["x"] == list(range(4989, 5012))
    assert zoom["y"][zoom["x"].index(SPIKE_STEP)] == SPIKE_VALUE
    mid = client.get(url, params={"keys": "loss", "buckets": 100, "x_min": 2000, "x_max": 6000}).json()["series"]["loss"]
    assert mid["sampled"] and mid["count"] == 4003 and min(mid["x"]) == 1999 and SPIKE_STEP in mid["x"]


def test_series_of_a_live_experiment(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get(f"/api/experiments/{keys['running']}/series", params={"keys": "loss"}).json()
    assert len(d["series"]["loss"]["x"]) == 50 and not d["terminal"]


def test_series_of_many_runs_with_wall_times(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    resp = client.get("/api/charts/series", params={"keys": f"{keys['best']},{keys['second']},nope", "metrics": "loss,acc",
                                             "buckets": 100, "time": "true"})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["missing"] == ["nope"]
    best = data["runs"][keys["best"]]["loss"]
    assert best["sampled"] and max(best["y"]) == SPIKE_VALUE and len(best["t"]) == len(best["x"])
    assert all(isinstance(t, float) for t in best["t"])
    assert set(data["runs"][keys["second"]]) == {"loss", "acc"}
    assert "t" not in client.get("/api/charts/series", params={"keys": keys["best"], "metrics": "loss"}).json()["runs"][keys["best"]]["loss"]
    error(client.get("/api/charts/series", params={"keys": keys["best"], "metrics": ",".join(f"m{i}" for i in range(51))}), 400)
    # Zoom on a time axis (this run logged every point at once; tests/unit/test_server_series.py
    # and the browser test zoom into spread times): the steps logged within the range.
    start = data["starts"][keys["best"]]
    assert start == min(best["t"])
    query = {"keys": keys["best"], "metrics": "loss", "buckets": 100, "time": "true"}
    for axis, offset in [("time", start), ("relative", 0.0)]:
        z = client.get("/api/charts/series", params={**query, "x_axis": axis, "x_min": offset - 1, "x_max": offset + 1}).json()
        assert z["runs"][keys["best"]]["loss"]["count"] == best["count"]
        z = client.get("/api/charts/series", params={**query, "x_axis": axis, "x_min": offset - 10, "x_max": offset - 5}).json()
        assert z["runs"][keys["best"]]["loss"]["x"] == [0, 1]  # nothing inside: the first point (and its neighbour)
    error(client.get("/api/charts/series", params={"keys": keys["best"], "metrics": "loss", "x_axis": "days"}), 422)


def test_series_bad_input(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    url = f"/api/experiments/{keys['best']}/series"
    error(client.get(url, params={"keys": "loss", "buckets": 1}), 422)
    error(client.get(url), 422)
    assert "at most 50" in error(client.get(url, params={"keys": ",".join(f"m{i}" for i in range(60))}), 400)
    nan = client.get(url, params={"keys": "loss", "x_min": "nan", "x_max": "inf"})
    assert nan.status_code == 200 and nan.json()["series"]["loss"]["total"] == LOSS_POINTS


# -- artifacts ---------------------------------------------------------------------------
def test_artifact_list_and_tree(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    arts = {a["tag"]: a for a in client.get(f"/api/experiments/{keys['best']}/artifacts").json()["artifacts"]}
    assert arts["workspace"]["stored"] and not arts["output"]["stored"]
    files = client.get(f"/api/experiments/{keys['best']}/artifacts/workspace/files").json()
    assert [e["path"] for e in files["entries"]] == ["sub/notes.txt", "train.py"] and files["kind"] == "dir"
    sub = client.get(f"/api/experiments/{keys['best']}/artifacts/workspace/files", params={"prefix": "sub"}).json()
    assert [e["path"] for e in sub["entries"]] == ["sub/notes.txt"]
    one = client.get(f"/api/experiments/{keys['best']}/artifacts/workspace/files", params={"limit": 1}).json()
    assert one["truncated"] and one["total"] == 2


def test_file_download(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    url = f"/api/experiments/{keys['best']}/artifacts/workspace/file"
    resp = client.get(url, params={"path": "train.py"})
    assert resp.status_code == 200 and resp.text == TRAIN_PY
    assert 'attachment; filename="train.py"' in resp.headers["content-disposition"]
    inline = client.get(url, params={"path": "sub/notes.txt", "inline": True})
    assert inline.headers["content-type"].startswith("text/plain") and inline.text.startswith("hello")


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "sub/../train.py", "sub//notes.txt", "./train.py",
                                  "C:/x", "sub\\notes.txt", ".."])
def test_path_escapes_are_refused(reader: tuple[TestClient, dict[str, str]], path: str) -> None:
    client, keys = reader
    url = f"/api/experiments/{keys['best']}/artifacts/workspace/file"
    assert "artifact path" in error(client.get(url, params={"path": path}), 400)
    files = f"/api/experiments/{keys['best']}/artifacts/workspace/files"
    error(client.get(files, params={"prefix": path}), 400)


def test_unknown_artifacts_and_files_are_404(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    base = f"/api/experiments/{keys['best']}/artifacts"
    assert "it has: metrics, output, workspace" in error(client.get(f"{base}/nope/files"), 404)
    assert "not been stored" in error(client.get(f"{base}/output/archive"), 404)
    assert "no file" in error(client.get(f"{base}/workspace/file", params={"path": "missing.txt"}), 404)


def test_archive_is_a_streamed_tar_gz(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    resp = client.get(f"/api/experiments/{keys['best']}/artifacts/workspace/archive")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/gzip"
    assert f'filename="{keys["best"]}-workspace.tar.gz"' in resp.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        names = tar.getnames()
        root = f"{keys['best']}-workspace"
        assert names == [f"{root}/sub/notes.txt", f"{root}/train.py"]
        member = tar.extractfile(f"{root}/train.py")
        assert member is not None and member.read().decode() == TRAIN_PY


# -- lists and compare -------------------------------------------------------------------
def test_projects_with_best_metric(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    projects = {p["name"]: p for p in client.get("/api/projects").json()["projects"]}
    assert projects["vision"]["count"] == 3 and projects["vision"]["finished"] == 2
    assert projects["vision"]["best"]["key"] == keys["best"]
    assert projects["nlp"]["running"] == 1 and projects["nlp"]["best"] is None


def test_project_points(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get("/api/projects/vision/points").json()
    assert d["total"] == 3 and d["metric"] in ("loss:min", "loss") and not d["maximize"]
    params = {p["name"]: p["numeric"] for p in d["params"]}
    assert params == {"lr": True, "layers": True, "opt": False, "note": False}
    assert "no project" in error(client.get("/api/projects/nope/points"), 404)


def test_sweep_history_and_importance(tmp_path: Path) -> None:
    from studio.entities import Experiment, Status

    home = tmp_path / "home"
    home.mkdir()
    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
    for i in range(12):
        lr, layers = [0.001, 0.01, 0.1][i % 3], [2, 4][i % 2]
        key = f"s{i:02d}"
        ctx.meta.create_experiment(Experiment(key=key, project="sw", metric="acc:max", time_added=1000.0 + i,
                                              params={"lr": lr, "layers": layers, "opt": "adam"}))
        ctx.meta.set_status(key, Status.RUNNING, worker="w")
        ctx.meta.set_status(key, Status.FINISHED, metric_value=lr * 10 + layers * 0.001)  # lr matters, layers barely
    with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:
        data = client.get("/api/projects/sw/sweep").json()
        assert data["maximize"] is True and len(data["history"]) == 12
        assert [h["best"] for h in data["history"]][:3] == pytest.approx([0.012, 0.104, 1.002])
        assert data["history"][-1]["best"] == pytest.approx(1.004)
        imp = data["importance"]
        assert set(imp) == {"lr", "layers"} and imp["lr"] > imp["layers"]  # `opt` never varied
        assert data["evaluator"] in ("fANOVA", "PED-ANOVA")
        error(client.get("/api/projects/nope/sweep"), 404)
    ctx.close()


def test_users(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = reader
    d = client.get("/api/users").json()
    counts = {u["name"]: u["count"] for u in d["users"]}
    assert counts["alice"] == 2 and counts[d["me"]] == 3


def test_compare(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    d = client.get("/api/compare", params={"keys": f"{keys['best']},{keys['second']}"}).json()
    params = {p["name"]: p for p in d["params"]}
    assert params["lr"]["values"] == [0.001, 0.1] and params["lr"]["differs"]
    assert not params["layers"]["differs"]
    assert {m["name"] for m in d["metrics"]} == {"acc", "loss", "sys/cpu"}
    assert "2 to 20" in error(client.get("/api/compare", params={"keys": keys["best"]}), 400)
    assert "nope" in error(client.get("/api/compare", params={"keys": f"{keys['best']},nope"}), 404)


def test_queues_and_health(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = reader
    assert client.get("/api/health").json()["status"] == "ok"
    assert "queues" in client.get("/api/queues").json()
    assert "/api/experiments" in client.get("/openapi.json").json()["paths"]
    assert "no page or endpoint" in error(client.get("/api/nothing-here"), 404)


# -- pages -------------------------------------------------------------------------------
def test_pages(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = reader
    html = {"accept": "text/html"}
    for path, marker in [("/", "My experiments"), ("/all", "All experiments"), ("/projects", "Projects"),
                         ("/project/vision", "parcoords"), ("/users", "Users"), ("/user/alice", "Experiments of alice"),
                         (f"/experiment/{keys['best']}", keys["best"]), (f"/compare?keys={keys['best']},{keys['second']}", "compare")]:
        resp = client.get(path, headers=html)
        assert resp.status_code == 200 and marker in resp.text, path
    for path in ["/experiment/nope", "/project/nope", "/user/nobody", "/no/such/page"]:
        resp = client.get(path, headers=html)
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
        assert 'id="error-message"' in resp.text


def test_compression_and_cache_headers(reader: tuple[TestClient, dict[str, str]]) -> None:
    from studio import __version__

    client, keys = reader
    gz = {"accept-encoding": "gzip"}
    plotly = client.get("/vendor/plotly.min.js", headers=gz)
    assert plotly.headers["content-encoding"] == "gzip" and "max-age" in plotly.headers["cache-control"]
    page = client.get("/all", headers={**gz, "accept": "text/html"})
    assert page.headers.get("content-encoding") == "gzip" and "experiments" in page.text
    js = client.get(f"/static/table.js?v={__version__}", headers=gz)
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable" and js.headers["content-encoding"] == "gzip"
    assert client.get("/static/table.js").headers["cache-control"] == "no-cache"
    # Artifact files and archives go out as stored: never compressed on the way.
    archive = client.get(f"/api/experiments/{keys['best']}/artifacts/workspace/archive", headers=gz)
    assert archive.status_code == 200 and "content-encoding" not in archive.headers


def test_brotli_when_the_client_accepts_it(reader: tuple[TestClient, dict[str, str]]) -> None:
    from studio.server.app import plotly_js

    client, _ = reader
    original = plotly_js().read_bytes()
    sizes = {}
    for accept in ["br", "gzip, deflate, br, zstd", "gzip", "br;q=0, gzip", ""]:
        resp = client.get("/vendor/plotly.min.js", headers={"accept-encoding": accept})
        coding = "br" if "br" in accept and "q=0" not in accept else "gzip" if "gzip" in accept else None
        assert resp.headers.get("content-encoding") == coding, accept
        assert resp.content == original  # httpx decodes both
        assert resp.headers["vary"] == "Accept-Encoding" and resp.headers["cache-control"] == "public, max-age=86400"
        assert resp.headers["etag"].startswith('W/"') and resp.headers["etag"].endswith(f'-{coding or "identity"}"')
        sizes[coding] = resp.num_bytes_downloaded
        # A cached copy is revalidated without a body; another coding's ETag does not match.
        again = client.get("/vendor/plotly.min.js", headers={"accept-encoding": accept,
                                                             "if-none-match": resp.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == resp.headers["etag"]
    assert sizes["br"] < sizes["gzip"] < sizes[None] / 3
    other = client.get("/vendor/plotly.min.js", headers={"accept-encoding": "gzip", "if-none-match": 'W/"x-br"'})
    assert other.status_code == 200
    # Scripts, styles and pages and JSON: brotli too (the JSON and pages compressed on the way).
    js = client.get("/static/table.js", headers={"accept-encoding": "br"})
    assert js.headers["content-encoding"] == "br" and js.headers["content-type"].startswith("text/javascript")
    page = client.get("/all", headers={"accept-encoding": "gzip, br", "accept": "text/html"})
    assert page.headers["content-encoding"] == "br" and "experiments" in page.text
    assert "accept-encoding" in page.headers["vary"].lower()
    rows = client.get("/api/experiments", params={"limit": 100}, headers={"accept-encoding": "br"})
    assert rows.headers["content-encoding"] == "br" and rows.json()
    assert client.get("/static/no-such.js").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404
    head = client.head("/static/style.css", headers={"accept-encoding": "br"})
    assert head.status_code == 200 and head.headers["content-encoding"] == "br" and int(head.headers["content-length"]) > 0


def test_large_assets_get_the_best_brotli_once_and_keep_it(tmp_path: Path) -> None:
    """The first request gets a quick copy; the best one is built aside, kept on disk, and what
    a later server (a new Assets) serves from the start."""
    import brotli
    from starlette.requests import Request

    from studio.server.assets import BEST_QUALITY, Assets

    asset = tmp_path / "big.js"
    asset.write_text("".join(f"var v{i} = {i * 7919 % 10007};\n" for i in range(40_000)))  # ~0.8 MB
    request = Request({"type": "http", "method": "GET", "path": "/x", "query_string": b"",
                       "headers": [(b"accept-encoding", b"br")]})
    cache = tmp_path / "cache"
    first = Assets(cache).response(request, asset, "no-cache")
    assert brotli.decompress(first.body) == asset.read_bytes()
    best = brotli.compress(asset.read_bytes(), quality=BEST_QUALITY)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.br")) and time.monotonic() < deadline:
        time.sleep(0.2)
    (stored,) = cache.glob("*.br")
    assert stored.read_bytes() == best and len(best) < len(first.body)
    later = Assets(cache).response(request, asset, "no-cache")
    assert later.body == best and later.headers["etag"] == first.headers["etag"]


def test_assets_come_from_the_package(reader: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = reader
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    for asset in ["style.css", "common.js", "table.js", "experiment.js", "charts.js", "project.js", "compare.js", "lists.js"]:
        assert client.get(f"/static/{asset}").status_code == 200
    import re

    for page in ["/all", "/project/vision", "/experiment/exp-best", "/compare?keys=exp-best,exp-odd"]:
        links = re.findall(r'(?:src|href)="([^"]*)"', client.get(page).text)
        assert links and all(link.startswith("/") for link in links), links  # nothing from the internet
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN


# -- actions -----------------------------------------------------------------------------
def test_stop(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, ctx, keys = writer
    r = client.post(f"/api/experiments/{keys['queued']}/stop").json()
    assert r["ok"] and r["status"] == "stopped"
    r = client.post(f"/api/experiments/{keys['running']}/stop").json()
    assert r["status"] == "running" and ctx.meta.get_experiment(keys["running"]).stop_requested
    r = client.post(f"/api/experiments/{keys['best']}/stop").json()
    assert r["detail"] == "already finished"
    error(client.post("/api/experiments/nope/stop"), 404)


def test_cross_site_writes_are_refused(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, ctx, keys = writer
    evil = {"origin": "http://evil.example"}
    assert "cross-origin" in error(client.post(f"/api/experiments/{keys['queued']}/stop", headers=evil), 403)
    error(client.delete(f"/api/experiments/{keys['best']}", headers=evil), 403)
    assert ctx.meta.get_experiment(keys["queued"]).status.value == "queued"
    assert client.get("/api/experiments", headers=evil).status_code == 200  # reading is open to all
    same = {"origin": "http://127.0.0.1"}
    assert client.post(f"/api/experiments/{keys['queued']}/stop", headers=same).json()["ok"]


def test_annotate_name_tags_note(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, ctx, keys = writer
    key = keys["second"]
    row = client.get("/api/experiments", params={"text": "second"}).json()["items"][0]
    assert row["name"] == "train.py layers=3 lr=0.1 opt=sgd" and row["named"] is False  # the default
    resp = client.patch(f"/api/experiments/{key}", json={"name": "sgd baseline", "add_tags": ["baseline", "sgd"],
                                                        "note": "Loss **plateaus**.\n\n<script>alert(1)</script>"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["name"] == "sgd baseline" and body["tags"] == ["baseline", "sgd"]
    assert "<strong>plateaus</strong>" in body["note_html"] and "<script>" not in body["note_html"]
    shown = client.get(f"/api/experiments/{key}").json()
    assert shown["display_name"] == "sgd baseline" and shown["note"].startswith("Loss")
    assert "&lt;script&gt;" in shown["note_html"]
    # Searchable: filters and the search box.
    found = client.get("/api/experiments", params={"filter": "tags = baseline"}).json()["items"]
    assert [r["key"] for r in found] == [key]
    assert [r["key"] for r in client.get("/api/experiments", params={"text": "sgd base"}).json()["items"]] == [key]
    assert [r["key"] for r in client.get("/api/experiments", params={"filter": "note ~ plateaus"}).json()["items"]] == [key]
    assert client.patch(f"/api/experiments/{key}", json={"remove_tags": ["sgd"], "name": ""}).json()["tags"] == ["baseline"]
    assert ctx.meta.get_experiment(key).name is None
    # Bad input changes nothing and says why.
    assert "bad tag" in error(client.patch(f"/api/experiments/{key}", json={"add_tags": ["no spaces"], "name": "x"}), 400)
    assert ctx.meta.get_experiment(key).name is None
    assert "one line" in error(client.patch(f"/api/experiments/{key}", json={"name": "a\nb"}), 400)
    error(client.patch("/api/experiments/nope", json={"name": "x"}), 404)
    error(client.patch(f"/api/experiments/{key}", json={"name": "x" * 201}), 422)
    # Another site's page cannot rename runs through a visitor's browser.
    evil = {"origin": "http://evil.example"}
    assert "cross-origin" in error(client.patch(f"/api/experiments/{key}", json={"name": "pwned"}, headers=evil), 403)
    assert ctx.meta.get_experiment(key).name is None


def test_delete(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, _, keys = writer
    assert client.delete(f"/api/experiments/{keys['best']}").json()["detail"] == "deleted"
    error(client.get(f"/api/experiments/{keys['best']}"), 404)
    error(client.delete(f"/api/experiments/{keys['best']}"), 404)


def test_batch(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, _, keys = writer
    res = client.post("/api/batch", json={"action": "delete", "keys": [keys["second"], "nope", keys["odd"]]}).json()
    assert [(r["key"], r["ok"]) for r in res["results"]] == [(keys["second"], True), ("nope", False), (keys["odd"], True)]
    assert client.get("/api/experiments").json()["total"] == 3
    error(client.post("/api/batch", json={"action": "explode", "keys": ["a"]}), 422)
    error(client.post("/api/batch", json={"action": "stop", "keys": []}), 422)


def test_rerun_to_a_queue(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, ctx, keys = writer
    r = client.post(f"/api/experiments/{keys['best']}/rerun", json={"queue": "gpu"}).json()
    new = ctx.meta.get_experiment(r["new_key"])
    assert new.status.value == "queued" and new.queue == "gpu" and new.params == {"lr": 0.001, "layers": 3, "opt": "adam"}
    assert "no stored workspace" in error(client.post(f"/api/experiments/{keys['odd']}/rerun"), 404)


@pytest.mark.slow
def test_rerun_here_runs_in_the_background(writer: tuple[TestClient, Context, dict[str, str]]) -> None:
    client, ctx, keys = writer
    r = client.post(f"/api/experiments/{keys['best']}/rerun").json()
    assert r["ok"] and r["new_key"]
    start = time.monotonic()
    status = None
    while time.monotonic() - start < 60:
        resp = client.get("/api/status", params={"keys": r["new_key"]}).json()["statuses"].get(r["new_key"])
        status = resp and resp["status"]
        if status in ("finished", "failed") or (status is None and time.monotonic() - start > 15):
            break
        time.sleep(0.3)
    log = (ctx.settings.experiment_dir(r["new_key"]) / "rerun.log").read_text()
    assert status == "finished", log
    out = client.get(f"/api/experiments/{r['new_key']}/output").json()["text"]
    assert "step 2" in out


def test_tensorboard_missing_says_how_to_install(writer: tuple[TestClient, Context, dict[str, str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, keys = writer
    monkeypatch.setattr("studio.server.tensorboard.tensorboard_installed", lambda: False)
    r = client.post(f"/api/experiments/{keys['best']}/tensorboard").json()
    assert not r["available"] and "pip install tensorboard" in r["message"]


STAND_IN = """
import argparse, http.server, sys
p = argparse.ArgumentParser(); p.add_argument('--logdir'); p.add_argument('--port', type=int); p.add_argument('--host')
p.add_argument('--logdir_spec'); p.add_argument('--path_prefix')
a = p.parse_args()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{a.logdir or a.logdir_spec} {self.path}".encode()
        self.send_response(200); self.send_header('Content-Type', 'text/plain'); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((a.host, a.port), H).serve_forever()
"""


def test_tensorboard_starts_on_the_tb_folder(tmp_path: Path) -> None:
    script = tmp_path / "fake_tensorboard.py"
    script.write_text(STAND_IN)
    client, ctx, keys = make(tmp_path, tensorboard_command=[sys.executable, str(script)])
    tb = tmp_path / "tbdir"
    tb.mkdir()
    (tb / "events.out.tfevents.1").write_bytes(b"x")
    from studio.entities import ArtifactSpec

    ctx.meta.put_artifact(keys["running"], ArtifactSpec(tag="tb", local_path=str(tb)))
    with client:
        r = client.post(f"/api/experiments/{keys['running']}/tensorboard").json()
        assert r["available"] and r["ready"], r
        # Served under the dashboard's own address, forwarded to TensorBoard's loopback port.
        assert r["url"] == f"/tensorboard/{r['board']}/"
        assert client.get(r["url"] + "data/runs?x=1").text == f"{tb} /tensorboard/{r['board']}/data/runs?x=1"
        assert client.get(f"/tensorboard/{r['board']}", follow_redirects=False).status_code == 307
        again = client.post(f"/api/experiments/{keys['running']}/tensorboard").json()
        assert again["url"] == r["url"]
        # Several runs: one TensorBoard, runs named by key.
        tb2 = tmp_path / "tbdir2"
        tb2.mkdir()
        ctx.meta.put_artifact(keys["queued"], ArtifactSpec(tag="tb", local_path=str(tb2)))
        both = client.post("/api/tensorboard", json={"keys": [keys["running"], keys["queued"]]}).json()
        assert both["ready"] and both["url"] != r["url"]
        spec = client.get(both["url"]).text.split(" ")[0]
        assert spec == ",".join(sorted([f"{keys['running']}:{tb}", f"{keys['queued']}:{tb2}"]))
        assert "no `tb` artifact" in error(client.post(f"/api/experiments/{keys['best']}/tensorboard"), 404)
        assert "no `tb` artifact" in error(client.post("/api/tensorboard", json={"keys": [keys["running"], keys["best"]]}), 404)
        assert "no TensorBoard" in error(client.get("/tensorboard/0123456789abcdef/"), 404)
        evil = {"origin": "http://evil.example"}
        assert client.post("/api/tensorboard", json={"keys": [keys["running"]]}, headers=evil).status_code == 403
    boards = client.app.state.tensorboards  # type: ignore[attr-defined]
    assert boards._running == {}
    ctx.close()


def test_every_response_says_how_long_the_server_took(reader: tuple[TestClient, dict[str, str]]) -> None:
    import re

    client, keys = reader
    for path in ("/api/health", "/api/experiments", f"/api/experiments/{next(iter(keys.values()))}", "/", "/no-such-page"):
        timing = client.get(path).headers.get("server-timing", "")
        assert re.fullmatch(r"app;dur=\d+\.\d\d", timing), (path, timing)
    # also on refusals made before any route (a Host outside the allow-list)
    refused = client.get("/api/health", headers={"Host": "attacker.example"})
    assert refused.status_code == 403 and refused.headers["server-timing"].startswith("app;dur=")
