"""Re-running a named experiment: NAME, NAME.2, NAME.3, ...; a reference NAME is the newest
finished run of that name, NAME.N one run exactly (`studio.api.names`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.api import names
from tests.e2e.helpers import popen_studio, studio, studio_json
from tests.e2e.test_run import EXAMPLES, all_keys, write


def test_readme_first_command_runs_twice_and_loses_nothing(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "general"
    shutil.copytree(EXAMPLES, work)
    for _ in range(2):
        for args in (
            ["--capture=~/.weights:weights", "--experiment", "linear_regression", "train_linreg.py"],
            ["--reuse=linear_regression/weights:w", "print_norm_linreg.py"],
        ):
            proc = studio("run", *args, cwd=work)
            assert proc.returncode == 0, proc.stderr
    first = studio_json("runs", "show", "linear_regression.1")
    second = studio_json("runs", "show", "linear_regression.2")
    assert first["key"] == "linear_regression" and second["key"] == "linear_regression.2"
    assert first["status"] == second["status"] == "finished"
    assert first["artifacts"]["weights"]["tree"] and second["artifacts"]["weights"]["tree"]
    assert studio_json("runs", "show", "linear_regression")["key"] == "linear_regression.2"
    readers = [r["key"] for r in studio_json("runs", "list", "all") if not r["key"].startswith("linear")]
    sources = sorted(studio_json("runs", "show", k)["artifacts"]["w"]["source"] for k in readers)
    assert sources == ["linear_regression.2/weights", "linear_regression/weights"]


def test_a_name_means_its_newest_finished_run(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "fit.py", "import os, sys\nos.makedirs('out', exist_ok=True)\nopen('out/v', 'w').write(sys.argv[1])\nsys.exit(int(sys.argv[2]))\n")
    for version, code, key in (("one", 0, "fit"), ("two", 0, "fit.2"), ("three", 3, "fit.3")):
        proc = studio("run", "-e", "fit", "-c", "out:out", "fit.py", version, str(code), cwd=ws)
        assert proc.returncode == code, proc.stderr
        assert f"studio: experiment {key} (" in proc.stderr  # the key it got is printed
        assert (key == "fit") != (f"fit exists, so this run is {key}" in proc.stderr)
    assert sorted(all_keys()) == ["fit", "fit.2", "fit.3"]
    assert studio_json("runs", "show", "fit")["key"] == "fit.2"  # fit.3 failed
    assert studio_json("runs", "show", "fit.3")["status"] == "failed"
    dest = tmp_path / "got"
    studio("artifacts", "get", "fit", "out", str(dest), check=True)
    assert (dest / "v").read_text() == "two"
    studio("artifacts", "get", "fit.1", "out", str(tmp_path / "first"), check=True)
    assert (tmp_path / "first" / "v").read_text() == "one"
    write(ws / "read.py", "from studio import fs_tracker\nprint(open(fs_tracker.get_artifact('o') + '/v').read())\n")
    proc = studio("run", "-r", "fit/out:o", "read.py", cwd=ws)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "two", proc.stderr
    proc = studio("run", "-r", "fit.1/out:o", "read.py", cwd=ws)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "one", proc.stderr
    proc = studio("run", "-r", "fit.9/out:o", "read.py", cwd=ws)
    assert proc.returncode != 0 and "no experiment 'fit.9'" in proc.stderr


def test_numbers() -> None:
    assert names.split("a.3") == ("a", 3) and names.split("a") == ("a", 1)
    assert names.split("a.1") == ("a.1", 1) and names.split("v1.0") == ("v1.0", 1)
    assert names.numbered("a", 1) == "a" and names.numbered("a", 4) == "a.4"


def test_runs_of_one_name_started_together_all_get_a_key(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    procs = [popen_studio("run", "-e", "same", "ok.py", cwd=ws) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(all_keys()) == ["same", "same.2", "same.3"]
