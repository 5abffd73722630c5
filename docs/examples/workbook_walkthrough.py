"""Generate the walkthrough of docs/workbook.md with real outputs.

    python docs/examples/workbook_walkthrough.py            # rewrites docs/workbook.md in place

It trains a small numpy model a few times in a throw-away STUDIOML_HOME and git repository
(plain `python train.py`, one run under `studio run`, one watched while it runs), then runs
each analysis cell below, capturing what it prints, and replaces the part of docs/workbook.md
between the walkthrough markers with the cells and their outputs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "workbook.md"
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"

TRAIN = '''\
"""Fit y = 3x - 1 by mini-batch SGD in numpy, recording everything in the workbook."""
import argparse
import time

import numpy as np

from studio import workbook

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--pause", type=float, default=0.0)  # slow it down to watch it live
args = parser.parse_args()

exp = workbook.new_experiment(project="linreg", params={"lr": args.lr, "epochs": args.epochs},
                              metric="val_loss:min")
exp.save_json("options", vars(args))
exp.save_git_status()  # Source.git-current-commit, Source.git-patch

rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, 1200)
y = 3 * x - 1 + rng.normal(0, 0.1, x.size)
x_train, y_train, x_val, y_val = x[:1000], y[:1000], x[1000:], y[1000:]

w, b, step = 0.0, 0.0, 0
train_log = exp.time_series_log("Training loss", ["step", "loss"], save_every=50)
val_log = exp.time_series_log("Validation", ["epoch", "val_loss", "w", "b"])
for epoch in range(args.epochs):
    for i in range(0, 1000, 50):
        xb, yb = x_train[i:i + 50], y_train[i:i + 50]
        err = w * xb + b - yb
        train_log(step=step, loss=float(np.mean(err ** 2)))
        w -= args.lr * 2 * np.mean(err * xb)
        b -= args.lr * 2 * np.mean(err)
        step += 1
        time.sleep(args.pause)
    val_log(epoch=epoch, val_loss=float(np.mean((w * x_val + b - y_val) ** 2)), w=w, b=b)

exp.save_numpy("weights", np.array([w, b]))
print(f"lr={args.lr}: w={w:.3f} b={b:.3f}")
'''

CELLS: list[tuple[str, str]] = [
    (
        "Every experiment, newest first (`wb[:]` is a list of experiment handles):",
        """
from studio import workbook
wb = workbook.ExperimentRepository()
print(wb[:])
""",
    ),
    (
        "One experiment by its tag, and what it holds: the files the script saved, then its other "
        "artifacts (`metrics`, `workspace`, ...):",
        """
exp = wb[tags["lr=0.1"]]
print(exp.list_artifacts())
""",
    ),
    (
        "JSON comes back as Python objects, `.npy` as numpy arrays, text as `str`:",
        """
print(exp["options.json"])
print(exp["weights.npy"])
print(exp["Source.git-current-commit"])
""",
    ),
    (
        "The patch holds every uncommitted change, including files git does not track yet "
        "(upstream's `git diff HEAD` missed those). Names are matched case-insensitively as a "
        "fallback, as in the seed's `'source.git-patch'`:",
        """
print(exp["source.git-patch"])
""",
    ),
    (
        "A CSV time series is a DataFrame indexed by its first column, with `Date` (UTC) parsed:",
        """
train = exp["Training loss.csv"]
print(train)
print(train.dtypes)
""",
    ),
    ("It is pandas from here on:", "print(train.loss.describe())"),
    (
        "The same column of several experiments side by side, aligned on the index "
        "(`meld_csv`; labels are yours):",
        """
val = wb.meld_csv({tags[k]: k for k in ["lr=0.01", "lr=0.1", "lr=0.5"]}, "Validation.csv", "val_loss")
print(val.tail())
""",
    ),
    (
        "Experiments as one table, with params, status, times and metric summaries (numbers in the "
        "time series go to the experiment's metric series too), filtered and sorted by the database:",
        """
runs = wb.runs(project="linreg", order_by="metrics.val_loss")
print(runs[["params.lr", "status", "metric_value", "metrics.val_loss.last", "metrics.loss.count"]])
""",
    ),
    (
        "Filters take the CLI's expressions (bare names are params), a dict, or (field, op, value) "
        "triples:",
        """
best = wb.runs(where="lr < 0.3 and status = finished", order_by="metrics.val_loss", limit=2)
print(best[["params.lr", "metrics.val_loss.min"]])
print(wb.runs(where={"lr": (">=", 0.1)}).index.tolist())
""",
    ),
    (
        "The metric series itself, long or wide:",
        """
print(exp.metrics(["val_loss", "w"], wide=True).tail(3))
""",
    ),
    (
        "A run under `studio run` attaches to the experiment `studio run` created (its tag is the "
        "one `studio run` printed), so its workbook files sit next to `output` and the rest:",
        """
print(wb[tags["studio run"]].list_artifacts())
print(wb[tags["studio run"]]["output"].splitlines()[0])
""",
    ),
    (
        "Live monitoring: while a slow run is still going, reading the CSV again shows the rows "
        "appended since (on this machine the live folder is read; elsewhere the latest capture):",
        """
live = wb[tags["live"]]
first = len(live["Training loss.csv"])
time.sleep(1.5)
second = len(live["Training loss.csv"])
print(live.status, first, "->", second, "rows")
""",
    ),
    (
        "Mistakes get messages that say what exists:",
        """
for attempt in (lambda: wb[tags["lr=0.1"][:-1] + "X"], lambda: exp["Validation loss.csv"]):
    try:
        attempt()
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
""",
    ),
    (
        "Loaders are chosen by the name's ending; add your own:",
        """
workbook.register_loader(".git-current-commit", lambda path: path.read_text().split()[1])
print(exp["Source.git-current-commit"])
""",
    ),
]


def run(cmd: list[str], cwd: Path, **kw: Any) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True, **kw)
    return proc.stdout


def tag_from(output: str) -> str:
    m = re.search(r"experiment (\S+) \(project", output)
    assert m, output
    return m.group(1)


def main() -> None:
    import pandas as pd

    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 8)
    tmp = Path(tempfile.mkdtemp(prefix="studio-walkthrough-"))
    home, work = tmp / "studiohome", tmp / "linreg"
    work.mkdir(parents=True)
    os.environ.update(STUDIOML_HOME=str(home), PYTHONPATH=str(REPO))
    for var in (
        "STUDIOML_DATABASE_URL",
        "STUDIOML_STORAGE_URL",
        "STUDIOML_EXPERIMENT",
        "STUDIOML_CONFIG",
    ):
        os.environ.pop(var, None)
    (work / "train.py").write_text(TRAIN)
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com"]
    run([*git, "init", "-q"], work)
    run([*git, "add", "train.py"], work)
    run([*git, "commit", "-q", "-m", "SGD for a line"], work)
    # Uncommitted work, as on any real day: a tweak and a new file.
    (work / "train.py").write_text(
        TRAIN.replace(
            "rng = np.random.default_rng(0)", "rng = np.random.default_rng(0)  # fixed data"
        )
    )
    (work / "notes.md").write_text("try larger learning rates\n")

    tags: dict[str, str] = {}
    transcript = []
    for lr in ("0.01", "0.1", "0.5"):
        out = run([sys.executable, "train.py", "--lr", lr], work)
        tags[f"lr={lr}"] = tag_from(out)
        transcript.append(f"$ python train.py --lr {lr}\n{out}")
    out = run(
        [
            sys.executable,
            "-m",
            "studio",
            "run",
            "--metric",
            "val_loss:min",
            "train.py",
            "--lr",
            "0.2",
        ],
        work,
    )
    tags["studio run"] = tag_from(out)
    transcript.append(f"$ studio run --metric val_loss:min train.py --lr 0.2\n{out}")
    live = subprocess.Popen([sys.executable, "train.py", "--lr", "0.05", "--epochs", "100", "--pause", "0.01"], cwd=work,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert live.stdout is not None
    tags["live"] = tag_from(live.stdout.readline())
    time.sleep(1.0)

    parts = [
        "The training script, `train.py` (in a git repository, with an uncommitted tweak and an "
        "untracked `notes.md`):",
        "```python\n" + TRAIN.rstrip() + "\n```",
        "Three plain runs and one under `studio run` (each prints its tag first); a fifth, slower "
        "one (`--lr 0.05 --epochs 100 --pause 0.01`) is started in the background to watch live:",
        "```\n" + "\n".join(t.rstrip() for t in transcript) + "\n```",
        "Then, in a notebook:",
    ]
    namespace: dict[str, Any] = {"tags": tags, "time": time}
    for prose, code in CELLS:
        code = textwrap.dedent(code).strip()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "<cell>", "exec"), namespace)  # noqa: S102 - our own cells
        parts += [
            prose,
            "```python\n" + code + "\n```",
            "```\n" + buf.getvalue().rstrip() + "\n```",
        ]
    live.communicate(timeout=300)
    namespace["wb"].close()
    shutil.rmtree(tmp, ignore_errors=True)

    body = "\n\n".join(parts)
    body = body.replace(str(tmp), "/tmp/walkthrough")
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    stamp = f"<!-- generated by docs/examples/workbook_walkthrough.py on {time.strftime('%Y-%m-%d')} -->"
    DOC.write_text(f"{head}{START}\n{stamp}\n\n{body}\n\n{END}{tail}")
    print(f"wrote {DOC} ({len(body.splitlines())} lines of walkthrough)")


if __name__ == "__main__":
    main()
