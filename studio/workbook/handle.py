"""`wb[tag]`: one experiment as seen from a notebook, its artifacts one ``[]`` away.

Names an experiment answers to (`list_artifacts()`):
- every file of its `workbook` artifact (``options.json``, ``Source.git-patch``, ``log.csv``);
- the tags of its other artifacts holding something (``output``, ``workspace``, ``modeldir``):
  a single-file artifact loads like a file, a folder comes back as a local read-only `Path`;
- ``tag/path/in/it`` for one file inside a folder artifact.
Lookups that miss exactly retry case-insensitively (the seed's ``'source.git-patch'``).

Live or stored: while the experiment runs and its folder exists on this machine, files are
read from there, so re-reading shows the newest rows; otherwise from the latest stored tree
(blobs of a remote store come through the local blob cache). Each access re-reads the
experiment's record, so a remote experiment's newest capture is seen too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.entities import ArtifactSpec
from studio.entities import Experiment as Record
from studio.exceptions import NotFoundError
from studio.workbook import html, loaders
from studio.workbook.tables import FileRef

if TYPE_CHECKING:
    import pandas as pd

    from studio.workbook.repository import ExperimentRepository

WORKBOOK_TAG = "workbook"
NEVER_LIVE = ("workspace",)  # its local path is the user's folder, which moves on


def is_live(record: Record, spec: ArtifactSpec) -> bool:
    """Read `spec` from its local path rather than the store?"""
    if spec.tag in NEVER_LIVE or spec.source or not spec.local_path:
        return False
    if not os.path.exists(spec.local_path):
        return False
    return not record.status.terminal or spec.tree is None


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(files):
            if not name.startswith("."):
                out.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return out


class Experiment:
    """One experiment: ``exp["options.json"]``, ``exp.list_artifacts()``, ``exp.metrics()``."""

    def __init__(self, repo: ExperimentRepository, record: Record) -> None:
        self._repo = repo
        self._record = record

    # -- the record ------------------------------------------------------------------------
    @property
    def tag(self) -> str:
        return self._record.key

    key = tag

    @property
    def record(self) -> Record:
        """The experiment's record as last read (see `refresh`)."""
        return self._record

    def refresh(self) -> Experiment:
        """Read the record again (status, artifact versions)."""
        self._repo._refresh_lost()
        self._record = self._repo.ctx.meta.get_experiment(self.tag)
        return self

    @property
    def status(self) -> str:
        return self.refresh()._record.status.value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._record.params)

    @property
    def project(self) -> str:
        return self._record.project

    def __repr__(self) -> str:
        return f"<Experiment: {self.tag}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)

    # -- artifacts -------------------------------------------------------------------------
    def _files(self, record: Record) -> dict[str, FileRef]:
        """name -> readable file, for the workbook artifact."""
        spec = record.artifacts.get(WORKBOOK_TAG)
        if spec is None:
            return {}
        if is_live(record, spec):
            root = Path(str(spec.local_path))
            return {n: FileRef(n, root / n) for n in _walk(root)}
        if spec.tree is None:
            return {}
        tree = self._repo.tree(spec.tree)
        return {e.path: self._repo.stored_file(e.path, e.hash, e.size) for e in tree.entries}

    def _others(self, record: Record) -> dict[str, ArtifactSpec]:
        """tag -> spec, for the other artifacts that hold something."""
        out = {}
        for tag, spec in sorted(record.artifacts.items()):
            if tag == WORKBOOK_TAG:
                continue
            if is_live(record, spec):
                path = Path(str(spec.local_path))
                if path.is_file() or (path.is_dir() and any(path.iterdir())):
                    out[tag] = spec
            elif spec.tree is not None and spec.files > 0:
                out[tag] = spec
        return out

    def list_artifacts(self) -> list[str]:
        """Workbook files (sorted), then the tags of the other artifacts holding something."""
        record = self.refresh()._record
        files = self._files(record)
        return list(files) + [t for t in self._others(record) if t not in files]

    def path(self, name: str) -> Path:
        """A local, read-only path of the artifact `name` (file or folder)."""
        found = self._resolve(name)
        return found.path if isinstance(found, FileRef) else found

    def __getitem__(self, name: str) -> Any:
        found = self._resolve(name)
        if not isinstance(found, FileRef):
            return found
        loader = loaders.loader_for(found.name)
        if loader is loaders.load_csv:
            return self._repo.tables_frame(found)
        return loader(found.path)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.list_artifacts()

    def _resolve(self, name: str, refresh: bool = True) -> FileRef | Path:
        if not isinstance(name, str):
            raise TypeError(f"artifact names are strings, got {type(name).__name__}")
        record = (self.refresh() if refresh else self)._record
        files = self._files(record)
        others = self._others(record)
        for candidate in (name, *self._case_insensitive(name, files, others)):
            if candidate in files:
                return files[candidate]
            if candidate in others:
                return self._artifact(record, others[candidate], None)
            tag, _, rest = candidate.partition("/")
            if rest and tag in others:
                return self._artifact(record, others[tag], rest)
        available = list(files) + [t for t in others if t not in files]
        raise NotFoundError(
            f"experiment {self.tag} has no artifact {name!r}; it has: {', '.join(available) or 'none yet'}"
        )

    @staticmethod
    def _case_insensitive(name: str, *groups: dict[str, Any]) -> list[str]:
        low = name.lower()
        hits = {n for g in groups for n in g if n.lower() == low and n != name}
        return sorted(hits) if len(hits) == 1 else []

    def _artifact(self, record: Record, spec: ArtifactSpec, inner: str | None) -> FileRef | Path:
        if is_live(record, spec):
            root = Path(str(spec.local_path))
            if root.is_file():
                if inner is None:
                    return FileRef(root.name, root)
            else:
                target = root if inner is None else root / inner
                if inner is None:
                    return target
                if target.is_file():
                    return FileRef(target.name, target)
            raise NotFoundError(
                f"experiment {self.tag}: artifact {spec.tag!r} has no file {inner!r}"
            )
        assert spec.tree is not None
        tree = self._repo.tree(spec.tree)
        if tree.kind == "file" and inner is None:
            e = tree.entries[0]
            return self._repo.stored_file(e.path, e.hash, e.size)
        if inner is None:
            from studio.runner.materialize import cached_tree

            return cached_tree(self._repo.ctx, spec.tree)
        for e in tree.entries:
            if e.path == inner:
                return self._repo.stored_file(e.path, e.hash, e.size)
        names = ", ".join(e.path for e in tree.entries[:20])
        raise NotFoundError(
            f"experiment {self.tag}: artifact {spec.tag!r} has no file {inner!r} (it has: {names})"
        )

    # -- rich results (studio.log_image / log_table / log_figure) ---------------------------
    def _steps(self, kind: str, name: str, suffix: str) -> dict[int, Any]:
        prefix = f"{kind}/{name.strip('/')}/"
        found: dict[int, Any] = {}
        names = [n for n in self.list_artifacts() if n.startswith(prefix) and n.endswith(suffix)]
        for n in names:
            stem = n[len(prefix) :][: -len(suffix)]
            if stem.isdigit():
                found[int(stem)] = self[n]
        if not found:
            raise NotFoundError(
                f"experiment {self.tag} has no {kind} named {name!r}; it has: "
                f"{', '.join(self.media_names(kind)) or 'none'}"
            )
        return dict(sorted(found.items()))

    def media_names(self, kind: str = "media") -> list[str]:
        """Names logged with `log_image` (kind "media"), `log_figure` ("figures") or
        `log_table` ("tables")."""
        out: set[str] = set()
        for n in self.list_artifacts():
            if n.startswith(kind + "/"):
                rest = n[len(kind) + 1 :]
                out.add(rest.rsplit(".", 1)[0] if kind == "tables" else rest.rpartition("/")[0])
        return sorted(out)

    def images(self, name: str) -> dict[int, Any]:
        """step -> PIL image, of the images logged as `name`."""
        return self._steps("media", name, ".png")

    def figures(self, name: str) -> dict[int, Any]:
        """step -> figure: a plotly figure's dict (``plotly.io.from_json`` takes it back) or a
        matplotlib figure's PNG as a PIL image."""
        try:
            return self._steps("figures", name, ".plotly.json")
        except NotFoundError:
            return self._steps("figures", name, ".png")

    def table(self, name: str) -> pd.DataFrame:
        """The table logged as `name` (its latest version)."""
        for suffix in (".parquet", ".csv"):
            if f"tables/{name}{suffix}" in self.list_artifacts():
                return self[f"tables/{name}{suffix}"]
        raise NotFoundError(
            f"experiment {self.tag} has no table {name!r}; it has: "
            f"{', '.join(self.media_names('tables')) or 'none'}"
        )

    # -- metrics ---------------------------------------------------------------------------
    def metrics(self, keys: list[str] | str | None = None, wide: bool = False) -> pd.DataFrame:
        """The experiment's metric series: long (key, step, value, time) or, with `wide`, one
        column per key indexed by step."""
        from studio.tracking import series

        record = self.refresh()._record
        if isinstance(keys, str):
            keys = [keys]
        spec = record.artifacts.get("metrics")
        # Without a stored series, the experiment's own folder: empty unless it ran here.
        directory = self._repo.ctx.settings.experiment_dir(self.tag) / "metrics"
        if spec is not None and is_live(record, spec):
            directory = Path(str(spec.local_path))
        elif spec is not None and spec.tree is not None:
            from studio.runner.materialize import cached_tree

            directory = cached_tree(self._repo.ctx, spec.tree)
        df = series.read_series(directory, keys)
        if keys:
            # unique() first: converting every row's categorical key to str costs ~20 ms/100k
            missing = sorted(set(keys) - {str(k) for k in df["key"].unique()})
            if missing:
                known = [
                    s.key
                    for s in self._repo.ctx.meta.metric_summaries([self.tag]).get(self.tag, [])
                ]
                raise NotFoundError(
                    f"experiment {self.tag} has no metric {', '.join(map(repr, missing))}; "
                    f"it has: {', '.join(known) or 'none'}"
                )
        return series.wide(df) if wide else df

    def _repr_html_(self) -> str:
        summaries = self._repo.ctx.meta.metric_summaries([self.tag]).get(self.tag, [])
        return html.experiment(self.refresh()._record, self.list_artifacts(), summaries)


class ExperimentList(list[Experiment]):
    """Experiments (a list), shown as a table in Jupyter."""

    @property
    def tags(self) -> list[str]:
        return [e.tag for e in self]

    def _repr_html_(self) -> str:
        return html.experiment_table([e.record for e in self])
