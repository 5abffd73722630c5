"""The CLI's one error boundary: every exception is one line and a code in 193-200."""

from __future__ import annotations

import click
import pytest

from studio.cli import main as cli_main
from studio.exceptions import EXIT_INTERNAL, NotFoundError, StudioError, UsageError


@click.command()
@click.argument("what")
def boom(what: str) -> None:
    if what == "bug":
        raise RuntimeError("something studio did not expect")
    if what == "os":
        raise PermissionError(13, "Permission denied", "/root/x")
    if what == "usage":
        raise UsageError("--thing must be positive")
    raise NotFoundError("experiment nope not found")


@pytest.fixture
def with_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_main.COMMANDS, "boom", "tests.unit.test_cli_boundary:boom")
    monkeypatch.delenv("STUDIOML_DEBUG", raising=False)


@pytest.mark.parametrize(
    ("what", "code", "line"),
    [
        ("bug", EXIT_INTERNAL, "studio: internal error: RuntimeError: something studio did not expect; "
                               "run with STUDIOML_DEBUG=1 for the traceback"),
        ("os", StudioError.exit_code, "studio: error: Permission denied: /root/x; check the path, its permissions and free space"),
        ("usage", UsageError.exit_code, "studio: error: --thing must be positive"),
        ("missing", NotFoundError.exit_code, "studio: error: experiment nope not found"),
    ],
)  # fmt: skip
def test_every_exception_is_one_line(with_boom: None, capsys: pytest.CaptureFixture[str], what: str, code: int, line: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["boom", what])
    assert exc.value.code == code and 192 < code <= 200
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_debug_shows_the_traceback(with_boom: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIOML_DEBUG", "1")
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["boom", "bug"])
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_INTERNAL and "Traceback" in err and err.strip().endswith("for the traceback")


def test_click_usage_errors_share_the_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["runs", "list", "--no-such-flag"])
    assert exc.value.code == UsageError.exit_code
    assert "No such option" in capsys.readouterr().err
