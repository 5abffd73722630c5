"""Object backends, chosen by URL scheme from one registry (see `backend_for_url`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from studio.objects.backends.base import ObjectBackend
from studio.objects.backends.local import LocalBackend

__all__ = ["ObjectBackend", "LocalBackend", "backend_for_url"]


def _local(url: str) -> ObjectBackend:
    from urllib.parse import unquote, urlparse

    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            from studio.exceptions import UsageError

            raise UsageError(f"storage URL {url!r} names a remote host; use file:///absolute/path")
        return LocalBackend(Path(unquote(parsed.path)))
    return LocalBackend(Path(url))


def _fsspec(url: str) -> ObjectBackend:
    from studio.objects.backends.remote import FsspecBackend

    return FsspecBackend(url)


def _local_any(url: str, token: str | None) -> ObjectBackend:
    return _local(url)


def _fsspec_any(url: str, token: str | None) -> ObjectBackend:
    return _fsspec(url)


def _studio_server(url: str, token: str | None) -> ObjectBackend:
    from studio.objects.backends.http import HttpBackend

    return HttpBackend(url, token)


# scheme -> factory(url, token). Anything else with a scheme goes to fsspec, which knows many more.
_REGISTRY: dict[str, Callable[[str, str | None], ObjectBackend]] = {
    "": _local_any,
    "file": _local_any,
    "http": _studio_server,
    "https": _studio_server,
}


def backend_for_url(url: str, *, token: str | None = None) -> ObjectBackend:
    """A plain path or file:// -> LocalBackend; http(s):// -> a studio server (HttpBackend,
    authenticated with `token`); s3://, gs://, memory://, ... -> FsspecBackend."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return _REGISTRY.get(scheme, _fsspec_any)(url, token)
