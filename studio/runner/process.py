"""Child-process plumbing for the supervisor: signal forwarding, exit waiting, process groups.

Linux-specific parts (parent-death signal, pidfd waits) degrade to portable fallbacks elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REAPER = Path(__file__).with_name("_reaper.py")


def stop_signals() -> list[signal.Signals]:
    """The signals a supervisor acts on: SIGINT (stop), SIGTERM, and SIGHUP (the terminal
    went away) unless it is ignored (`nohup`), so a run is recorded, not left to go `lost`."""
    sigs = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        sigs.append(signal.SIGHUP)
    return sigs


class Signals:
    """SIGINT/SIGTERM/SIGHUP to the supervisor are recorded and forwarded to the child's group."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}
        self.on_signal: Callable[[int], None] | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in stop_signals():
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child if the supervisor dies (kill -9,
    OOM killer), so a crashed worker leaves no orphan script behind to race the re-run of its
    experiment. libc is loaded here, in the parent: the forked child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(137)

    return preexec


class ExitWaiter:
    """`wait(timeout) -> exited?`. On Linux a pidfd wakes us the moment the child exits;
    `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which every short run would pay."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        try:
            self.fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.fd = None

    def __call__(self, timeout: float) -> bool:
        if self.fd is None:
            try:
                self.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        import select

        select.select([self.fd], [], [], timeout)
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def with_reaper(argv: list[str]) -> list[str] | None:
    """`argv` run under the run's reaper (see `_reaper.py`), or None where there is none (not
    Linux): then the parent-death signal covers the script itself, not its children."""
    if not sys.platform.startswith("linux") or not REAPER.is_file():
        return None
    return [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()), *argv]


class Prestarted:
    """A reaper started before its script is known (Linux): `launch(argv, cwd, env)` hands it
    the script and returns its Popen, exactly as `Popen(with_reaper(argv), ...)` would;
    `cancel()` lets it exit running nothing. With `expected`, the command line the script
    will have (`studio run` knows it before it captures), the script's own interpreter starts
    at once too, held until the launch (a warm start: see `_reaper.py`)."""

    def __init__(self, expected: list[str] | None = None) -> None:
        self.expected = expected
        argv = with_reaper(["-", *(expected or ())])
        if argv is None:
            raise OSError("no reaper on this platform")
        # os.environ, which the run's environment is made from (the process's own may differ:
        # GNU readline, for one, sets LINES and COLUMNS there), so a warm start can match it.
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env=dict(os.environ),
        )

    @classmethod
    def start(cls, expected: list[str] | None = None) -> Prestarted | None:
        """A reaper starting now, or None where there is none (or it could not start)."""
        try:
            return cls(expected)
        except OSError:
            return None

    def launch(self, argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `argv` in `cwd` with exactly `env`. OSError if the reaper is gone (the caller
        then starts the script the usual way)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.stdin is None:
            raise OSError("reaper already used")
        fields = [cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
        try:
            if proc.poll() is not None:
                raise OSError("the reaper exited before its script was known")
            proc.stdin.write(b"\0".join(os.fsencode(f) for f in fields))
            proc.stdin.close()
        except OSError:
            _discard(proc)
            raise
        proc.stdin = None
        return proc

    def cancel(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _discard(proc)


def _discard(proc: subprocess.Popen[bytes]) -> None:
    """Close the reaper's pipes and reap it (told to run nothing, it exits at once)."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_tree(proc: subprocess.Popen[bytes], reaper: bool, wait: float = 0.0) -> None:
    """SIGKILL everything the run started. The reaper does it on SIGUSR1 (it alone sees
    descendants that left the process group); its group gets SIGKILL if it has not exited
    within `wait` seconds (or at once without a reaper)."""
    if reaper and proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if proc.poll() is not None:
                return
            time.sleep(0.01)
        if wait <= 0:
            return
    signal_group(proc, signal.SIGKILL)
