"""`studio import mlflow` against a real MLflow store made in the test (SQLite), through the
real `studio` command: params, full metric histories with steps and timestamps, tags, status,
times and artifacts arrive; a second import adds nothing; bad input leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.workbook import ExperimentRepository
from tests.e2e.helpers import studio, studio_json

pytestmark = pytest.mark.slow

MAKE_STORE = """\
import sys, mlflow
from mlflow.tracking import MlflowClient
uri = sys.argv[1]
mlflow.set_tracking_uri(uri)
c = MlflowClient(uri)
ids = {}
for name in ("vision", "nlp"):
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=f"{name}-good") as run:
        mlflow.log_params({"lr": 0.01, "layers": 3, "opt": "adam", "amsgrad": True})
        mlflow.set_tag("team", "blue")
        for step in range(50):
            c.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), timestamp=1_700_000_000_000 + step * 1000, step=step)
        mlflow.log_text("weights v1", "model/weights.txt")
        ids[name] = run.info.run_id
mlflow.set_experiment("vision")
with mlflow.start_run(run_name="broken") as run:
    mlflow.log_param("lr", 1.0)
    c.log_metric(run.info.run_id, "loss", float("nan"), step=0)
    ids["failed"] = run.info.run_id
c.set_terminated(ids["failed"], status="FAILED")
print(ids)
"""


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("mlflow")
    (root / "make.py").write_text(MAKE_STORE)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "make.py", uri], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return uri, eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own dict literal


def test_import_copies_runs_and_is_idempotent(studio_home: Path, tmp_path: Path, mlflow_store: tuple[str, dict[str, str]]) -> None:
    uri, ids = mlflow_store
    report = studio_json("import", "mlflow", "--tracking-uri", uri, timeout=300)
    assert sorted(report["imported"]) == sorted(f"mlflow-{i}" for i in ids.values())
    assert report["failed"] == {}
    runs = {r["key"]: r for r in studio_json("runs", "list", "all")}
    good = runs[f"mlflow-{ids['vision']}"]
    assert good["project"] == "vision" and good["status"] == "finished"
    assert good["params"] == {"lr": 0.01, "layers": 3, "opt": "adam", "amsgrad": True, "mlflow.runName": "vision-good"}
    assert runs[f"mlflow-{ids['nlp']}"]["project"] == "nlp"
    assert runs[f"mlflow-{ids['failed']}"]["status"] == "failed"

    exp = ExperimentRepository()[good["key"]]
    loss = exp.metrics("loss")
    assert loss["step"].tolist() == list(range(50))
    assert loss["value"].tolist()[:2] == [1.0, 0.5]
    assert loss["time"].tolist()[1] == pytest.approx(1_700_000_001.0)
    assert exp["mlflow/tags.json"]["tags"]["team"] == "blue"
    dest = tmp_path / "art"
    assert studio("artifacts", "get", good["key"], "artifacts", str(dest)).returncode == 0
    assert (dest / "model" / "weights.txt").read_text() == "weights v1"
    shown = studio_json("runs", "show", good["key"])
    assert shown["metrics"]["loss"]["min"] == pytest.approx(0.02) and shown["metrics"]["loss"]["count"] == 50

    again = studio_json("import", "mlflow", "--tracking-uri", uri, timeout=300)
    assert again["imported"] == [] and len(again["skipped"]) == 3
    assert len(studio_json("runs", "list", "all")) == 3


def test_one_experiment_only(studio_home: Path, mlflow_store: tuple[str, dict[str, str]]) -> None:
    uri, ids = mlflow_store
    proc = studio("import", "mlflow", "--tracking-uri", uri, "--experiment", "nlp", "--no-artifacts", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 imported, 0 already there, 0 failed" in proc.stdout
    (run,) = studio_json("runs", "list", "all")
    assert run["key"] == f"mlflow-{ids['nlp']}" and "artifacts" not in studio_json("runs", "show", run["key"])["artifacts"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiment", "nope"], "has no experiment 'nope'"),
        (["--tracking-uri", "bogus://x"], "could not read MLflow tracking store"),
    ],
)
def test_bad_input_is_one_line_and_imports_nothing(
    studio_home: Path, mlflow_store: tuple[str, dict[str, str]], args: list[str], message: str
) -> None:
    uri, _ = mlflow_store
    full = ["import", "mlflow", *args] if "--tracking-uri" in args else ["import", "mlflow", "--tracking-uri", uri, *args]
    proc = studio(*full, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert studio_json("runs", "list", "all") == []


def test_json_report_is_json(studio_home: Path, mlflow_store: tuple[str, dict[str, str]]) -> None:
    uri, _ = mlflow_store
    out = studio("import", "mlflow", "--tracking-uri", uri, "--experiment", "nlp", "--json", timeout=300)
    assert json.loads(out.stdout)["failed"] == {}
