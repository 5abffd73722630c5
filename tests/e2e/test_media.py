"""End to end: a script logs images, a table, figures and an artifact from code, under
`studio run` and as a plain `python` process with `studio.init()`; a notebook reads them back,
and the dashboard's API serves them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from studio.api.context import Context
from studio.config import load_settings
from studio.server.app import create_app
from studio.workbook import ExperimentRepository
from tests.e2e.helpers import studio, studio_json

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """\
import numpy as np, pandas as pd, studio
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import plotly.graph_objects as go
{init}
for step in range(3):
    img = np.zeros((6, 8, 3), dtype=np.uint8)
    img[:, :, 0] = 40 * step
    studio.log_image("samples", img, step=step)
studio.log_image("val/mask", np.eye(5) > 0)
studio.log_table("predictions", pd.DataFrame({{"id": [1, 2, 3], "label": ["cat", "dog", "cat"], "p": [0.9, 0.2, 0.7]}}))
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
studio.log_figure("curve", fig)
studio.log_figure("interactive", go.Figure(go.Scatter(y=[3, 1, 2])), step=7)
os_path = "weights.bin"
open(os_path, "wb").write(b"\\x00\\x01weights")
studio.save(os_path, "weights")
print("done")
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def check(key: str) -> None:
    exp = ExperimentRepository()[key]
    images = exp.images("samples")
    assert list(images) == [0, 1, 2]
    assert np.asarray(images[2])[0, 0].tolist() == [80, 0, 0]
    assert np.asarray(exp.images("val/mask")[0]).shape == (5, 5)
    table = exp.table("predictions")
    assert table["label"].tolist() == ["cat", "dog", "cat"] and table["p"].tolist() == [0.9, 0.2, 0.7]
    assert list(exp.figures("interactive")) == [7]
    assert exp.figures("interactive")[7]["data"][0]["y"] == [3, 1, 2]
    assert exp.figures("curve")[0].size[0] > 100  # the matplotlib PNG
    assert exp.path("weights").read_bytes() == b"\x00\x01weights"
    assert exp.media_names() == ["samples", "val/mask"]


def test_rich_results_under_studio_run(studio_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "train.py", SCRIPT.format(init=""))
    proc = studio("run", "train.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = studio_json("runs", "list", "all")
    assert run["status"] == "finished"
    check(run["key"])
    # The artifact saved from code is an ordinary artifact: `artifacts get` copies it out.
    out = tmp_path / "w.bin"
    assert studio("artifacts", "get", run["key"], "weights", str(out)).returncode == 0
    assert out.read_bytes() == b"\x00\x01weights"


def test_rich_results_from_plain_python_and_the_dashboard_api(studio_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "train.py", SCRIPT.format(init='studio.init(project="media")'))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run,) = studio_json("runs", "list", "all")
    assert (run["project"], run["status"]) == ("media", "finished")
    check(run["key"])

    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(studio_home)}))
    with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:
        base = f"/api/experiments/{run['key']}/media"
        listing = client.get(base).json()
        assert [i["step"] for i in listing["images"]["samples"]] == [0, 1, 2]
        assert listing["figures"]["interactive"][0]["format"] == "plotly"
        png = client.get(base + "/file", params={"path": listing["images"]["samples"][0]["path"]})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG")
        fig = client.get(base + "/file", params={"path": listing["figures"]["interactive"][0]["path"]})
        assert fig.headers["content-type"] == "application/json" and fig.json()["data"][0]["y"] == [3, 1, 2]
        # An SVG could run script on the dashboard's origin: never served inline.
        svg = client.get(base + "/file", params={"path": "figures/curve/0000000000.svg"})
        assert svg.status_code == 400
        assert client.get(base + "/file", params={"path": "../x.png"}).status_code == 400
        rows = client.get(base + "/table", params={"name": "predictions"}).json()
        assert rows["columns"] == ["id", "label", "p"] and rows["rows"][1] == [2, "dog", 0.2]
        missing = client.get(base + "/table", params={"name": "nope"})
        assert missing.status_code == 404 and "predictions" in missing.json()["detail"]
    ctx.close()


def test_without_an_experiment_the_error_names_studio_init(studio_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "t.py", "import numpy as np, studio\nstudio.log_image('x', np.zeros((2, 2)))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "t.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "studio.init()" in proc.stderr.strip().splitlines()[-1]
    assert studio_json("runs", "list", "all") == []


@pytest.mark.parametrize(
    "call, message",
    [
        ("studio.save('missing.bin', 'w')", "does not exist"),
        ("studio.save('t.py', 'workspace')", "cannot be an artifact tag"),
        ("studio.log_table('t', 42)", "DataFrame"),
        ("studio.log_figure('f', object())", "matplotlib Figure or a plotly Figure"),
        ("studio.log_image('x', np.zeros((2, 2)), step=1.5)", "step must be an integer"),
    ],
)
def test_bad_calls_raise_where_they_are_made(studio_home: Path, tmp_path: Path, call: str, message: str) -> None:
    write(tmp_path / "t.py", f"import numpy as np, studio\nstudio.init(echo=False)\n{call}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "t.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr
    (run,) = studio_json("runs", "list", "all")
    assert run["status"] == "failed"
