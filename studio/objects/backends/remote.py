"""fsspec backend: S3, GCS, Azure, memory:// and any other fsspec file system.

Options that are not part of the URL (an S3 endpoint for MinIO or moto) come from
environment variables and are never stored: see `storage_options_from_env`. Credentials
are left to the provider's own chain (environment, profile, instance role).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from studio.exceptions import MissingDependencyError, NotFoundError, StoreError, UsageError
from studio.objects.backends.base import ObjectBackend

log = logging.getLogger(__name__)

# Object stores publish an upload all at once, so writing the final key directly is atomic.
# Others (sftp, webdav, ...) get a temporary key and a rename.
_ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "memory", "az", "abfs", "abfss", "adl", "oss"}
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def storage_options_from_env(protocol: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec options taken from the environment (never from stored configuration)."""
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        endpoint = (
            env.get("STUDIOML_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        )
        if endpoint:
            options["endpoint_url"] = endpoint
    elif protocol in ("gs", "gcs") and env.get("STORAGE_EMULATOR_HOST"):
        options["token"] = "anon"  # an emulator (gcsfs talks to it) takes no credentials
    return options


class FsspecBackend(ObjectBackend):
    """Objects under `<url>/<key>` on an fsspec file system, imported lazily."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        protocol = url.split("://", 1)[0].lower()
        opts = dict(storage_options_from_env(protocol) if options is None else options)
        try:
            from fsspec.core import url_to_fs

            self.fs, root = url_to_fs(self.url, **opts)
        except ImportError as exc:
            extra = _EXTRAS.get(protocol)
            if extra:
                raise MissingDependencyError.for_extra(f"the {protocol}:// storage plugin", extra) from exc
            raise MissingDependencyError(
                f"storage {protocol}:// needs an fsspec plugin that is not installed ({exc}); install it with pip"
            ) from exc
        except ValueError as exc:
            raise UsageError(f"unknown storage URL scheme {protocol}:// in {url!r}; use a path, file://, s3:// or gs://") from exc
        self.root = str(root).rstrip("/")
        self._atomic = protocol in _ATOMIC_PUT

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def size(self, key: str) -> int | None:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            return None
        return int(info.get("size") or 0)

    def put_file(self, local_path: Path, key: str, *, move: bool = False) -> None:
        target = self._path(key)
        try:
            if self._atomic:
                self.fs.put_file(str(local_path), target)
            else:
                self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                tmp = f"{target}.tmp-{uuid.uuid4().hex}"
                self.fs.put_file(str(local_path), tmp)
                self.fs.mv(tmp, target)
        except OSError as exc:
            raise StoreError(f"cannot upload {key} to {self.url}: {exc}") from exc
        if move:
            os.unlink(local_path)

    def get_file(self, key: str, local_path: Path) -> None:
        try:
            self.fs.get_file(self._path(key), str(local_path))
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in store {self.url}") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return cast(BinaryIO, self.fs.open(self._path(key), "rb"))
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in store {self.url}") from None

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def freshen(self, key: str, size: int | None, older_than: float) -> bool:
        path = self._path(key)
        try:
            self.fs.invalidate_cache(path)
            info = self.fs.info(path)
        except FileNotFoundError:
            return False
        if size is not None and int(info.get("size") or 0) != size:
            return False
        if time.time() - _mtime(info) <= older_than:
            return True
        try:
            if hasattr(self.fs, "setxattr"):
                # S3: a server-side copy onto itself (new metadata) gives a new LastModified
                # without moving the bytes through this machine.
                self.fs.setxattr(path, studio_freshened=str(int(time.time())))
            else:
                self._rewrite(key)
        except FileNotFoundError:
            return False  # collected meanwhile: the caller writes it again
        except OSError as exc:
            log.debug("freshening %s by metadata failed (%s); rewriting it", key, exc)
            try:
                self._rewrite(key)
            except FileNotFoundError:
                return False
        finally:
            self.fs.invalidate_cache(path)
        return True

    def _rewrite(self, key: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix="studio-freshen-")
        os.close(fd)
        try:
            self.fs.get_file(self._path(key), tmp)
            self.put_file(Path(tmp), key)
        finally:
            os.unlink(tmp)

    def delete_if_older(self, key: str, cutoff: float) -> bool:
        # Object stores have no conditional delete: the age is read again right before the
        # delete, which narrows the window against a writer's freshen to one round trip.
        path = self._path(key)
        try:
            self.fs.invalidate_cache(path)
            info = self.fs.info(path)
        except FileNotFoundError:
            return False
        if _mtime(info) > cutoff:
            return False
        self.delete(key)
        return True

    def walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        base = self._path(prefix.rstrip("/"))
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        finally:
            # A listing fills fsspec's directory cache; stale entries must not answer later
            # existence checks (another process may add or collect objects meanwhile).
            self.fs.invalidate_cache()
        start = len(self.root) + 1
        for path, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            name = str(path)
            rel = name[start:] if name.startswith(self.root + "/") else name.lstrip("/")
            yield rel, int(info.get("size") or 0), _mtime(info)


def _mtime(info: Mapping[str, Any]) -> float:
    for field in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(field)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0
