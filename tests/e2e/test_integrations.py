"""The framework adapters with the real libraries on the CPU, each through its example in
examples/integrations (tiny models made in the script, nothing downloaded), under `studio run`
and, for Lightning, as a plain `python` process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.workbook import ExperimentRepository
from tests.e2e.helpers import studio, studio_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "integrations"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    dest = tmp_path / "integrations"
    shutil.copytree(EXAMPLES, dest)
    return dest


def run(examples: Path, *args: str) -> dict:
    proc = studio("run", *args, cwd=examples, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    key = studio_json("runs", "list", "all")[0]["key"]
    return studio_json("runs", "show", key)


def stored_files(record: dict, tag: str) -> list[str]:
    return [p.name for p in ExperimentRepository()[record["key"]].path(tag).rglob("*") if p.is_file()]


def test_lightning_logger(studio_home: Path, examples: Path) -> None:
    record = run(examples, "--metric", "val_loss:min", "lightning_train.py", "--epochs", "3", "--lr", "0.02")
    assert record["status"] == "finished"
    assert record["params"]["lr"] == 0.02 and record["params"]["hidden"] == 8
    metrics = record["metrics"]
    assert metrics["val_loss"]["count"] == 3 and metrics["train_loss"]["count"] >= 3
    assert record["metric_value"] == pytest.approx(metrics["val_loss"]["min"])
    assert any(name.endswith(".ckpt") for name in stored_files(record, "modeldir"))


def test_lightning_in_a_plain_python_process(studio_home: Path, examples: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "lightning_train.py", "--epochs", "2"], cwd=examples, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = studio_json("runs", "list", "all")
    assert (row["project"], row["status"], row["params"]["lr"]) == ("lightning", "finished", 0.05)
    assert ExperimentRepository()[row["key"]].metrics("val_loss")["step"].size == 2


def test_keras_callback_and_metric_flag(studio_home: Path, examples: Path) -> None:
    record = run(examples, "--metric=val_loss:min", "keras_train.py")
    assert record["status"] == "finished"
    assert record["params"]["epochs"] == 4
    assert record["params"]["optimizer.learning_rate"] == pytest.approx(0.01)
    metrics = record["metrics"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(metrics)
    assert metrics["val_loss"]["count"] == 4
    assert record["metric_value"] == pytest.approx(metrics["val_loss"]["min"])
    assert "model.keras" in stored_files(record, "modeldir")


def test_transformers_report_to_studio(studio_home: Path, examples: Path) -> None:
    record = run(examples, "--metric", "eval_loss:min", "hf_train.py")
    assert record["status"] == "finished"
    assert record["params"]["args.learning_rate"] == pytest.approx(5e-3)
    assert record["params"]["model.hidden_size"] == 16
    assert record["params"]["args.hub_token"] in (None, "<HUB_TOKEN>")  # never a token itself
    metrics = record["metrics"]
    assert metrics["eval_loss"]["count"] == 2 and "loss" in metrics
    assert record["metric_value"] == pytest.approx(metrics["eval_loss"]["min"])
    assert "model.safetensors" in stored_files(record, "modeldir")


def test_sklearn_params_and_scores_in_one_call(studio_home: Path, examples: Path) -> None:
    record = run(examples, "--metric", "test/accuracy:max", "sklearn_train.py", "--trees", "30")
    assert record["params"]["n_estimators"] == 30 and record["params"]["estimator"] == "RandomForestClassifier"
    metrics = {k: m["last"] for k, m in record["metrics"].items()}
    assert 0.8 < metrics["test/accuracy"] <= 1.0
    assert {"test/f1_macro", "cv/accuracy_mean", "cv/accuracy_std"} <= set(metrics)
    assert record["metric_value"] == pytest.approx(metrics["test/accuracy"])


def test_rich_results_example(studio_home: Path, examples: Path) -> None:
    record = run(examples, "rich_results.py")
    exp = ExperimentRepository()[record["key"]]
    assert list(exp.images("samples")) == [0, 1, 2, 3, 4]
    assert exp.table("predictions").shape == (5, 3)
    assert list(exp.figures("loss-curve")) == [0]
    assert exp["weights"].shape == (4, 4)
