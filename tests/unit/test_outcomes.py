"""How a run's end is recorded when not all was saved, and what a SystemExit code means."""

from __future__ import annotations

from studio.entities import Status
from studio.runner.executor import Outcome, _not_saved
from studio.workbook.session import _exit_outcome


def test_a_successful_script_whose_results_were_not_saved_failed() -> None:
    out = _not_saved(Outcome(Status.FINISHED, 0), "final checkpoint: No space left on device")
    assert out.status == Status.FAILED and out.returncode == 0 and out.exit_code == 1
    assert out.reason == "the script finished but not all was saved: final checkpoint: No space left on device"


def test_other_outcomes_keep_their_status_and_code_with_a_note() -> None:
    out = _not_saved(Outcome(Status.FAILED, 3, "exit code 3"), "output file: disk full")
    assert (out.status, out.exit_code) == (Status.FAILED, 3)
    assert out.reason == "exit code 3; not all was saved: output file: disk full"
    killed = _not_saved(Outcome(Status.KILLED, -15, "studio received SIGTERM"), "x")
    assert (killed.status, killed.exit_code) == (Status.KILLED, 143)


def test_system_exit_codes() -> None:
    assert _exit_outcome(None) == (Status.FINISHED, None, 0)
    assert _exit_outcome(0) == (Status.FINISHED, None, 0)
    assert _exit_outcome(3) == (Status.FAILED, "exit code 3", 3)
    assert _exit_outcome("bye") == (Status.FAILED, "exit code 1", 1)  # Python prints it, exits 1
