"""Every error studio raises on purpose.

The tree is shallow; the CLI's single error boundary maps each branch to an exit code::

    StudioError                      exit 1   something went wrong; the message says what to do
    +-- UsageError                   exit 2   bad input from the user (flags, paths, specs)
    |   +-- HyperParamError                   malformed hyperparameter / range spec
    |   +-- ConfigError                       unreadable or invalid config file (names the key)
    |   +-- ArtifactSpecError                 malformed `path:tag` / `experiment/tag:newtag`
    +-- NotFoundError                exit 3   unknown experiment, artifact, tag, queue item
    +-- ConflictError                exit 4   duplicate key, illegal status transition, busy item
    +-- StoreError                   exit 5   a backend failed (database, object store)
    |   +-- SchemaVersionError                the database needs `studio db upgrade`
    |   +-- IntegrityError                    stored data is corrupt or unsafe (path escape, bad hash)
    +-- MissingDependencyError       exit 6   an optional extra is not installed (`pip install studio[x]`)
    +-- AccessError                  exit 7   a studio server refused the caller
        +-- AuthenticationError               no, a wrong, or a revoked token (HTTP 401)
        +-- PermissionDeniedError             authenticated, but the rules forbid it (HTTP 403)

Messages say what happened and what to do next, in one line.
"""

from __future__ import annotations


class StudioError(Exception):
    """Root of studio's exceptions."""

    exit_code = 1


class UsageError(StudioError):
    exit_code = 2


class HyperParamError(UsageError):
    pass


class ConfigError(UsageError):
    pass


class ArtifactSpecError(UsageError):
    pass


class NotFoundError(StudioError):
    exit_code = 3


class ConflictError(StudioError):
    exit_code = 4


class StoreError(StudioError):
    exit_code = 5


class SchemaVersionError(StoreError):
    pass


class IntegrityError(StoreError):
    pass


class MissingDependencyError(StudioError):
    exit_code = 6

    @classmethod
    def for_extra(cls, module: str, extra: str) -> MissingDependencyError:
        return cls(f"{module} is not installed: run `pip install 'studio[{extra}]'`")


class AccessError(StudioError):
    exit_code = 7


class AuthenticationError(AccessError):
    pass


class PermissionDeniedError(AccessError):
    pass


def require(module: str, extra: str):  # type: ignore[no-untyped-def]
    """Import an optional dependency or fail with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError.for_extra(module, extra) from exc
