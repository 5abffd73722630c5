"""Progress on a terminal: every bar and status line of a process in one rich display.

rich draws one live display per terminal, and studio's long work overlaps (a capture's
threads, the HTTP backend's per-blob transfers, a worker's environment build), so every bar is
a task of one shared `Progress`, started with the first task and stopped with the last. The
display is transient: it disappears when the work is done, leaving the terminal to the
lines that matter.

Nothing is drawn when stderr is not a terminal or after `silence()` (`--quiet`): the context
managers then cost nothing, and callers that should say something anyway (a worker in the
background) print one line when the work is done instead.

Three kinds of task, each with its own columns:

- `bar(label, total)`: bytes (a bar, size done/total, speed; `total=None` while unknown);
- `count(label, total)`: items (a bar, "3/10", elapsed), e.g. a sweep's trials;
- `status(label)`: a spinner and the elapsed time, for work whose length nobody knows
  (pip installing an environment).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

#: Transfers smaller than this are over before a bar is worth drawing.
MIN_BYTES = 1 << 20


class Task:
    """One line of the display. `advance(n)` (or calling it) adds done units; `update(...)`
    sets completed/total/description. Safe from any thread; a no-op when nothing is drawn."""

    def __init__(self, progress: Any = None, task_id: Any = None) -> None:
        self._progress = progress
        self._id = task_id

    def __call__(self, n: int) -> None:
        self.advance(n)

    def advance(self, n: float) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        if self._progress is None:
            return
        fields: dict[str, Any] = {}
        if completed is not None:
            fields["completed"] = completed
        if total is not None:
            fields["total"] = total
        if description is not None:
            fields["description"] = description
        self._progress.update(self._id, **fields)


_IDLE = Task()


class Display:
    """The shared display (see the module docstring). One per process: `DISPLAY`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Any = None
        self._active = 0
        self._silenced = False

    def silence(self) -> None:
        """Draw nothing from now on (`--quiet`)."""
        self._silenced = True

    @property
    def enabled(self) -> bool:
        return not self._silenced and sys.stderr.isatty()

    @contextmanager
    def bar(self, label: str, total: int | None, done: int = 0, min_bytes: int = MIN_BYTES) -> Iterator[Task]:
        """Bytes moved; shown only on a terminal and when `total` (if known) is at least `min_bytes`."""
        if total is not None and total < min_bytes:
            yield _IDLE
            return
        with self._task(label, "bytes", total, done) as task:
            yield task

    @contextmanager
    def count(self, label: str, total: int | None, done: int = 0) -> Iterator[Task]:
        """Items done of `total` (None: not known yet)."""
        with self._task(label, "count", total, done) as task:
            yield task

    @contextmanager
    def status(self, label: str) -> Iterator[Task]:
        """A spinner with `label` and the time elapsed."""
        with self._task(label, "status", None, 0) as task:
            yield task

    @contextmanager
    def _task(self, label: str, kind: str, total: float | None, done: float) -> Iterator[Task]:
        if not self.enabled:
            yield _IDLE
            return
        with self._lock:
            first = self._progress is None
            if first:
                self._progress = _new_progress()
            progress = self._progress
            task_id = progress.add_task(label, total=total, completed=done, kind=kind)
            if first:  # after adding the task: starting draws it at once, even if it ends soon
                progress.start()
            self._active += 1
        try:
            yield Task(progress, task_id)
        finally:
            with self._lock:
                progress.remove_task(task_id)
                self._active -= 1
                if self._active == 0:
                    progress.stop()
                    self._progress = None


def _new_progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class Spinner(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.spinner = SpinnerColumn()

        def render(self, task: Any) -> Any:
            return self.spinner.render(task) if task.fields.get("kind") == "status" else Text("")

    class Bar(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.bar = BarColumn()

        def render(self, task: Any) -> Any:
            return Text("") if task.fields.get("kind") == "status" else self.bar.render(task)

    class Detail(ProgressColumn):
        """Bytes: size, speed, time left. Items: done/total and elapsed. Status: elapsed."""

        def __init__(self) -> None:
            super().__init__()
            self.size, self.speed = DownloadColumn(), TransferSpeedColumn()
            self.left, self.elapsed = TimeRemainingColumn(), TimeElapsedColumn()

        def render(self, task: Any) -> Any:
            kind = task.fields.get("kind")
            if kind == "bytes":
                parts = [self.size.render(task), self.speed.render(task)]
                if task.total is not None:
                    parts.append(self.left.render(task))
            elif kind == "count":
                shown = f"{int(task.completed)}/{int(task.total)}" if task.total is not None else f"{int(task.completed)}"
                parts = [Text(shown), self.elapsed.render(task)]
            else:
                parts = [self.elapsed.render(task)]
            return Text(" ").join(parts)

    return Progress(Spinner(), TextColumn("{task.description}"), Bar(), Detail(),
                    transient=True, console=Console(stderr=True))


#: rich draws one live display per terminal: the process has one (see the module docstring).
DISPLAY = Display()


class TransferLog:
    """What an `ObjectStore` tells about its tree transfers when given one as `observer`
    (`studio worker` does): on a terminal a bar per transfer of at least `min_bytes`, else one
    line through `say` per such transfer ("uploaded KEY/workspace: 3 new files, 2.0 MB in 0.4s").
    `label(path)` names the local side. Smaller transfers (a log checkpointed every minute) pass
    silently."""

    def __init__(self, say: Callable[[str], None], label: Callable[[Path], str] = lambda p: p.name,
                 min_bytes: int = MIN_BYTES, display: Display = DISPLAY) -> None:
        self.say = say
        self.label = label
        self.min_bytes = min_bytes
        self.display = display

    @contextmanager
    def download(self, dest: Path, total: int, files: int) -> Iterator[Callable[[int], None]]:
        """Around writing a tree of `files` files, `total` bytes into `dest`; yields on_file(size)."""
        name = self.label(dest)
        started = time.monotonic()
        with self.display.bar(f"download {name}", total, min_bytes=self.min_bytes) as task:
            yield task.advance
        if total >= self.min_bytes and not self.display.enabled:
            self._line("downloaded", name, files, total, started)

    @contextmanager
    def upload(self, root: Path) -> Iterator[_Upload]:
        """Around storing the tree at `root`; the caller reports what was new with `moved(...)`."""
        up = _Upload(self.display, f"upload {self.label(root)}", self.min_bytes)
        try:
            yield up
        finally:
            up.close()
        if up.moved_bytes >= self.min_bytes and not self.display.enabled:
            self._line("uploaded", self.label(root), up.moved_files, up.moved_bytes, up.started, " new")

    def _line(self, verb: str, name: str, files: int, size: int, started: float, new: str = "") -> None:
        from studio.units import format_size

        self.say(f"{verb} {name}: {files}{new} file(s), {format_size(size)} in {time.monotonic() - started:.1f}s")


class _Upload:
    """A tree upload's bar, drawn once `min_bytes` have been read (the total is not known ahead:
    most checkpoints find little or nothing new)."""

    def __init__(self, display: Display, label: str, min_bytes: int) -> None:
        self.display, self.label, self.min_bytes = display, label, min_bytes
        self.started = time.monotonic()
        self.moved_bytes = self.moved_files = 0
        self._seen = 0
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._task: Task | None = None

    def on_file(self, size: int) -> None:
        with self._lock:  # called from the store's worker threads
            self._seen += size
            if self._task is None and self._seen >= self.min_bytes and self.display.enabled:
                self._task = self._stack.enter_context(self.display.bar(self.label, None, self._seen))
            elif self._task is not None:
                self._task.advance(size)

    def moved(self, size: int, files: int) -> None:
        self.moved_bytes, self.moved_files = size, files

    def close(self) -> None:
        with self._lock:
            self._stack.close()
