"""Every import in the package is paid for by pyproject.toml.

An import of a distribution that is neither a core dependency nor in the right extra works in
the development environment (which has every extra and their dependencies) and fails for a user
who ran the README's `pip install`: `packaging` did exactly that (worker runs ended `lost`).
This reads the package's source and checks each third-party import against the declared
dependencies; `scripts/check_install` then runs the core commands in a core-only venv.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "studio"

#: Modules whose whole purpose is an extra: they may import that extra's distributions (and
#: what those depend on) anywhere. Everything else reaches an extra only through `require()`
#: or an `except ImportError` fallback.
EXTRA_MODULES = {
    "studio/cloud/ec2.py": "aws",
    "studio/cli/cloud.py": "aws",
    "studio/cloud/gce.py": "gcp",
    "studio/objects/backends/http.py": "remote",
    "studio/server/gcs_transfers.py": "gcs",  # before studio/server/: the first prefix that matches wins
    "studio/server/": "ui",
    "studio/cli/ui.py": "ui",
    "studio/workbook/": "workbook",
    "studio/search/optimizers/optuna_samplers.py": "search",
    "studio/meta/http.py": "remote",
    "studio/pipe/images.py": "pipe",
    "studio/integrations/lightning.py": "lightning",
    "studio/integrations/keras.py": "keras",
    "studio/integrations/transformers.py": "transformers",
    "studio/integrations/sklearn.py": "sklearn",
    "studio/api/import_mlflow.py": "mlflow",
}

#: Extras `all` leaves out. The framework adapters (docs/integrations.md) name a framework the
#: user has already (lightning alone would pull a multi-GB build of torch into every
#: `pip install studio-experiments[all]`); the cloud provisioners (docs/cloud.md) are a
#: submitter's choice of cloud, and boto3 beside s3fs's narrow aiobotocore pin sends pip 23
#: backtracking.
FRAMEWORK_EXTRAS = {"lightning", "keras", "transformers", "sklearn", "mlflow", "aws", "gcp"}

#: Used when the user has them, never installed by studio; each import sits behind an
#: ImportError fallback (checked below).
BRING_YOUR_OWN = {
    "torch": "ModelPipe's torch helpers",
    "pynvml": "GPU facts in the host record",
    "google_crc32c": "a C CRC32C for TensorBoard files (pure Python otherwise)",
    "tensorboard": "compiled protos for TensorBoard import (hand-written decoder otherwise)",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _core() -> set[str]:
    return {_name(r) for r in _pyproject()["dependencies"]}


@functools.cache
def _extra(extra: str) -> set[str]:
    """The distributions an extra brings: its own and (installed) their dependencies."""
    todo = [_name(r) for r in _pyproject()["optional-dependencies"][extra]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


@functools.cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    found = _providers().get(module)
    assert found, f"no installed distribution provides `{module}` (scripts/test installs all extras)"
    return found[0].lower().replace("_", "-")


def _imports(tree: ast.AST) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, guarded by an `except ImportError`) of every absolute import,
    TYPE_CHECKING blocks left out."""

    def visit(node: ast.AST, guarded: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = guarded
            if isinstance(node, ast.Try) and child in node.body:
                caught = {n.id for h in node.handlers if h.type for n in ast.walk(h.type) if isinstance(n, ast.Name)}
                inner = guarded or bool(caught & {"ImportError", "ModuleNotFoundError", "Exception"})
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], child.lineno, inner
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module.split(".")[0], child.lineno, inner
            yield from visit(child, inner)

    yield from visit(tree, False)


def _requires(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(module, extra, line) of every `require("module", "extra")` call."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).split(".")[-1] == "require"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) for a in node.args)
        ):
            yield node.args[0].value, node.args[1].value, node.lineno  # type: ignore[attr-defined]


def _sources() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def _owner(rel: str) -> str | None:
    return next((extra for prefix, extra in EXTRA_MODULES.items() if rel.startswith(prefix)), None)


def test_every_import_is_a_declared_dependency() -> None:
    core = _core()
    extras = {name: _extra(name) for name in _pyproject()["optional-dependencies"]}
    wrong = []
    for rel, tree in _sources():
        owner = _owner(rel)
        for module, line, guarded in _imports(tree):
            if module in sys.stdlib_module_names or module in {"studio", "__future__"}:
                continue
            if (rel, module) == ("studio/runner/warm/sitecustomize.py", "sitecustomize"):
                continue  # the user's own sitecustomize, imported as `site` would have (warm start)
            where = f"{rel}:{line} imports {module}"
            if module in BRING_YOUR_OWN:
                if not guarded and not rel.endswith("_pb2.py"):  # its importer catches ImportError
                    wrong.append(f"{where} with no ImportError fallback")
                continue
            dist = _distribution(module)
            if dist in core:
                continue
            if owner is not None and dist in extras[owner]:
                continue
            if guarded and any(dist in deps for deps in extras.values()):
                continue
            wrong.append(
                f"{where} ({dist}): not a core dependency"
                + (f" nor in the `{owner}` extra" if owner else "; reach an extra through require()")
            )
    assert not wrong, "\n".join(wrong)


def test_every_require_names_the_extra_that_brings_it() -> None:
    core = _core()
    declared = _pyproject()["optional-dependencies"]
    wrong = []
    for rel, tree in _sources():
        for module, extra, line in _requires(tree):
            dist = _distribution(module)
            if extra not in declared:
                wrong.append(f"{rel}:{line} require({module!r}, {extra!r}): no such extra")
            elif dist in core:
                wrong.append(f"{rel}:{line} require({module!r}, ...): {dist} is a core dependency")
            elif dist not in _extra(extra):
                wrong.append(f"{rel}:{line} require({module!r}, {extra!r}): {dist} is not in it")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("extra", ["all", "test"])
def test_aggregate_extras_name_this_distribution(extra: str) -> None:
    project = _pyproject()
    own = [r for r in project["optional-dependencies"][extra] if _name(r) == project["name"]]
    assert own, f"the `{extra}` extra does not refer to {project['name']}"
    if extra == "all":
        listed = set(re.search(r"\[(.*)\]", own[0]).group(1).split(","))  # type: ignore[union-attr]
        assert listed == set(project["optional-dependencies"]) - {"all", "test"} - FRAMEWORK_EXTRAS
