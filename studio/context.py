"""The stores an operation works on, opened lazily from Settings and passed down explicitly.

Below `api/`, `runner/`, `queue/` and `search/`, which all take one (import direction is downward
only); `studio.api.context` re-exports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from studio.config import Settings, load_settings

if TYPE_CHECKING:
    from studio.meta.base import MetaStore
    from studio.objects import ObjectStore


@dataclass
class Context:
    settings: Settings
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls, config: str | None = None) -> Context:
        return cls(load_settings(config))

    @cached_property
    def meta(self) -> MetaStore:
        from studio.meta import open_meta_store

        return open_meta_store(self.settings.database_url, token=self.settings.api_token)

    @cached_property
    def objects(self) -> ObjectStore:
        from studio.objects import open_object_store

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return open_object_store(
            self.settings.storage_url,
            cache_dir=self.settings.blob_cache,
            stat_cache=self.settings.home / "statcache.db",
            token=self.settings.api_token,
        )

    def objects_for(self, key: str) -> ObjectStore:
        """The object store acting for experiment `key` (a studio server authorizes by it)."""
        return self.objects.for_experiment(key)

    def close(self) -> None:
        if "meta" in self.__dict__:
            self.meta.close()
        self._closed = True

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
