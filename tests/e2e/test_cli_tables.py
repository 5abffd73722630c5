"""`studio runs list` / `queue show` for scripts and people: full values when piped, formats,
filters, goal-aware sorting; `runs kill` asks first. Runs the real command in a subprocess (and
in a pseudo-terminal where a terminal matters)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.api.context import Context
from studio.entities import Experiment, Status
from tests.e2e.helpers import on_terminal, studio, studio_json
from tests.fixtures.dashboard import populate


@pytest.fixture
def keys(studio_home: Path, tmp_path: Path) -> dict[str, str]:
    ctx = Context.from_env()
    found = populate(ctx, tmp_path / "data")
    # 60 more finished runs with long keys, 10 of them failed, for paging and grep.
    for i in range(60):
        key = f"a-rather-long-experiment-key-that-a-terminal-would-cut-{i:03d}"
        ctx.meta.create_experiment(Experiment(key=key, project="bulk", owner="bob", script="bulk.py",
                                              params={"i": i}, metric="acc:max", time_added=1000.0 + i))
        ctx.meta.set_status(key, Status.RUNNING, worker="w:1", time_started=1000.0 + i)
        ctx.meta.set_status(key, Status.FAILED if i % 6 == 0 else Status.FINISHED, metric_value=i / 100,
                            returncode=1 if i % 6 == 0 else 0, time_finished=1001.0 + i)
    return found


def tsv(text: str) -> list[dict[str, str]]:
    lines = text.rstrip("\n").split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def test_piped_list_is_tab_separated_with_full_keys(keys: dict[str, str]) -> None:
    proc = studio("runs", "list", "all", check=True)
    rows = tsv(proc.stdout)
    assert len(rows) == 65  # no default limit when piped
    failed = [line for line in proc.stdout.splitlines() if "\tfailed\t" in line]
    assert len(failed) == 11  # `| grep failed` finds them all: 10 bulk + exp-odd
    assert "a-rather-long-experiment-key-that-a-terminal-would-cut-059" in {r["key"] for r in rows}
    best = next(r for r in rows if r["key"] == keys["best"])
    assert best["params.lr"] == "0.001" and best["params.opt"] == "adam" and best["metric_value"] == "0.05"
    assert best["metrics.loss"] != "" and best["metrics.sys/cpu"] == "20.0"
    assert proc.stderr == ""


def test_formats_filter_sort_and_limit(keys: dict[str, str]) -> None:
    rows = studio_json("runs", "list", "all", "--filter", "lr < 0.05 and status = finished")
    assert [r["key"] for r in rows] == [keys["best"]]
    assert rows[0]["params"]["lr"] == 0.001 and "loss" in rows[0]["metrics"]
    out = studio("runs", "list", "all", "--format", "csv", "--filter", "project = vision", "--sort", "key",
                 check=True).stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["key"] for r in table] == sorted([keys["best"], keys["second"], keys["odd"]])
    # A project's runs: best first in its metric's direction (loss:min ascending, acc:max descending).
    vision = studio_json("runs", "list", "project", "vision")
    assert [r["key"] for r in vision] == [keys["best"], keys["second"], keys["odd"]]
    bulk = studio("runs", "list", "project", "bulk", "--limit", "3", check=True).stdout
    assert [r["metric_value"] for r in tsv(bulk)] == ["0.59", "0.58", "0.57"]
    worst = studio_json("runs", "list", "project", "bulk", "--sort", "-best", "--limit", "1")
    assert worst[0]["metric_value"] == 0.0
    by_param = tsv(studio("runs", "list", "all", "--sort", "-params.i", "--limit", "2", check=True).stdout)
    assert [r["params.i"] for r in by_param] == ["59", "58"]


def test_bad_filter_and_sort_say_what_is_wrong(keys: dict[str, str]) -> None:
    proc = studio("runs", "list", "all", "--filter", "lr < ")
    assert proc.returncode == 194 and proc.stdout == ""
    assert "position 6" in proc.stderr and "expected a value" in proc.stderr
    proc = studio("runs", "list", "all", "--sort", "drop table;")
    assert proc.returncode == 194 and "cannot sort by" in proc.stderr
    proc = studio("runs", "list", "all", "--format", "xml")
    assert proc.returncode == 194 and "xml" in proc.stderr


def test_queue_show_keeps_full_keys(studio_home: Path) -> None:
    ctx = Context.from_env()
    long_key = "queued-experiment-with-a-key-much-longer-than-any-column-0001"
    ctx.meta.create_experiment(Experiment(key=long_key, project="p", script="t.py", queue="gpu"))
    rows = tsv(studio("queue", "show", "gpu", check=True).stdout)
    assert rows[0]["key"] == long_key and rows[0]["status"] == "queued"
    shown = json.loads(studio("queue", "show", "gpu", "--format", "json", check=True).stdout)
    assert shown[0]["key"] == long_key


def test_kill_refuses_without_a_terminal_unless_yes(keys: dict[str, str]) -> None:
    proc = studio("runs", "kill", keys["second"])
    assert proc.returncode == 194 and "--yes" in proc.stderr
    assert keys["second"] in {r["key"] for r in studio_json("runs", "list", "all")}
    proc = studio("runs", "kill", keys["second"], "no-such-key", "--yes")
    assert proc.returncode == 195 and "no-such-key" in proc.stderr
    assert keys["second"] in {r["key"] for r in studio_json("runs", "list", "all")}  # nothing half-done
    studio("runs", "kill", "--yes", keys["second"], check=True)
    assert keys["second"] not in {r["key"] for r in studio_json("runs", "list", "all")}


def test_kill_asks_on_a_terminal(keys: dict[str, str]) -> None:
    code, out = on_terminal(["runs", "kill", keys["odd"]], answer="n")
    assert code == 1 and "Delete 1 experiment(s)" in out and keys["odd"] in out
    assert keys["odd"] in {r["key"] for r in studio_json("runs", "list", "all")}
    code, out = on_terminal(["runs", "kill", keys["odd"]], answer="y")
    assert code == 0 and f"{keys['odd']}: deleted" in out
    assert keys["odd"] not in {r["key"] for r in studio_json("runs", "list", "all")}


def test_terminal_table_is_limited_paged_and_keeps_keys(keys: dict[str, str]) -> None:
    code, out = on_terminal(["runs", "list", "all"])
    assert code == 0
    assert "showing 50 of 65" in out and "--limit 0 shows all" in out
    # Keys are never cut, even in a narrow table.
    assert "a-rather-long-experiment-key-that-a-terminal-would-cut-059" in out
    code, out = on_terminal(["runs", "list", "all", "--limit", "0", "--no-pager"])
    assert code == 0 and "showing" not in out and out.count("a-rather-long-experiment-key") == 60


def test_rename_tag_note_and_find_them(keys: dict[str, str]) -> None:
    key = keys["second"]
    assert studio("runs", "rename", key, "sgd baseline", check=True).stdout.strip() == f"{key}: sgd baseline"
    assert "baseline, sgd" in studio("runs", "tag", key, "baseline", "sgd", check=True).stdout
    assert "tags baseline" in studio("runs", "tag", key, "sgd", "--remove", check=True).stdout
    proc = subprocess.run([sys.executable, "-m", "studio", "runs", "note", key, "-"], input="# Why\nplateaus at *0.4*\n",
                          capture_output=True, text=True, timeout=60, check=True)
    assert "note set" in proc.stdout
    rows = studio_json("runs", "list", "all", "--filter", "tags = baseline")
    assert [(r["key"], r["name"], r["tags"]) for r in rows] == [(key, "sgd baseline", ["baseline"])]
    assert [r["key"] for r in studio_json("runs", "list", "all", "--filter", "note ~ plateaus")] == [key]
    assert [r["key"] for r in studio_json("runs", "list", "all", "--filter", "name ~ baseline")] == [key]
    piped = tsv(studio("runs", "list", "all", "--filter", "tag = baseline", check=True).stdout)
    assert piped[0]["name"] == "sgd baseline" and piped[0]["tags"] == "baseline"
    shown = studio_json("runs", "show", key)
    assert shown["note"] == "# Why\nplateaus at *0.4*" and shown["tags"] == ["baseline"]
    assert "plateaus at" in studio("runs", "show", key, check=True).stdout
    # Default names: script and params.
    best = studio_json("runs", "list", "all", "--filter", f"key = {keys['best']}")[0]
    assert best["name"] == "train.py layers=3 lr=0.001 opt=adam"
    proc = studio("runs", "tag", key, "two words")
    assert proc.returncode == 194 and "bad tag" in proc.stderr
    proc = studio("runs", "rename", "nope", "x")
    assert proc.returncode == 195
    assert "(none)" in studio("runs", "tag", key, "baseline", "--remove", check=True).stdout
    assert studio("runs", "rename", key, "", check=True).stdout.strip() == f"{key}: train.py layers=3 lr=0.1 opt=sgd"


def test_run_on_a_terminal_says_how_it_ended_and_warns_of_a_large_workspace(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("import studio\nstudio.log(loss=0.25)\nprint('trained')\n")
    code, out = on_terminal(["run", "-e", "t1", "--metric", "loss:min", "train.py"], cwd=ws)
    assert code == 0, out
    assert "experiment t1 finished in" in out and "loss:min = 0.25" in out and "studio runs show t1" in out
    assert "capturing" not in out  # a small workspace: no notice
    code, out = on_terminal(["run", "-e", "t2", "--quiet", "train.py"], cwd=ws)
    assert code == 0 and "finished in" not in out and "trained" in out
    # Piped: the script's output only (and the key line), no closing line.
    piped = studio("run", "-e", "t3", "train.py", cwd=ws, check=True)
    assert "finished in" not in piped.stderr
    with open(ws / "data.bin", "wb") as f:
        f.truncate(120 * 1024 * 1024)
    code, out = on_terminal(["run", "-e", "t4", "train.py"], cwd=ws)
    assert code == 0
    assert "capturing 120.0 MB" in out.replace("MiB", "MB") or "capturing 120" in out
    assert "largest: data.bin" in out and ".studioml_ignore" in out


def test_artifact_get_reports_progress(keys: dict[str, str], tmp_path: Path) -> None:
    from studio.api.experiments import fetch_artifact

    calls: list[tuple[int, int]] = []
    out = fetch_artifact(Context.from_env(), keys["best"], "workspace", tmp_path / "ws1",
                         progress=lambda done, total: calls.append((done, total)))
    assert (out / "train.py").exists() and (out / "sub" / "notes.txt").exists()
    total = calls[-1][1]
    assert len(calls) == 2 and calls[-1] == (total, total) and total > 0
    # On a terminal: a transient bar on stderr, the path on stdout; piped: the path only.
    code, text = on_terminal(["artifacts", "get", keys["best"], "workspace", str(tmp_path / "ws2")])
    assert code == 0 and str(tmp_path / "ws2") in text and (tmp_path / "ws2" / "train.py").exists()
    piped = studio("artifacts", "get", keys["best"], "workspace", str(tmp_path / "ws3"), check=True)
    assert piped.stdout.strip() == str(tmp_path / "ws3") and piped.stderr == ""
