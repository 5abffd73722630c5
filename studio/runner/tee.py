"""Copy a child's stdout/stderr to the terminal, to the `output` file and to the metadata store.

The terminal sees output live (byte for byte, as the script wrote it); the file is the
`output` artifact; chunks go to the metadata store about twice a second so `studio runs show`
and the dashboard can tail a run on any machine. Lines like `name: value` are handed to
`on_text` for metric parsing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, BinaryIO

log = logging.getLogger(__name__)

ChunkSink = Callable[[int, str], None]


class OutputTee:
    def __init__(
        self,
        output_file: BinaryIO,
        sink: ChunkSink | None = None,
        flush_interval: float = 0.5,
        echo: bool = True,
    ) -> None:
        self._file = output_file
        self._sink = sink
        self._flush_interval = flush_interval
        self._echo = echo
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._seq = 0
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="studio-output-flush", daemon=True)
        self.listeners: list[Callable[[str], None]] = []
        self.error: OSError | None = None  # the first failure to write the output file

    def start(self, streams: list[tuple[IO[bytes], BinaryIO | None]]) -> None:
        """streams: (pipe from the child, terminal stream to echo to or None)."""
        for pipe, terminal in streams:
            t = threading.Thread(target=self._pump, args=(pipe, terminal), name="studio-tee", daemon=True)
            t.start()
            self._threads.append(t)
        self._flusher.start()

    def _pump(self, pipe: IO[bytes], terminal: BinaryIO | None) -> None:
        fd = pipe.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            if self._echo and terminal is not None:
                try:
                    terminal.write(data)
                    terminal.flush()
                except (OSError, ValueError):
                    pass
            with self._lock:
                self._write(data)
                self._pending.append(data)
        pipe.close()

    def _write(self, data: bytes) -> None:
        """A full disk must not stop the pipes being drained (the script would block on its
        next print): the file stops growing, the error is kept for the run's outcome, and
        the metadata store still receives every chunk."""
        if self.error is not None:
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self.error = exc
            log.error("could not write the output file: %s", exc)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            data = b"".join(self._pending)
            self._pending.clear()
            try:
                if self.error is None:
                    self._file.flush()
            except ValueError:
                return
            except OSError as exc:
                self.error = exc
                log.error("could not write the output file: %s", exc)
        if not data:
            return
        text = data.decode("utf-8", errors="replace")
        for listener in self.listeners:
            try:
                listener(text)
            except Exception:  # a listener must never break output capture
                log.exception("output listener failed")
        if self._sink is not None:
            seq = self._seq
            self._seq += 1
            for attempt in range(5):
                try:
                    self._sink(seq, text)
                    break
                except Exception:
                    log.warning("could not store output chunk %d (try %d)", seq, attempt + 1, exc_info=True)
                    time.sleep(0.2 * (attempt + 1))

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child's pipes to close, then flush everything."""
        for t in self._threads:
            t.join(timeout)
        self._stop.set()
        self._flusher.join(timeout=5)
        self.flush()
