"""The seed's hyperparameter commands and fs_tracker calls, as written there."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.e2e.helpers import studio, studio_json


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _params(project: str) -> list[dict[str, object]]:
    rows = studio_json("runs", "list", "project", project)
    return [studio_json("runs", "show", r["key"])["params"] for r in rows]


def test_seed_spelling_and_unused_name_warning(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "train.py", "lr = 0.3\nprint('lr is', lr)\n")
    proc = studio("run", "--project", "seed", "--hp=lr=0.1,0.2", "train.py", cwd=ws, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p["lr"] for p in _params("seed")) == [0.1, 0.2]  # type: ignore[type-var]
    assert "warning" not in proc.stderr

    proc = studio("run", "--project", "unused", "-hp", "foo=1,2", "train.py", cwd=ws, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'foo' never appears" in warnings[0] and "studio.params()" in warnings[0]


def test_optimizer_ranges_of_the_seed_and_integer_bounds(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "train.py", """\
        depth = 3
        lr = 0.5
        print("fitness:", depth * lr)
        """)
    (studio_home / "config.yaml").write_text("optimizer:\n  popsize: 3\n  generations: 1\n  seed: 4\n")
    proc = studio("run", "--project", "ints", "-opt", "random", "-hp", "depth=2:8", "-hp", "lr=0.0:1",
                  "train.py", cwd=ws, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    params = _params("ints")
    assert len(params) == 3
    for p in params:
        assert isinstance(p["depth"], int) and 2 <= p["depth"] <= 8, p
        assert isinstance(p["lr"], float), p
    # The manual's plugin spec `lr=0:5:1` (min:max:len, a scalar) is accepted.
    proc = studio("run", "--project", "manual", "-opt", "random", "--hyperparam=lr=0:5:1", "train.py", cwd=ws, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(0 <= p["lr"] <= 5 for p in _params("manual"))  # type: ignore[operator]


def test_fs_tracker_upstream_calls(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "use.py", """\
        import json, os
        from studio import fs_tracker
        from studio.exceptions import NotFoundError
        out = {"mine": fs_tracker.get_model_directory(), "other": fs_tracker.get_model_directory("old-run"),
               "tb": fs_tracker.get_tensorboard_dir()}
        try:
            fs_tracker.get_artifact("wieghts")
        except NotFoundError as exc:
            out["typo"] = str(exc)
        out["weights"] = fs_tracker.get_artifact("weights")
        print(json.dumps(out))
        """)
    weights = tmp_path / "weights"
    proc = studio("run", "-e", "k1", "-c", f"{weights}:weights", "use.py", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mine"].endswith("modeldir") and os.path.isdir(out["mine"])
    assert out["other"] == str(studio_home / "experiments" / "old-run" / "modeldir")
    assert out["weights"] == str(weights)
    assert out["typo"].startswith("experiment k1 has no artifact 'wieghts'; it has: ")
    assert "weights" in out["typo"] and "--capture PATH:wieghts" in out["typo"]


def test_fs_tracker_outside_a_run(studio_home: Path) -> None:
    from studio import fs_tracker

    assert fs_tracker.get_artifact("anything").endswith("experiments/local/anything")
    assert fs_tracker.get_model_directory("exp1").endswith("experiments/exp1/modeldir")
    assert fs_tracker.get_model_directory().endswith("experiments/local/modeldir")

