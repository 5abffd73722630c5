"""Every error studio raises on purpose.

The tree is shallow; the CLI's single error boundary maps each branch to an exit code::

    StudioError                      exit 193 something went wrong; the message says what to do
    +-- UsageError                   exit 194 bad input from the user (flags, paths, specs)
    |   +-- HyperParamError                   malformed hyperparameter / range spec
    |   +-- ConfigError                       unreadable or invalid config file (names the key)
    |   +-- ArtifactSpecError                 malformed `path:tag` / `experiment/tag:newtag`
    +-- NotFoundError                exit 195 unknown experiment, artifact, tag, queue item
    +-- ConflictError                exit 196 duplicate key, illegal status transition, busy item
    +-- StoreError                   exit 197 a backend failed (database, object store)
    |   +-- SchemaVersionError                the database needs `studio db upgrade`
    |   +-- IntegrityError                    stored data is corrupt or unsafe (path escape, bad hash)
    +-- MissingDependencyError       exit 198 an optional extra is not installed (`pip install 'studio-experiments[x]'`)
    +-- AccessError                  exit 200 a studio server refused the caller
    |   +-- AuthenticationError               no, a wrong, or a revoked token (HTTP 401)
    |   +-- PermissionDeniedError             authenticated, but the rules forbid it (HTTP 403)
    (any other exception)            exit 199 a bug in studio: one line, traceback with STUDIOML_DEBUG=1

studio's own exit codes live in 193-200, above every code a script killed by a signal gets
(128+N, N <= 64), because `studio run` exits with its script's code: a caller tells "the
script failed with 2" from "studio refused the command line" (README, "Exit codes").

Messages say what happened and what to do next, in one line.
"""

from __future__ import annotations

# studio's own exit codes: EXIT_BASE + n, clear of scripts' codes and of 128+signal.
EXIT_BASE = 192
EXIT_INTERNAL = EXIT_BASE + 7


class StudioError(Exception):
    """Root of studio's exceptions."""

    exit_code = EXIT_BASE + 1


class UsageError(StudioError):
    exit_code = EXIT_BASE + 2


class HyperParamError(UsageError):
    pass


class ConfigError(UsageError):
    pass


class ArtifactSpecError(UsageError):
    pass


class NotFoundError(StudioError):
    exit_code = EXIT_BASE + 3


class ConflictError(StudioError):
    exit_code = EXIT_BASE + 4


class StoreError(StudioError):
    exit_code = EXIT_BASE + 5


class SchemaVersionError(StoreError):
    pass


class IntegrityError(StoreError):
    pass


class MissingDependencyError(StudioError):
    exit_code = EXIT_BASE + 6

    @classmethod
    def for_extra(cls, module: str, extra: str) -> MissingDependencyError:
        return cls(f"{module} is not installed: run `{install_hint(extra)}`")


def install_hint(extra: str) -> str:
    """The command that installs an extra (the distribution is not called `studio`)."""
    from studio._version import DISTRIBUTION

    return f"pip install '{DISTRIBUTION}[{extra}]'"


class AccessError(StudioError):
    exit_code = 200


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
