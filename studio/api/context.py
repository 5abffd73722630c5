"""`Context` lives in `studio.context` (below every layer that needs it); this name stays for
the API layer's callers and for scripts that imported it from here."""

from __future__ import annotations

from studio.context import Context

__all__ = ["Context"]
