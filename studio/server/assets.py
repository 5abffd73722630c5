"""The dashboard's static files and plotly.js, compressed once and served from memory.

A browser that accepts brotli (`Accept-Encoding: br`, every current one over HTTPS and on
localhost) gets the file brotli-compressed, one that accepts gzip gets gzip, anything else the
file as it is. Each representation is made once per file content and kept in memory; brotli at
its best quality (11: plotly.js 4.8 MB -> 1.1 MB, against gzip's 1.4 MB) takes half a minute on
a busy machine, so the first request gets a quick quality-5 copy while the best one is built in
a background thread at idle priority and stored under `<STUDIOML_HOME>/cache/assets` (named by the content's
hash): later servers on this machine start with it.

Caching headers: `ETag` is weak (`W/"<content hash>-<encoding>"`: the quick and the best brotli
copies decode to the same bytes), `Vary: Accept-Encoding`, a matching `If-None-Match` gets 304.
Dynamic responses (pages, JSON) are compressed on the way by `studio.server.app.Compression`.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import mimetypes
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

log = logging.getLogger(__name__)

QUICK_QUALITY = 5
BEST_QUALITY = 11
GZIP_LEVEL = 9
#: Compressed only if they shrink: text, scripts, JSON, SVG.
_TEXTUAL = ("text/", "application/javascript", "application/json", "image/svg+xml")


def accepted(header: str) -> set[str]:
    """Codings an `Accept-Encoding` header allows (`q=0` refuses one)."""
    out: set[str] = set()
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        if name.strip():
            out.add(name.strip().lower())
    return out


def media_type(path: Path) -> str:
    if path.suffix == ".js":
        return "text/javascript"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@dataclass
class _Entry:
    digest: str
    identity: bytes
    encoded: dict[str, bytes] = field(default_factory=dict)
    building: bool = False


class Assets:
    """Files by path, each with its representations (see the module docstring). Thread-safe."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int, int], _Entry] = {}

    def response(self, request: Request, path: Path, cache_control: str) -> Response:
        """`path` (a file the caller has vetted) for `request`, compressed as it allows."""
        entry = self._entry(path)
        kind = media_type(path)
        coding = "identity"
        if kind.startswith(_TEXTUAL):
            codings = accepted(request.headers.get("accept-encoding", ""))
            if "br" in codings and brotli_module() is not None:
                coding = "br"
            elif "gzip" in codings:
                coding = "gzip"
        etag = f'W/"{entry.digest[:20]}-{coding}"'
        headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": cache_control}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        body = entry.identity if coding == "identity" else self._encoded(entry, coding)
        if coding != "identity":
            headers["Content-Encoding"] = coding
        if request.method == "HEAD":
            return Response(status_code=200, headers={**headers, "Content-Length": str(len(body))}, media_type=kind)
        return Response(body, media_type=kind, headers=headers)

    def _entry(self, path: Path) -> _Entry:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            found = self._entries.get(key)
        if found is not None:
            return found
        data = path.read_bytes()
        entry = _Entry(hashlib.sha256(data).hexdigest(), data)
        with self._lock:
            for old in [k for k in self._entries if k[0] == key[0]]:
                del self._entries[old]  # the file changed (a development checkout)
            return self._entries.setdefault(key, entry)

    def _encoded(self, entry: _Entry, coding: str) -> bytes:
        with self._lock:
            found = entry.encoded.get(coding)
        if found is not None:
            return found
        if coding == "gzip":
            body = gzip.compress(entry.identity, GZIP_LEVEL, mtime=0)
        else:
            body = self._read_best(entry) or self._quick_brotli(entry)
        with self._lock:
            return entry.encoded.setdefault(coding, body)

    # -- brotli ------------------------------------------------------------------------
    def _best_path(self, entry: _Entry) -> Path | None:
        return self.cache_dir / f"{entry.digest}.br" if self.cache_dir is not None else None

    def _read_best(self, entry: _Entry) -> bytes | None:
        path = self._best_path(entry)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None

    def _quick_brotli(self, entry: _Entry) -> bytes:
        brotli = brotli_module()
        if len(entry.identity) < 256 << 10:  # small files: the best quality costs nothing
            return bytes(brotli.compress(entry.identity, quality=BEST_QUALITY))
        with self._lock:
            start = not entry.building
            entry.building = True
        if start:
            threading.Thread(target=self._build_best, args=(entry,), daemon=True, name="brotli-assets").start()
        return bytes(brotli.compress(entry.identity, quality=QUICK_QUALITY))

    def _build_best(self, entry: _Entry) -> None:
        try:  # idle priority for this thread alone (Linux): the server's requests come first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        try:
            best = bytes(brotli_module().compress(entry.identity, quality=BEST_QUALITY))
            path = self._best_path(entry)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(best)
                os.replace(tmp, path)
            with self._lock:
                entry.encoded["br"] = best
        except Exception:  # the quick copy keeps being served
            log.warning("could not build the brotli copy of an asset", exc_info=True)


def brotli_module():  # type: ignore[no-untyped-def]
    """The `brotli` module (the `ui` extra brings it), or None: then gzip is offered instead."""
    try:
        import brotli
    except ImportError:
        return None
    return brotli
