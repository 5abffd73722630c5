"""Trees from the object store as local directories: cached read-only copies and worker copies."""

from __future__ import annotations

from pathlib import Path

from studio.context import Context


def cached_tree(ctx: Context, tree: str, pin: bool = False) -> Path:
    """A read-only local copy of a stored tree, shared by every experiment that reuses it
    (`studio.objects.cache`: keyed by the tree hash, so a newer version of the source artifact
    is a new entry; upstream's cache, keyed by name, never refreshed). `pin`: this process reads
    it for its whole life (a run's `--reuse` artifacts), so no pruning removes it meanwhile."""
    from studio.objects.cache import cached_tree as fill

    return fill(ctx.objects, ctx.settings.blob_cache, tree, pin=pin, max_bytes=ctx.settings.cache_budget())
