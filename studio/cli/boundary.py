"""The `studio` command's error boundary and logging set-up, without click.

Every exception ends here as one line on stderr and an exit code in studio's reserved range
193-200 (see `studio.exceptions`); the traceback is printed only with STUDIOML_DEBUG=1 (or
`--verbose debug`). `studio.cli.main` adds click's own errors on top.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

DEBUG_HINT = "run with STUDIOML_DEBUG=1 for the traceback"


def setup_logging(verbose: str | bool | None) -> None:
    level = logging.WARNING
    if verbose:
        level = getattr(logging, str(verbose).upper(), logging.DEBUG) if isinstance(verbose, str) else logging.DEBUG
    logging.basicConfig(level=level, format="studio %(levelname)s %(name)s: %(message)s")


def _debugging() -> bool:
    flag = os.environ.get("STUDIOML_DEBUG", "").strip().lower()
    return flag not in ("", "0", "false", "no", "off") or logging.getLogger().isEnabledFor(logging.DEBUG)


def fail(message: str, code: int) -> NoReturn:
    if _debugging():
        import traceback

        traceback.print_exc()
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def guarded(command: Callable[[], Any]) -> Any:
    """`command()`, with every exception it raises turned into one line and an exit code."""
    from studio.exceptions import EXIT_INTERNAL, StudioError

    try:
        return command()
    except StudioError as exc:
        fail(f"studio: error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except OSError as exc:  # the machine said no (permissions, full disk, missing folder)
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        fail(f"studio: error: {exc.strerror or exc}{where}; check the path, its permissions and free space",
             StudioError.exit_code)
    except Exception as exc:  # a bug: still one line, and a code no script is likely to use
        fail(f"studio: internal error: {type(exc).__name__}: {exc}; {DEBUG_HINT}", EXIT_INTERNAL)
