"""The analysis side on recorded experiments: indexing, every loader, live vs stored reads,
messages for unknown tags/artifacts, meld_csv, runs() filters, metrics() and HTML reprs."""

from __future__ import annotations

import io
import json
import math
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from studio.api.context import Context
from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status
from studio.exceptions import NotFoundError, UsageError
from studio.tracking.metrics import Logger
from studio.workbook import ExperimentRepository, loaders, register_loader
from studio.workbook.timeseries import TimeSeriesLog


@pytest.fixture
def ctx(studio_home: Path) -> Iterator[Context]:
    c = Context.from_env()
    yield c
    c.close()


@pytest.fixture
def wb(ctx: Context) -> Iterator[ExperimentRepository]:
    repo = ExperimentRepository(context=ctx)
    yield repo


def record(
    ctx: Context,
    key: str,
    files: dict[str, bytes],
    *,
    status: Status = Status.FINISHED,
    params: dict[str, object] | None = None,
    added: float | None = None,
    store: bool = True,
    extra: dict[str, ArtifactSpec] | None = None,
) -> Path:
    """An experiment whose workbook folder holds `files` (captured unless `store` is False)."""
    folder = ctx.settings.experiment_dir(key) / "workbook"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    spec = ArtifactSpec(tag="workbook", local_path=str(folder))
    if store:
        put = ctx.objects.put_tree(folder)
        spec = spec.replace(tree=put.tree, size=put.size, files=put.files)
    ctx.meta.create_experiment(
        Experiment(
            key=key,
            status=status,
            params=params or {},
            time_added=added or time.time(),
            artifacts={"workbook": spec, **(extra or {})},
        )
    )
    return folder


def csv_bytes(rows: list[tuple[object, ...]], header: str = "step,loss,Date") -> bytes:
    body = "".join(",".join(map(str, r)) + "\n" for r in rows)
    return (header + "\n" + body).encode()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_every_loader(ctx: Context, wb: ExperimentRepository) -> None:
    table = pa.table({"a": [1, 2], "b": [0.5, 1.5]})
    pq_buf, fe_buf = io.BytesIO(), io.BytesIO()
    pq.write_table(table, pq_buf)
    feather.write_feather(table, fe_buf)
    npz = io.BytesIO()
    np.savez(npz, x=np.arange(3))
    files = {
        "options.json": json.dumps({"opt": {"lr": 0.1}}).encode(),
        "loss.csv": csv_bytes(
            [(0, 0.5, "2026-11-22 10:00:00.000"), (1, "nan", "2026-11-22 10:00:01.500")]
        ),
        "w.tsv": b"k\tv\na\t1\n",
        "weights.npy": npy(np.eye(2)),
        "arrays.npz": npz.getvalue(),
        "obj.pkl": pickle.dumps({"set": {1, 2}}),
        "t.parquet": pq_buf.getvalue(),
        "t.feather": fe_buf.getvalue(),
        "Source.git-patch": b"diff --git a/x b/x\n",
        "blob.bin": b"\xff\xfe\x00",
        "notes": "h\u00e9llo".encode(),
    }
    record(ctx, "e1", files)
    e = wb["e1"]
    assert e.list_artifacts() == sorted(files)
    assert e["options.json"] == {"opt": {"lr": 0.1}}
    df = e["loss.csv"]
    assert df.index.name == "step" and list(df.columns) == ["loss", "Date"]
    assert df["Date"].dtype.kind == "M" and str(df["Date"].iloc[1]) == "2026-11-22 10:00:01.500000"
    assert df["loss"].iloc[0] == 0.5 and math.isnan(df["loss"].iloc[1])
    assert e["w.tsv"].loc["a", "v"] == 1
    assert (e["weights.npy"] == np.eye(2)).all()
    assert e["arrays.npz"]["x"].tolist() == [0, 1, 2]
    assert e["obj.pkl"] == {"set": {1, 2}}
    assert e["t.parquet"]["b"].tolist() == [0.5, 1.5] and e["t.feather"]["a"].tolist() == [1, 2]
    assert (
        e["Source.git-patch"].startswith("diff --git")
        and e["source.git-patch"] == e["Source.git-patch"]
    )
    assert e["blob.bin"] == b"\xff\xfe\x00" and e["notes"] == "h\u00e9llo"
    assert e.path("weights.npy").read_bytes() == files["weights.npy"]


def test_register_loader(ctx: Context, wb: ExperimentRepository) -> None:
    record(ctx, "e1", {"a.yaml": b"x: 1\n", "b.tar.gz": b"zz", "c.json": b"{}"})
    e = wb["e1"]
    assert e["a.yaml"] == "x: 1\n"
    register_loader(".yaml", lambda p: {"parsed": p.read_text().strip()})
    register_loader(".gz", lambda p: "gz")
    register_loader(".TAR.GZ", lambda p: "tar.gz")  # the longest ending wins
    try:
        assert e["a.yaml"] == {"parsed": "x: 1"}
        assert e["b.tar.gz"] == "tar.gz"
        with pytest.raises(TypeError):
            register_loader(".x", "not callable")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            register_loader("", lambda p: p)
    finally:
        for suffix in (".yaml", ".gz", ".tar.gz"):
            register_loader(suffix, None)
    assert ".yaml" not in loaders.registered() and e["a.yaml"] == "x: 1\n"


def test_indexing_and_unknown_names(ctx: Context, wb: ExperimentRepository) -> None:
    now = time.time()
    for i, key in enumerate(
        ["202611221000-AAAAAAAAAA", "202611221001-BBBBBBBBBB", "202611221002-CCCCCCCCCC"]
    ):
        record(ctx, key, {"x.json": b"1"}, added=now + i)
    newest = "202611221002-CCCCCCCCCC"
    assert [e.tag for e in wb[:]] == [newest, "202611221001-BBBBBBBBBB", "202611221000-AAAAAAAAAA"]
    assert wb[0].tag == newest and wb[-1].tag == "202611221000-AAAAAAAAAA" and len(wb) == 3
    assert wb[:2].tags == [newest, "202611221001-BBBBBBBBBB"] and len(wb[1:]) == 2
    assert wb["202611221000-AAAAAAAAAA", newest].tags == ["202611221000-AAAAAAAAAA", newest]
    assert newest in wb and "nope" not in wb and [e.tag for e in wb] == wb[:].tags
    assert repr(wb[:2]) == f"[<Experiment: {newest}>, <Experiment: 202611221001-BBBBBBBBBB>]"
    with pytest.raises(NotFoundError) as err:
        wb["202611221002-CCCCCCCCCX"]
    assert "close matches: 202611221002-CCCCCCCCCC" in str(
        err.value
    ) and "newest: " + newest in str(err.value)
    with pytest.raises(NotFoundError, match="close matches"):
        wb[newest, "202611221000-AAAAAAAAAB"]
    with pytest.raises(NotFoundError, match=r"has no artifact 'y.json'; it has: x.json"):
        wb[newest]["y.json"]
    with pytest.raises(IndexError):
        wb[10]
    with pytest.raises(TypeError):
        wb[1.5]


def test_no_experiments_message(wb: ExperimentRepository) -> None:
    with pytest.raises(NotFoundError, match="no experiments are recorded"):
        wb["anything"]
    assert wb[:] == [] and len(wb) == 0


def test_live_folder_read_while_running(ctx: Context, wb: ExperimentRepository) -> None:
    folder = record(ctx, "run1", {}, status=Status.RUNNING, store=False)
    log = TimeSeriesLog(folder / "log.csv", ["step", "loss"])
    e = wb["run1"]
    assert e.list_artifacts() == ["log.csv"] and len(e["log.csv"]) == 0
    log(0, 0.5)
    log(1, 0.25)
    assert e["log.csv"]["loss"].tolist() == [0.5, 0.25]
    log(2, 0.125)  # re-reading shows the newest rows
    assert e["log.csv"]["loss"].tolist() == [0.5, 0.25, 0.125]
    (folder / ".log.csv.tmp").write_text("private")
    assert e.list_artifacts() == ["log.csv"]


def test_stored_tree_when_finished_and_other_artifacts(
    ctx: Context, wb: ExperimentRepository
) -> None:
    out = ctx.settings.home / "out.log"
    out.write_text("epoch 1\n")
    model = ctx.settings.home / "modeldir"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.npy").write_bytes(npy(np.arange(4)))
    extra = {}
    for tag, path in (("output", out), ("modeldir", model)):
        put = ctx.objects.put_tree(path)
        extra[tag] = ArtifactSpec(
            tag=tag, local_path=str(path), tree=put.tree, size=put.size, files=put.files
        )
    extra["tb"] = ArtifactSpec(tag="tb", local_path=str(ctx.settings.home / "tb"))  # never captured
    folder = record(ctx, "done", {"x.json": b"[1]"}, extra=extra)
    (folder / "x.json").write_text(
        "[2]"
    )  # the local folder moved on: a finished one reads the store
    e = wb["done"]
    assert e.list_artifacts() == ["x.json", "modeldir", "output"]
    assert e["x.json"] == [1]
    assert e["output"] == "epoch 1\n"
    assert e["modeldir/sub/w.npy"].tolist() == [0, 1, 2, 3]
    assert (e["modeldir"] / "sub" / "w.npy").is_file()
    with pytest.raises(NotFoundError, match="has no file 'nope'"):
        e["modeldir/nope"]


def test_meld_csv(ctx: Context, wb: ExperimentRepository) -> None:
    rows = [(i, i / 10, f"2026-11-22 10:00:{i:02d}.000") for i in range(5)]
    record(ctx, "a", {"loss.csv": csv_bytes(rows)})
    record(ctx, "b", {"loss.csv": csv_bytes([(i, 1 + i / 10, d) for i, _, d in rows[2:]])})
    record(ctx, "c", {"acc.csv": csv_bytes([(0, 1.0)], header="epoch,acc")})
    df = wb.meld_csv({"a": "first", "b": "second"}, "loss.csv", "loss")
    assert list(df.columns) == ["first", "second"] and df.index.name == "step"
    assert df["first"].tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert df["second"].tolist()[2:] == [1.2, 1.3, 1.4] and df["second"].isna().sum() == 2
    assert list(wb.meld_csv(["a", "b"], "loss.csv", "loss", how="inner").index) == [2, 3, 4]
    assert list(wb.meld_csv(wb["a", "b"], "loss.csv", "loss").columns) == ["a", "b"]
    assert wb.meld_csv(["a"], "loss.csv", "Date")["a"].dtype.kind == "M"
    with pytest.raises(NotFoundError, match="has no column 'los'; its columns: step, loss, Date"):
        wb.meld_csv(["a"], "loss.csv", "los")
    with pytest.raises(NotFoundError, match="has no artifact 'loss.csv'"):
        wb.meld_csv(["c"], "loss.csv", "loss")
    with pytest.raises(NotFoundError, match="no experiment 'zz'"):
        wb.meld_csv(["a", "zz"], "loss.csv", "loss")
    with pytest.raises(UsageError):
        wb.meld_csv(["a"], "loss.csv", "loss", how="left")


def test_meld_csv_same_index_is_one_editable_block_and_keeps_dtypes(ctx: Context, wb: ExperimentRepository) -> None:
    for key, scale in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        record(ctx, key, {"loss.csv": csv_bytes([(i, scale * i, i * 10) for i in range(50)], "step,loss,n")})
    df = wb.meld_csv(["a", "b", "c"], "loss.csv", "loss")
    assert df.shape == (50, 3) and df["c"].iloc[4] == 12.0
    assert len(df._mgr.blocks) == 1  # one 2-D block, not 3 columns to consolidate
    df.iloc[0, 0] = -1.0  # values are copied from Arrow's read-only buffers: editable
    df.loc[df.index[:2], "b"] = 7.0
    assert df.iloc[0, 0] == -1.0 and df["b"].tolist()[:3] == [7.0, 7.0, 4.0]
    again = wb.meld_csv(["a", "b", "c"], "loss.csv", "loss")  # the edit did not reach a cache
    assert again.iloc[0, 0] == 0.0 and again["b"].tolist()[:3] == [0.0, 2.0, 4.0]
    record(ctx, "ints", {"loss.csv": csv_bytes([(i, i) for i in range(50)], "step,loss")})
    mixed = wb.meld_csv(["a", "ints"], "loss.csv", "loss")
    assert mixed["a"].dtype == np.float64 and mixed["ints"].dtype == np.int64
    mixed.iloc[1, 1] = 99
    assert mixed["ints"].iloc[1] == 99


def test_meld_csv_saves_parsed_copies_after_the_result(ctx: Context, wb: ExperimentRepository) -> None:
    record(ctx, "a", {"loss.csv": csv_bytes([(i, i / 2, "x") for i in range(20)])})
    record(ctx, "b", {"loss.csv": csv_bytes([(i, i / 3, "y") for i in range(20)])})
    tables = ctx.settings.blob_cache / "tables"
    first = wb.meld_csv(["a", "b"], "loss.csv", "loss")
    assert wb.tables._writer is not None
    wb.tables._writer.submit(lambda: None).result(timeout=30)  # the writer is done
    saved = sorted(tables.rglob("*.arrow"))
    assert len(saved) == 2 and not wb.tables._pending
    fresh = ExperimentRepository(context=ctx)  # a new session reads the saved copies
    pd.testing.assert_frame_equal(fresh.meld_csv(["a", "b"], "loss.csv", "loss"), first)
    assert sorted(tables.rglob("*.arrow")) == saved


def test_parsing_on_one_thread_gives_one_chunk_per_column(tmp_path: Path) -> None:
    from studio.workbook.tables import parse

    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes([(i, i / 7, "d") for i in range(200_000)]))  # several MB
    one = parse(path, ["step", "loss"], threads=False)
    assert one.column("loss").num_chunks == 1 and one.num_rows == 200_000
    assert parse(path, ["step", "loss"]).equals(one)


@pytest.fixture
def sweep(ctx: Context) -> list[str]:
    keys = []
    now = time.time()
    for i in range(30):
        key = f"s{i:02d}"
        status = Status.FINISHED if i % 3 else Status.FAILED
        params = {"lr": 10 ** -(1 + i % 4), "opt": "adam" if i % 2 else "sgd", "layers": i % 5}
        ctx.meta.create_experiment(
            Experiment(
                key=key,
                project="sweep" if i < 20 else "other",
                status=status,
                params=params,
                time_added=now + i,
                time_started=now + i,
                time_finished=now + i + 2,
            )
        )
        ctx.meta.put_metric_summaries(key, [
            MetricSummary(key="val_loss", last=1 / (i + 1), min=1 / (i + 2), max=1.0, count=i + 1, last_step=i),
            MetricSummary(key="acc", last=i / 30, min=0, max=i / 30, count=3),
        ])  # fmt: skip
        keys.append(key)
    return keys


def test_runs_columns_and_defaults(wb: ExperimentRepository, sweep: list[str]) -> None:
    df = wb.runs()
    assert list(df.index) == sweep[::-1]  # newest first
    for col in (
        "project",
        "status",
        "time_added",
        "duration",
        "params.lr",
        "params.opt",
        "metrics.val_loss.last",
        "metrics.val_loss.min",
        "metrics.acc.count",
    ):
        assert col in df.columns
    assert df["params.lr"].dtype == np.float64 and df["metrics.acc.count"].dtype == "Int64"
    assert df.loc["s05", "metrics.val_loss.last"] == pytest.approx(1 / 6)
    assert df.loc["s05", "duration"] == pytest.approx(2.0)
    assert str(df["time_added"].dt.tz) == "UTC"


def test_runs_filters(wb: ExperimentRepository, sweep: list[str]) -> None:
    top = wb.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=3)
    assert list(top.index) == ["s27", "s26", "s23"] and (top["params.lr"] < 0.01).all()
    same = wb.runs(where={"lr": ("<", 0.01)}, order_by="metrics.val_loss", limit=3)
    assert list(same.index) == list(top.index)
    triples = wb.runs(where=[("params.lr", "<", 0.01)], order_by="metrics.val_loss", limit=3)
    assert list(triples.index) == list(top.index)
    assert set(wb.runs(where={"opt": "adam", "status": "failed"}).index) == {
        f"s{i:02d}" for i in (3, 9, 15, 21, 27)
    }
    assert set(wb.runs(project="other", status="failed").index) == {"s21", "s24", "s27"}
    assert len(wb.runs(where="status = failed and status = finished")) == 0
    assert len(wb.runs(where={"metrics.acc": (">=", 0.9)})) == 3
    assert wb.runs(where="project = nothing").empty
    with pytest.raises(UsageError, match="unknown status"):
        wb.runs(status="done")


def test_metrics_live_and_stored(ctx: Context, wb: ExperimentRepository) -> None:
    mdir = ctx.settings.experiment_dir("m1") / "metrics"
    with Logger(mdir, flush_interval=3600) as lg:
        for i in range(5):
            lg.log(i, loss=1 / (i + 1), acc=i / 5)
    spec = ArtifactSpec(tag="metrics", local_path=str(mdir))
    ctx.meta.create_experiment(
        Experiment(key="m1", status=Status.RUNNING, artifacts={"metrics": spec})
    )
    e = wb["m1"]
    long = e.metrics()
    assert set(long.columns) >= {"key", "step", "value", "time"} and len(long) == 10
    wide = e.metrics(wide=True)
    assert list(wide.columns) == ["acc", "loss"] and wide.loc[4, "loss"] == pytest.approx(0.2)
    assert e.metrics("loss")["value"].tolist()[0] == 1.0
    with pytest.raises(NotFoundError, match="no metric 'los'"):
        e.metrics(["los"])
    put = ctx.objects.put_tree(mdir)
    ctx.meta.put_artifact("m1", spec.replace(tree=put.tree, files=put.files, size=put.size))
    ctx.meta.set_status("m1", Status.FINISHED)
    for seg in mdir.iterdir():
        seg.unlink()
    assert len(e.metrics(wide=True)) == 5  # from the stored tree
    assert wb["m1"].metrics().empty is False
    ctx.meta.create_experiment(Experiment(key="m2", status=Status.FINISHED))
    assert wb["m2"].metrics().empty


def test_html_reprs(ctx: Context, wb: ExperimentRepository, sweep: list[str]) -> None:
    record(ctx, "h<1>", {"x.json": b"1"}, params={"lr": "<b>"})
    page = wb._repr_html_()
    assert "<table>" in page and "31 experiments" in page and "h&lt;1&gt;" in page
    one = wb["h<1>"]._repr_html_()
    assert "&lt;b&gt;" in one and "x.json" in one and "<b>" not in one
    assert "<td>s00</td>" in wb[:]._repr_html_()
    assert pd.DataFrame(wb.runs(limit=2))._repr_html_()  # result sets are DataFrames
