"""Hyperparameters read off a script's command line, so `studio run train.py --lr 0.1 --epochs 3`
records `lr` and `epochs` without the script calling studio.

    params_from_args(["--lr", "0.1", "model.depth=4", "conf.yaml"], script=Path("train.py"), cwd=...)
    -> {"lr": 0.1, "model.depth": 4, ... every leaf of conf.yaml, dotted}

What is read, later sources winning over earlier ones:
1. YAML/JSON config files named on the command line (a positional path or an option's value
   ending in .yaml/.yml/.json that exists), flattened to dotted names (`model.depth`);
2. options: the script's own argparse `add_argument` / click `@click.option` declarations, read
   from its source with `ast` (never run), give each option its name (`dest`, so `-l` or
   `--learning-rate` records `learning_rate`), its type and whether it is a flag taking no
   value; options the script does not declare are read as `--key value` / `--key=value`
   (`--flag` followed by another option or nothing is `True`);
3. Hydra/OmegaConf overrides `key=value`, `+key=value`, `++key=value` (`~key` deletions are
   skipped).

Values are typed as YAML reads them (`0.1` a float, `3` an int, `true` a bool, `[1,2]` a list),
except where the declaration gives a type (`type=str` keeps `"007"`). Anything unreadable is
skipped rather than guessed: this never fails a run. `studio.params()` values (sweeps) and
params a script records itself still win over these (see `studio.api.run.prepare`).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PARAMS = 200
MAX_VALUE_CHARS = 500
MAX_CONFIG_BYTES = 1_000_000
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_OVERRIDE = re.compile(r"^(\+{0,2})([A-Za-z_][\w\-]*(?:\.[\w\-]+)*)=(.*)$", re.S)
_OPTION = re.compile(r"^--?[A-Za-z][\w\-.]*$")


@dataclass(frozen=True)
class Declared:
    """What a script declares about one option."""

    dest: str
    flag: bool = False  # takes no value (store_true / is_flag)
    value_when_flag: Any = True
    as_text: bool = False  # type=str: keep the text as given


def params_from_args(args: Sequence[str], *, script: Path | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The params `args` (the script's own arguments) set; `{}` when there are none."""
    try:
        return _params(list(args), script, cwd or Path.cwd())
    except Exception:  # noqa: BLE001 - reading params is a courtesy; a run never fails over it
        log.debug("could not read params from the command line %r", args, exc_info=True)
        return {}


def _params(args: list[str], script: Path | None, cwd: Path) -> dict[str, Any]:
    declared = declared_options(script) if script is not None else {}
    files: dict[str, Any] = {}
    options: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            continue
        if arg.startswith("-") and not _is_number(arg):
            name, eq, inline = arg.partition("=")
            if not _OPTION.match(name):
                continue
            decl = declared.get(name)
            dest = decl.dest if decl else name.lstrip("-").replace("-", "_")
            if decl is not None and decl.flag:
                options[dest] = decl.value_when_flag
                continue
            if eq:
                text = inline
            elif i < len(args) and not (args[i].startswith("-") and not _is_number(args[i])):
                text = args[i]
                i += 1
            else:
                options[dest] = True
                continue
            if _is_config(text, cwd):
                files.update(_load_quietly(cwd / text))
            options[dest] = text if decl is not None and decl.as_text else typed(text)
            continue
        match = _OVERRIDE.match(arg)
        if match:
            overrides[match.group(2)] = typed(match.group(3))
        elif _is_config(arg, cwd):
            files.update(_load_quietly(cwd / arg))
    merged = {**files, **options, **overrides}
    out: dict[str, Any] = {}
    for k, v in merged.items():
        if len(out) >= MAX_PARAMS:
            break
        if isinstance(v, str) and len(v) > MAX_VALUE_CHARS:
            continue
        out[k] = v
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_config(text: str, cwd: Path) -> bool:
    if not text.lower().endswith(CONFIG_SUFFIXES):
        return False
    path = cwd / text
    return path.is_file() and path.stat().st_size <= MAX_CONFIG_BYTES


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_WORDS = {"true": True, "false": False, "null": None, "none": None, "~": None}


def typed(text: str) -> Any:
    """A command-line value as YAML reads it; text when YAML would make it something odd."""
    low = text.strip().lower()
    if _INT.match(low):
        return int(low)
    if _FLOAT.match(low):
        return float(low)  # YAML 1.1 would keep `1e-3` as text
    if low in _WORDS:
        return _WORDS[low]
    if not low.startswith(("[", "{")):
        return text
    import yaml  # lists and mappings only: `studio run` stays quick to start

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip().lower() not in ("null", "none", "~"):
        return text  # '' stays ''
    if isinstance(value, (bool, int, float, str, list)) or value is None:
        return value
    if isinstance(value, dict):
        return value
    return text  # dates and other YAML types: keep what was typed


def _load_quietly(path: Path) -> dict[str, Any]:
    try:
        return load_config(path)
    except Exception:  # noqa: BLE001 - a broken config file is the script's business, not ours
        log.debug("could not read params from %s", path, exc_info=True)
        return {}


def load_config(path: Path) -> dict[str, Any]:
    """A YAML/JSON config file flattened to dotted names; `{}` when it is not a mapping."""
    import yaml

    text = path.read_text(encoding="utf-8", errors="replace")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return flatten(data) if isinstance(data, dict) else {}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, name + "."))
        elif isinstance(v, (bool, int, float, str, list)) or v is None:
            out[name] = v
        else:
            out[name] = str(v)
    return out


# -- what a script declares -------------------------------------------------------------
def declared_options(script: Path) -> dict[str, Declared]:
    """Option string -> declaration, from the script's argparse and click calls (read with
    `ast`, never run). `{}` when the file cannot be read or parsed."""
    try:
        tree = ast.parse(script.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return {}
    found: dict[str, Declared] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        attr = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if attr not in ("add_argument", "option"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        opts = [n for n in names if n.startswith("-")]
        if not opts:
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        decl = _declaration(attr, opts, names, kw)
        for o in opts:
            if "/" not in o:
                found[o] = decl
        if attr == "option":  # click's "--shout/--no-shout" boolean pairs
            for n in names:
                if "/" in n:
                    on, _, off = n.partition("/")
                    found[on.strip()] = Declared(decl.dest, flag=True, value_when_flag=True)
                    found[off.strip()] = Declared(decl.dest, flag=True, value_when_flag=False)
    return found


def _declaration(kind: str, opts: list[str], names: list[str], kw: dict[str, ast.expr]) -> Declared:
    dest_node = kw.get("dest")
    if isinstance(dest_node, ast.Constant) and isinstance(dest_node.value, str):
        dest = dest_node.value
    elif kind == "option" and (plain := [n for n in names if not n.startswith("-")]):
        dest = plain[0]  # click: a bare name is the parameter's name
    else:
        longs = [o for o in opts if o.startswith("--")]
        first = (longs or opts)[0].split("/")[0]
        dest = first.lstrip("-").replace("-", "_")
    action = kw.get("action")
    flag = False
    value: Any = True
    if isinstance(action, ast.Constant) and action.value in ("store_true", "store_false", "store_const", "count"):
        flag = True
        value = action.value != "store_false"
        const = kw.get("const")
        if action.value == "store_const" and isinstance(const, ast.Constant):
            value = const.value
    is_flag = kw.get("is_flag")
    if isinstance(is_flag, ast.Constant) and is_flag.value is True:
        flag = True
    if kind == "option" and any("/" in n for n in names):
        flag = True
    type_node = kw.get("type")
    as_text = isinstance(type_node, ast.Name) and type_node.id == "str"
    return Declared(dest=dest, flag=flag, value_when_flag=value, as_text=as_text)


__all__ = ["declared_options", "flatten", "load_config", "params_from_args", "typed"]
