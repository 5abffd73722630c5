"""The run's reaper: a tiny process between the supervisor and the script (Linux).

    supervisor -> reaper (child subreaper, own session) -> script -> its children, daemons ...

Run as `python -I -S _reaper.py SUPERVISOR_PID ARGV...`: a standalone program (standard
library only, no `studio` import, no site) so it starts in a few milliseconds. It exists so
that nothing a run starts outlives the run, even when the supervisor is SIGKILLed:

- it is a child subreaper (PR_SET_CHILD_SUBREAPER): every descendant of the script whose
  parent dies, double-forked daemons included, is reparented to it rather than to init, so
  it can always find and kill what is left;
- its parent-death signal (PR_SET_PDEATHSIG, SIGUSR2) tells it when the supervisor dies,
  however it dies: it then kills the whole tree with SIGKILL and exits;
- SIGUSR1 from the supervisor (stop escalation) kills the whole tree with SIGKILL;
- when the script exits on its own, what it left running gets SIGTERM, then SIGKILL after
  a short grace, and the reaper exits with the script's status (dying of the same signal if
  the script was killed by one), so the supervisor sees exactly what the script did.

Started ahead (`SUPERVISOR_PID -` instead of ARGV): the supervisor starts the reaper while it
still captures the workspace or fills a worker's directory, so its interpreter start is off
the run's critical path. It then reads what to run from stdin (`read_launch`) and starts the
script with stdin on /dev/null; stdin closed with nothing written means "not needed": it
exits at once, running nothing.

Warm start (`SUPERVISOR_PID - ARGV...`: the command line the run is expected to have): the
reaper also starts ARGV itself at once, as the script's process, with stdin on /dev/null, and
`warm/sitecustomize.py` holds it, interpreter started, until the launch arrives (see there).
If the launch has that command line, the same folder, and the same environment but for
studio's own STUDIOML_* variables (and PYTHONUNBUFFERED=1, which the run always has), it is
passed on and that process is the script; otherwise that process is killed unstarted and the
script starts the usual way. STUDIOML_WARM_START=0 turns warm starts off.

SIGINT/SIGTERM/SIGHUP reach the script from the supervisor through the process group that
the reaper and the script share; the reaper itself ignores them. The script starts with
SIGINT at its default even where the supervisor inherited it ignored (a shell's background
job): SIGINT is studio's stop request.
"""

from __future__ import annotations

import os
import sys
import time

# Every run starts this interpreter before its script: it imports what it needs and no more.
# `signal` (the module) imports `enum`, and `typing` pulls in functools and collections: some
# 10 ms of a trivial run at a light load. The C module underneath has all it uses here.
try:
    import _signal as signal
except ImportError:  # not CPython
    import signal  # type: ignore[no-redef]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 1.0  # seconds leftovers get between SIGTERM and SIGKILL after the script exited


class Doomed(Exception):
    pass


def _prctl(option: int, value: int) -> int:
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


def children() -> list[int]:
    """Our live children (direct: orphans of the tree are reparented to us)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        pass
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(name))
    return found


def reap(state: dict[str, bool], script: int, status: int | None) -> int | None:
    """Kill and reap every descendant; returns the script's wait status if seen here."""
    deadline = time.monotonic() + (0.0 if state["hard"] else GRACE)
    signalled: dict[int, int] = {}
    while True:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return status
            if pid == 0:
                break
            if pid == script and status is None:
                status = st
        sig = signal.SIGKILL if state["hard"] or time.monotonic() >= deadline else signal.SIGTERM
        for pid in children():
            if signalled.get(pid) != sig:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                signalled[pid] = sig
        time.sleep(0.01)


#: SIGINT/SIGTERM/SIGHUP that reached the reaper before the script existed (a stop asked for
#: right at launch, meant for the group the script is about to join): passed on once it does.
_EARLY: list[int] = []
_STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ignore(signum: int, frame: object) -> None:
    if signum not in _EARLY:
        _EARLY.append(signum)


def read_launch() -> tuple[list[str], str | None, dict[str, str] | None, bytes] | None:
    """(argv, cwd, env, message) from stdin: NUL-separated `cwd`, the number of arguments,
    the arguments, then `NAME=VALUE` pairs (see `studio.runner.process.Prestarted`); None if
    stdin closed with nothing written."""
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return None
    message = b"".join(chunks)
    fields = [os.fsdecode(f) for f in message.split(b"\0")]
    count = int(fields[1])
    argv = fields[2:2 + count]
    env = dict(f.partition("=")[::2] for f in fields[2 + count:] if f)
    return argv, fields[0], env, message


WARM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm")


def _warm_env() -> dict[str, str]:
    """The environment a warm start begins with: the run's, as far as it is known ahead."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


def start_warm(argv: list[str]) -> tuple[int, int] | None:
    """Start `argv` held by `warm/sitecustomize.py`: (pid, the pipe's write end), or None."""
    if os.environ.get("STUDIOML_WARM_START", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if not argv or not os.path.isdir(WARM):
        return None
    env = _warm_env()
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = WARM + (os.pathsep + path if path else "")
    read, write = os.pipe()
    env["STUDIOML_WARM_FD"] = str(read)
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:
        try:
            os.close(write)
            os.set_inheritable(read, True)
            _exec_script(argv, None, env)
        except BaseException:  # noqa: BLE001 - the child must never return into main()
            pass
        os._exit(127)
    os.close(read)
    return pid, write


def warm_fits(argv: list[str], cwd: str | None, env: dict[str, str] | None, expected: list[str]) -> bool:
    """Whether the launch is what the warm start began (see the module's docstring)."""
    if argv != expected or env is None:
        return False
    if cwd and os.path.realpath(cwd) != os.path.realpath(os.getcwd()):
        return False

    def outside(mapping: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in mapping.items() if not k.startswith("STUDIOML_")}

    return outside(env) == outside(_warm_env())


def pass_launch(write: int, message: bytes) -> bool:
    """Hand the launch to the warm start; False if it is gone (it then gets SIGKILL)."""
    try:
        view = memoryview(message)
        while view:
            view = view[os.write(write, view):]
        return True
    except OSError:
        return False
    finally:
        os.close(write)


def _exec_script(command: list[str], cwd: str | None, env: dict[str, str] | None) -> None:
    """In the forked child: what the script starts with, then exec (raises if it cannot).
    The stop signals take their default action before they are unblocked, so one already
    sent to the group stops the script (as exec would leave them; nohup's SIGHUP stays
    ignored)."""
    for sig in _STOPS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if env is not None:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if cwd:
            os.chdir(cwd)
        os.execvpe(command[0], command, env)
    os.execvp(command[0], command)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    supervisor = int(argv[1])
    command = argv[2:]
    cwd: str | None = None
    env: dict[str, str] | None = None
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    state = {"hard": False, "waiting": True}

    def doom(signum: int, frame: object) -> None:
        state["hard"] = True
        if state["waiting"]:
            raise Doomed()

    signal.signal(signal.SIGUSR1, doom)
    signal.signal(signal.SIGUSR2, doom)
    _prctl(PR_SET_PDEATHSIG, signal.SIGUSR2)
    inherited_hup = signal.getsignal(signal.SIGHUP)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig != signal.SIGHUP or inherited_hup != signal.SIG_IGN:  # nohup: the script keeps ignoring it
            signal.signal(sig, _ignore)
    if os.getppid() != supervisor:  # the supervisor died before the parent-death signal was set
        return 128 + signal.SIGKILL
    script = 0
    if command[:1] == ["-"]:  # started ahead: wait for what to run
        expected = command[1:]
        warm = None
        try:
            warm = start_warm(expected) if expected else None
            launch = read_launch()
        except Doomed:
            launch = None
        if launch is None:
            if warm is not None:
                _kill(warm[0])
                os.close(warm[1])
                os.waitpid(warm[0], 0)
            return 128 + signal.SIGKILL if state["hard"] else 0
        command, cwd, env, message = launch
        if warm is not None:  # else it never runs (SIGKILL; reaped below, as not the script)
            pid, write = warm
            if not warm_fits(command, cwd, env, expected):
                _kill(pid)
                os.close(write)
            elif pass_launch(write, message):
                script = pid
            else:
                _kill(pid)
    if script:  # the warm start got any stop sent to the group itself: it was in it
        _EARLY.clear()
    else:
        # A stop sent to the group before the fork reaches the reaper alone: blocked across
        # the fork, those pending then (and those the handler saw) are passed on; one sent
        # after it reaches the script too (it unblocks them with their default action).
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        early = set(_EARLY) | (signal.sigpending() & set(_STOPS))
        script = os.fork()
        if script == 0:
            try:
                _exec_script(command, cwd, env)
            except BaseException as exc:  # noqa: BLE001 - the child must never return into main()
                os.write(2, f"studio: could not start {command[0]}: {exc}\n".encode())
            os._exit(127)
        _EARLY.clear()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
        for signum in sorted(early):
            try:
                os.kill(script, signum)
            except ProcessLookupError:
                pass
    status = None
    try:
        while status is None:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == script:
                status = st
    except Doomed:
        pass
    state["waiting"] = False
    status = reap(state, script, status)
    if status is None:
        return 128 + signal.SIGKILL
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.kill(os.getpid(), signum)
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    # Nothing is buffered (messages go out with os.write): the supervisor waits for this exit,
    # so the interpreter's teardown is skipped.
    code = main(sys.argv)
    os._exit(code)
