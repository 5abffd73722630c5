"""Content-addressed object store: files stored once by hash, artifact versions as trees.

    store = open_object_store(settings.storage_url, settings.blob_cache, home / "statcache.db")
    result = store.put_tree(Path("workspace"), ignore=..., previous=last_tree)
    store.materialize(result.tree, Path("dest"), readonly=True)

The storage layout is an open format, specified in docs/storage.md.
"""

from __future__ import annotations

from studio.objects.backends import LocalBackend, ObjectBackend, backend_for_url
from studio.objects.hashing import ALGORITHM
from studio.objects.ingest import PutResult
from studio.objects.statcache import StatCache
from studio.objects.store import GcReport, ObjectStore, open_object_store
from studio.objects.tree import Tree, TreeEntry

__all__ = [
    "ALGORITHM",
    "GcReport",
    "LocalBackend",
    "ObjectBackend",
    "ObjectStore",
    "PutResult",
    "StatCache",
    "Tree",
    "TreeEntry",
    "backend_for_url",
    "open_object_store",
]
