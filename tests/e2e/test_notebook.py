"""Jupyter for real: a notebook executed by nbclient on an ipykernel, using ``%load_ext studio``,
``%%studio_run`` cells (finished and failed) and a live ``studio.init()`` session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.workbook import ExperimentRepository
from tests.e2e.helpers import studio_json

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

CELLS = [
    "%load_ext studio",
    "%%studio_run --project nb --param lr=0.1 --param opt=adam --metric loss:min\n"
    "import studio\nfor i in range(3):\n    studio.log(i, loss=1 / (i + 1))\nprint('trained')\nx = 42",
    "print('after', x, _studio_key)",
    "%%studio_run --project nb\nraise ValueError('boom')",
    "import json, subprocess, sys, studio\nexp = studio.init(project='live')\nstudio.log(acc=1.0)\n"
    "rows = json.loads(subprocess.run([sys.executable, '-m', 'studio', 'runs', 'list', 'project', 'live', '--json'],"
    " capture_output=True, text=True).stdout)\nprint('LIVE', rows[0]['status'])",
]


def test_notebook_cells_become_experiments(studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.get("output_type") == "stream")

    assert "trained" in text(1) and "recording experiment" in text(1)
    runs = {r["key"]: r for r in studio_json("runs", "list", "all")}
    good_key = text(2).split()[-1]
    assert text(2).startswith("after 42 ")
    good = studio_json("runs", "show", good_key)
    # only the cell's params: never the kernel's command line (its connection file holds the
    # kernel's signing key)
    assert (good["project"], good["status"], good["params"]) == ("nb", "finished", {"lr": 0.1, "opt": "adam"})
    assert "key" not in json.dumps(good["params"]) and "ipykernel" not in good["script"]
    assert good["metric_value"] == pytest.approx(1 / 3)
    exp = ExperimentRepository()[good_key]
    assert "studio.log(i, loss=1 / (i + 1))" in exp["cell.py"]
    assert "trained" in exp["output.txt"]

    assert any(o.get("ename") == "ValueError" for o in nb.cells[3].outputs)
    failed = [r for r in runs.values() if r["project"] == "nb" and r["key"] != good_key]
    assert len(failed) == 1 and failed[0]["status"] == "failed"
    assert "boom" in studio_json("runs", "show", failed[0]["key"])["status_reason"]

    assert "LIVE running" in text(4)  # live while the kernel runs
    (live,) = [r for r in runs.values() if r["project"] == "live"]
    assert live["status"] == "finished"  # ended with the kernel
    assert json.loads(json.dumps(ExperimentRepository()[live["key"]].metrics("acc")["value"].tolist())) == [1.0]


def test_bad_magic_line_says_how(studio_home: Path) -> None:
    from studio.exceptions import UsageError
    from studio.magics import parse_line

    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_line("--param lr")
    with pytest.raises(UsageError, match="unknown options --bogus"):
        parse_line("--bogus 1")
    assert parse_line("-p x --param a=1 --param b=s").params == {"a": 1, "b": "s"}
