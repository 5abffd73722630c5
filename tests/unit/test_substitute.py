"""Upstream's substitution of grid values into the entry script."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.exceptions import HyperParamError
from studio.search.substitute import (
    python_literal,
    substitute_file,
    substitute_script,
    substitute_script_counted,
)


def test_upstream_examples() -> None:
    assert substitute_script("lr = 0.01\n", {"lr": 0.05}) == "lr = 0.01\n"
    assert substitute_script("opt = SGD(lr=lr)\n", {"lr": 0.05}) == "opt = SGD(lr=0.05)\n"
    script = "learning_rate = 0.3\nprint(learning_rate)\n"
    assert substitute_script(script, {"learning_rate": 0.4}) == "learning_rate = 0.3\nprint(0.4)\n"


def test_upstream_script_prints_the_value(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("learning_rate = 0.3\nprint(learning_rate)\n")
    assert substitute_file(script, {"learning_rate": 0.4}) == {"learning_rate": 1}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    assert result.stdout == "0.4\n"


def test_manual_snippet() -> None:
    script = (
        "lr=0.01\n"
        "print('learning rate = {}'.format(lr))\n"
        "model.compile(loss='categorical_crossentropy', optimizer=optimizers.SGD(lr=lr))\n"
    )
    assert substitute_script(script, {"lr": 0.02}) == (
        "lr=0.01\n"
        "print('learning rate = {}'.format(0.02))\n"  # the '=' in the string comes before lr
        "model.compile(loss='categorical_crossentropy', optimizer=optimizers.SGD(lr=0.02))\n"
    )


def test_only_after_the_last_equals_sign() -> None:
    params = {"lr": 0.1}
    assert substitute_script("a = lr + lr * 2", params) == "a = 0.1 + 0.1 * 2"
    assert substitute_script("f(x=lr, y=lr)", params) == "f(x=lr, y=0.1)"
    assert substitute_script("if lr == 0.1: pass", params) == "if lr == 0.1: pass"
    assert substitute_script("print(lr)  # lr=1", params) == "print(lr)  # lr=1"
    assert substitute_script("print(lr)  # uses lr", params) == "print(0.1)  # uses 0.1"


def test_whole_words_only() -> None:
    params = {"lr": 0.1}
    assert (
        substitute_script("x = lr_decay + lr2 + mylr + lr", params)
        == "x = lr_decay + lr2 + mylr + 0.1"
    )
    assert substitute_script("x = élr + lré", params) == "x = élr + lré"
    # plain text substitution, as upstream: attribute access and strings are not spared
    assert substitute_script("x = self.lr", params) == "x = self.0.1"
    assert substitute_script("print('lr')", params) == "print('0.1')"


def test_value_literals() -> None:
    assert substitute_script("x = opt", {"opt": "adam"}) == "x = 'adam'"
    assert substitute_script("x = opt", {"opt": 'it\'s "q"\n'}) == "x = 'it\\'s \"q\"\\n'"
    assert substitute_script("x = n", {"n": 3}) == "x = 3"
    assert substitute_script("x = lr", {"lr": 1e-05}) == "x = 1e-05"
    assert substitute_script("x = -lr**2", {"lr": -3}) == "x = -(-3)**2"
    assert substitute_script("x = a-lr", {"lr": -0.5}) == "x = a-(-0.5)"
    assert python_literal(True) == "True"
    assert python_literal(-0.0) == "(-0.0)"
    assert python_literal(0.1 + 0.2) == "0.30000000000000004"


def test_bad_values_and_names() -> None:
    with pytest.raises(HyperParamError, match="finite"):
        substitute_script("x = lr", {"lr": float("nan")})
    with pytest.raises(HyperParamError, match="use a number or a string"):
        substitute_script("x = lr", {"lr": [1, 2]})
    with pytest.raises(HyperParamError, match="identifiers"):
        substitute_script("x = lr", {"l r": 1})
    with pytest.raises(HyperParamError, match="identifiers"):
        substitute_script("x = lr", {"if": 1})


def test_several_names_in_one_pass() -> None:
    # The value of `opt` spells `lr`; it must not be substituted again.
    text, counts = substitute_script_counted("x = (opt, lr, b)", {"opt": "lr", "lr": 0.1, "b": 1})
    assert text == "x = ('lr', 0.1, 1)"
    assert counts == {"opt": 1, "lr": 1, "b": 1}
    _, counts = substitute_script_counted("x = 1", {"unused": 2})
    assert counts == {"unused": 0}


def test_line_endings_are_preserved() -> None:
    text = "a = lr\r\nb = lr\rc = lr\nlr = 1"
    assert substitute_script(text, {"lr": 2}) == "a = 2\r\nb = 2\rc = 2\nlr = 1"
    assert substitute_script("", {"lr": 2}) == ""
    assert substitute_script("print(lr)", {}) == "print(lr)"


def test_substitute_file_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_bytes("# café\r\nprint(lr)\r\n".encode())
    script.chmod(0o750)
    inode_before = script.stat().st_ino
    assert substitute_file(script, {"lr": 0.5}) == {"lr": 1}
    assert script.read_bytes() == "# café\r\nprint(0.5)\r\n".encode()
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    assert script.stat().st_ino != inode_before  # replaced, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["train.py"]  # no temporary left behind


def test_substitute_file_leaves_untouched_scripts_alone(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("lr = 0.1\n")
    inode_before = script.stat().st_ino
    assert substitute_file(str(script), {"lr": 0.5}) == {"lr": 0}
    assert script.stat().st_ino == inode_before


def test_substitute_file_rejects_non_utf8(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_bytes(b"print(lr)  # \xff\n")
    with pytest.raises(HyperParamError, match="not UTF-8"):
        substitute_file(script, {"lr": 1})
    assert script.read_bytes() == b"print(lr)  # \xff\n"


def test_substitute_file_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "train.py"
    script.write_text("print(lr)\n")

    def broken_replace(src: str, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        substitute_file(script, {"lr": 1})
    assert script.read_text() == "print(lr)\n"
    assert sorted(os.listdir(tmp_path)) == ["train.py"]


_names = st.sampled_from(["lr", "x", "batch_size"])
_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)


@settings(max_examples=200, deadline=1000)
@given(text=st.text(max_size=200), params=st.dictionaries(_names, _values, max_size=3))
def test_lines_with_nothing_to_replace_are_unchanged(text: str, params: dict[str, object]) -> None:
    result = substitute_script(text, params)
    if not any(name in text for name in params):
        assert result == text
    # The left-hand side of every line (up to its last '=') is never touched.
    for before, after in zip(text.split("\n"), result.split("\n"), strict=True):
        if "\r" not in before:
            cut = before.rfind("=") + 1
            assert after[:cut] == before[:cut]


@settings(max_examples=200, deadline=1000)
@given(value=_values)
def test_substituted_value_evaluates_back(value: object) -> None:
    source = substitute_script("result = (v)\n", {"v": value})
    namespace: dict[str, object] = {}
    exec(source, namespace)  # the literal is valid Python that means the value
    assert namespace["result"] == value
