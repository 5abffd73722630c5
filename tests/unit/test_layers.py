"""docs/architecture.md: import direction is downward only. The layers below `api/` never
import it (nor the CLI or the server), at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "studio"
BELOW_API = ("runner", "queue", "search", "capture", "objects", "meta", "tracking", "cloud")
ABOVE = ("studio.api", "studio.cli", "studio.server")


def test_lower_layers_never_import_upward() -> None:
    wrong = []
    for layer in BELOW_API:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if name.startswith(ABOVE):
                        wrong.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {name}")
    assert not wrong, "\n".join(wrong)
