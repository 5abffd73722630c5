"""`wb = ExperimentRepository()`: every recorded experiment, one ``[]`` away, in pandas.

    wb[:]                       all experiments, newest first (an ExperimentList)
    wb[:10], wb[0]              the newest ten, the newest
    wb[tag]                     one experiment (see `studio.workbook.handle`)
    wb[tag1, tag2]              several, in that order (one query)
    wb.runs(where=..., order_by=..., limit=...)      a DataFrame (see `studio.workbook.runs`)
    wb.meld_csv({tag: label}, "Training loss.csv", "loss")

It reads the configured stores (``config``: a config file, else ``$STUDIOML_HOME/config.yaml``
and ``STUDIOML_*``), like the CLI. Experiments whose process died without a word are marked
`lost` as soon as their lease lapses (checked at most every few seconds).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from studio.api.context import Context, shared_context
from studio.entities import ExperimentQuery, Status
from studio.exceptions import NotFoundError, StudioError, UsageError
from studio.workbook import html
from studio.workbook.handle import Experiment, ExperimentList
from studio.workbook.tables import FileRef, TableReader, frame, header_names

if TYPE_CHECKING:
    import pandas as pd

    from studio.objects import Tree
    from studio.workbook.runs import Where

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
TREE_CACHE = 4096


class ExperimentRepository:
    def __init__(
        self, config: str | os.PathLike[str] | None = None, *, context: Context | None = None
    ) -> None:
        self._owns_context = context is not None  # else the process's (see `shared_context`)
        if context is None:
            context = shared_context(
                str(config) if config else os.environ.get("STUDIOML_CONFIG") or None
            )
        self.ctx = context
        self.tables = TableReader(context.settings.blob_cache)
        self._trees: dict[str, Tree] = {}
        self._last_refresh = 0.0

    # -- plumbing --------------------------------------------------------------------------
    def _refresh_lost(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_refresh >= REFRESH_SECONDS:
            self._last_refresh = now
            try:
                from studio.runner.salvage import retire_lapsed

                retire_lapsed(self.ctx)
            except StudioError as exc:  # a read-only store: statuses are only read
                log.debug("could not mark lapsed experiments lost: %s", exc)

    def tree(self, tree_hash: str) -> Tree:
        """A stored tree (manifests are immutable, so they are kept in memory)."""
        found = self._trees.get(tree_hash)
        if found is None:
            found = self.ctx.objects.get_tree(tree_hash)
            if len(self._trees) >= TREE_CACHE:
                self._trees.clear()
            self._trees[tree_hash] = found
        return found

    def stored_file(self, path: str, blob: str, size: int) -> FileRef:
        """A stored file, readable under its own name (loaders may look at the name): a
        symlink `<blob cache>/named/<hash>/<name>` to the blob's local copy."""
        name = path.rpartition("/")[2]
        link = self.ctx.settings.blob_cache / "named" / blob[:2] / blob / name
        if not os.path.exists(link):  # absent, or its cached copy was pruned: (re)link
            target = self.ctx.objects.blob_path(blob, size)
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{name}.{os.getpid()}.tmp")
            try:
                os.symlink(target, tmp)
                os.replace(tmp, link)
            except OSError:  # no symlinks here: read the blob under its hash
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                return FileRef(name, target, blob, size)
        return FileRef(name, link, blob, size)

    def tables_frame(self, ref: FileRef) -> pd.DataFrame:
        return frame(self.tables.read(ref))

    def close(self) -> None:
        """Nothing to release: the stores are the process's, shared with the other
        repositories and `new_experiment()` calls on the same settings (and closed at exit)."""
        if self._owns_context:
            self.ctx.close()

    def __enter__(self) -> ExperimentRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- finding experiments ---------------------------------------------------------------
    def experiments(
        self,
        project: str | None = None,
        status: str | Status | None = None,
        limit: int | None = None,
    ) -> ExperimentList:
        """Experiments, newest first (optionally of one project / status)."""
        self._refresh_lost()
        statuses = (Status(status),) if status is not None else ()
        page = self.ctx.meta.query(ExperimentQuery(project=project, status=statuses, limit=limit))
        return ExperimentList(Experiment(self, r) for r in page.items)

    def get(self, tag: str) -> Experiment:
        self._refresh_lost()
        try:
            return Experiment(self, self.ctx.meta.get_experiment(tag))
        except NotFoundError:
            raise self._unknown(tag) from None

    def get_many(self, tags: Sequence[str]) -> ExperimentList:
        self._refresh_lost()
        tags = [str(t) for t in tags]
        records = self.ctx.meta.get_experiments(tags)
        found = {r.key for r in records}
        for t in tags:
            if t not in found:
                raise self._unknown(t)
        by_key = {r.key: r for r in records}
        return ExperimentList(Experiment(self, by_key[t]) for t in tags)

    def _unknown(self, tag: str) -> NotFoundError:
        keys = [e.key for e in self.ctx.meta.query(ExperimentQuery()).items]
        where = self.ctx.settings.database_url.split("@")[-1]
        if not keys:
            return NotFoundError(
                f"no experiment {tag!r}: no experiments are recorded in {where} yet"
            )
        close = difflib.get_close_matches(str(tag), keys, n=3, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}; " if close else ""
        return NotFoundError(
            f"no experiment {tag!r} in {where}; {hint}newest: {', '.join(keys[:3])}"
        )

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.get(key)
        if isinstance(key, slice):
            if (
                key.start is None
                and key.step is None
                and isinstance(key.stop, int)
                and key.stop >= 0
            ):
                return self.experiments(limit=key.stop)
            return ExperimentList(self.experiments()[key])
        if isinstance(key, int):
            items = self.experiments(limit=key + 1) if key >= 0 else self.experiments()
            try:
                return items[key]
            except IndexError:
                raise IndexError(
                    f"experiment index {key} out of range ({len(items)} experiments)"
                ) from None
        if isinstance(key, tuple | list):
            return self.get_many(key)
        raise TypeError(
            f"index experiments by tag, tags, position or slice, not {type(key).__name__}"
        )

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and bool(self.ctx.meta.get_experiments([tag]))

    def __iter__(self) -> Iterator[Experiment]:
        return iter(self.experiments())

    def __len__(self) -> int:
        return self.ctx.meta.query(ExperimentQuery(limit=0)).total

    def __repr__(self) -> str:
        return f"<ExperimentRepository {self.ctx.settings.database_url.split('@')[-1]}>"

    def _repr_html_(self) -> str:
        newest = self.experiments(limit=html.MAX_ROWS)
        return html.experiment_table(
            [e.record for e in newest], f"{len(self)} experiments, newest first"
        )

    # -- tables ----------------------------------------------------------------------------
    def runs(
        self,
        project: str | None = None,
        where: Where = None,
        order_by: str | None = None,
        limit: int | None = None,
        status: str | Status | Sequence[str | Status] | None = None,
    ) -> pd.DataFrame:
        """Experiments as a DataFrame with params, status, times and metric summaries; see
        `studio.workbook.runs` for the columns and the forms of `where`."""
        from studio.workbook.runs import build_query, runs_frame

        self._refresh_lost()
        return runs_frame(self.ctx.meta, build_query(project, where, order_by, limit, status))

    def meld_csv(
        self,
        experiments: Mapping[str, str] | Sequence[str] | ExperimentList,
        artifact: str,
        column: str,
        *,
        how: str = "outer",
    ) -> pd.DataFrame:
        """One `column` of the CSV `artifact` of each experiment, side by side: one column per
        experiment (named by its label, or its tag), aligned on the CSV's first column
        (`how="outer"`: every index value of any experiment, NaN where one has no row;
        `"inner"`: only those all share). A repeated index value keeps its last row."""
        from studio.workbook.meld import Melder

        if how not in ("outer", "inner"):
            raise UsageError(f"how must be 'outer' or 'inner', not {how!r}")
        if isinstance(experiments, Mapping):
            pairs = [(str(t), str(label)) for t, label in experiments.items()]
        else:
            tags = [e.tag if isinstance(e, Experiment) else str(e) for e in experiments]
            pairs = [(t, t) for t in tags]
        handles = self.get_many([t for t, _ in pairs])

        def read(ref: FileRef, first: str) -> tuple[Any, Any]:
            table = self.tables.read(
                ref, [first] if column == first else [first, column], threads=False, defer_cache=True
            )
            return table.column(first), table.column(column)

        # One file per thread (pyarrow parses without the GIL): cheaper than threads inside
        # each file, and the cores stay busy while one thread waits for a download. Each file
        # is handed out as soon as it is resolved, and its column goes into the frame as soon
        # as it is parsed, so this thread's work overlaps the parsing.
        workers = max(1, min(len(pairs), 2 * (os.cpu_count() or 1), 8))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="studio-meld")
        try:
            futures = []
            index_name = None
            for (tag, label), handle in zip(pairs, handles, strict=True):
                ref = handle._resolve(artifact, refresh=False)  # fresh from get_many
                if not isinstance(ref, FileRef):
                    raise UsageError(f"experiment {tag}: {artifact!r} is a folder, not a CSV file")
                with open(ref.path, "rb") as f:
                    names = header_names(f.readline())
                if column not in names:
                    raise NotFoundError(
                        f"experiment {tag}: {artifact!r} has no column {column!r}; its columns: {', '.join(names)}"
                    )
                index_name = names[0] if index_name is None else index_name
                futures.append((label, pool.submit(read, ref, names[0])))
            melder = Melder(len(futures), index_name, how)
            for label, future in futures:
                melder.add(label, *future.result())
            return melder.frame()
        finally:  # the parsed copies are saved once the result is ready, not before
            pool.shutdown(wait=True, cancel_futures=True)
            self.tables.write_deferred()
