"""Warm start: the script's interpreter, started ahead, waits here until studio says go.

`studio run` knows the script's exact command line (`python /ws/train.py --epochs 30`) before
it has captured the workspace. Its reaper (`studio/runner/_reaper.py`) starts that very command
at once, with this folder first on PYTHONPATH and STUDIOML_WARM_FD naming a pipe, so the
interpreter's own start (site, .pth files: tens of milliseconds) runs on the other core while
the workspace is captured and the run recorded. `site` imports this module while the
interpreter starts, before anything of the script's is read. Here the process waits on the
pipe:

- end of file with nothing written: the run was not started (bad input, Ctrl-C): exit 0,
  having run nothing of the user's;
- the launch (studio's NUL-separated `cwd`, argument count, arguments, `NAME=VALUE` pairs):
  the environment becomes exactly the run's, the working directory the run's, this folder
  leaves sys.path and sys.modules, the user's own `sitecustomize` (if any) is imported as
  `site` would have, and the interpreter goes on to run the script itself, natively: the same
  `__main__`, `sys.argv`, `sys.path[0]`, tracebacks, exit status and `ps` line as a cold start.

The reaper sends the launch only when the run's command line, folder and environment at start
(everything but studio's own STUDIOML_* variables) are the ones this interpreter started with;
otherwise it kills this process and starts the script the usual way. Nothing here may return
before the launch arrives: any failure ends the process (never the script running early).
"""

import os
import sys


def _await_launch() -> None:
    try:
        fd = int(os.environ["STUDIOML_WARM_FD"])
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(fd)
        if not chunks:  # not needed: run nothing
            os._exit(0)
        fields = b"".join(chunks).split(b"\0")
        cwd, count = fields[0], int(fields[1])
        env = dict(field.partition(b"=")[::2] for field in fields[2 + count:] if field)
        environ = os.environb
        for name in [name for name in environ if name not in env]:
            del environ[name]
        for name, value in env.items():
            if environ.get(name) != value:
                environ[name] = value
        if cwd:
            os.chdir(cwd)
    except KeyboardInterrupt:  # a stop sent to the run's group right at launch
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # dies of it, as a script stopped while starting does
        os._exit(130)
    except BaseException as exc:  # noqa: BLE001 - the script must never start half-prepared
        try:
            os.write(2, f"studio: could not start the script: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(127)


if "STUDIOML_WARM_FD" in os.environ:
    _await_launch()

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if not entry or os.path.abspath(entry) != _here]
sys.path_importer_cache.pop(_here, None)
del sys.modules[__name__]
del _here, _await_launch
# The user's own sitecustomize, found as `site` would have found it: an ImportError naming
# it (there is none) and any other error reach `site`, which handles them as it always does.
import sitecustomize  # noqa: E402,F401
