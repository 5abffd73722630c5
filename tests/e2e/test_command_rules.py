"""Every `studio` command has a rule for who may change what through it, and a test of who may not.

COMMAND_RULES names each command of the CLI (walked from the click group, so a new command
without a rule fails `test_every_command_has_a_rule`) with the rule that governs it:

- ``read``: changes nothing anywhere.
- ``local``: changes only this machine's own files (a kept token, the dashboard it serves).
- ``creates``: creates experiments, owned by the caller (on a team server: the authenticated
  user, whatever the client sends).
- ``owner``: changes or deletes existing experiments: their owner or an admin only.
- ``worker``: claims and records queued work: workers and admins only.
- ``admin``: the server's own database or every user's objects: run on the server machine,
  or by an admin through the server.
- ``cluster``: acts on an outside scheduler or cloud account with that account's own
  credentials (Slurm, EC2/GCE); studio's store rules apply to what those workers record.

`test_who_may_not` then runs, as another user of a real team server, every ``owner``,
``worker`` and ``admin`` command against alice's runs, and checks the refusal (exit 200 or a
usage error saying where to run it, one line) and that nothing of alice's changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.e2e.helpers import studio
from tests.e2e.test_team_server import Server, login, serve_team

COMMAND_RULES: dict[str, str] = {
    "artifacts get": "read",
    "audit": "admin",
    "cloud agent": "worker",
    "cloud down": "cluster",
    "cloud list": "read",
    "db status": "read",
    "db upgrade": "admin",
    "gc": "admin",
    "import mlflow": "creates",
    "login": "local",
    "logout": "local",
    "queue list": "read",
    "queue purge": "owner",
    "queue show": "read",
    "remote worker": "worker",
    "rerun": "creates",
    "run": "creates",
    "runs kill": "owner",
    "runs list": "read",
    "runs logs": "read",
    "runs note": "owner",
    "runs rename": "owner",
    "runs show": "read",
    "runs stop": "owner",
    "runs tag": "owner",
    "server": "local",
    "start remote worker": "worker",
    "sweep list": "read",
    "sweep resume": "creates",
    "sweep show": "read",
    "ui": "local",
    "users add": "admin",
    "users list": "admin",
    "users revoke": "admin",
    "users rotate": "admin",
    "worker": "worker",
    "workers launch": "cluster",
    "workers list": "read",
    "workers stop": "cluster",
}
RULES = {"read", "local", "creates", "owner", "worker", "admin", "cluster"}


def cli_commands() -> set[str]:
    from studio.cli.main import cli

    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: list[str]) -> Iterator[str]:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path)

    return set(walk(cli, []))


def test_every_command_has_a_rule() -> None:
    commands = cli_commands()
    assert commands - set(COMMAND_RULES) == set(), "commands without a rule in COMMAND_RULES"
    assert set(COMMAND_RULES) - commands == set(), "rules for commands that no longer exist"
    assert set(COMMAND_RULES.values()) <= RULES


# Each refused command as bob (a user), gpu (a worker) or from a client at all, against alice's
# runs: (argv, who, expected exit code, a word of the one-line error).
REFUSED: list[tuple[str, list[str], str, int, str]] = [
    ("runs kill", ["runs", "kill", "--yes", "a-done"], "bob", 200, "may not"),
    ("runs kill", ["runs", "kill", "--yes", "a-done"], "gpu", 200, "may not"),
    ("runs stop", ["runs", "stop", "a-queued"], "bob", 200, "may not"),
    ("runs note", ["runs", "note", "a-done", "defaced"], "bob", 200, "may not"),
    ("runs rename", ["runs", "rename", "a-done", "defaced"], "bob", 200, "may not"),
    ("runs tag", ["runs", "tag", "a-done", "defaced"], "bob", 200, "may not"),
    ("worker", ["worker", "--queue", "q", "--single-run", "--timeout", "5"], "bob", 200, "--worker"),
    ("gc", ["gc", "--dry-run"], "bob", 200, "may not"),
    ("audit", ["audit"], "bob", 200, "admin"),
    ("users add", ["users", "add", "mallory", "--admin"], "bob", 194, "server's own database"),
    ("users list", ["users", "list"], "bob", 194, "server's own database"),
    ("users revoke", ["users", "revoke", "alice"], "bob", 194, "server's own database"),
    ("users rotate", ["users", "rotate", "alice"], "bob", 194, "server's own database"),
    ("db upgrade", ["db", "upgrade"], "bob", 194, "server"),
]


@pytest.fixture(scope="module")
def team_with_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, dict[str, str]], Path]]:
    tmp = tmp_path_factory.mktemp("rules")
    team = serve_team(tmp)
    homes = {name: tmp / f"home-{name}" for name in ("alice", "bob", "gpu")}
    env = {name: {"STUDIOML_HOME": str(home), "HOME": str(home)} for name, home in homes.items()}
    for name, home in homes.items():
        assert login(team, home, team.tokens[name]).returncode == 0
    ws = tmp / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('trained')\n")
    studio("run", "-e", "a-done", "train.py", cwd=ws, env=env["alice"], check=True)
    studio("run", "-e", "a-queued", "--queue", "q", "train.py", cwd=ws, env=env["alice"], check=True)
    try:
        yield team, env, ws
    finally:
        team.proc.terminate()
        team.proc.wait(timeout=30)


def alice_state(env: dict[str, dict[str, str]]) -> list[dict[str, object]]:
    keep = ("key", "status", "owner", "display_name", "tags", "note")
    out = []
    for key in ("a-done", "a-queued"):
        shown = json.loads(studio("runs", "show", key, "--json", env=env["alice"], check=True).stdout)
        out.append({k: shown.get(k) for k in keep})
    return out


@pytest.mark.parametrize(("command", "argv", "who", "code", "word"), REFUSED, ids=[f"{r[0]}-{r[2]}" for r in REFUSED])
def test_who_may_not(
    team_with_runs: tuple[Server, dict[str, dict[str, str]], Path],
    command: str, argv: list[str], who: str, code: int, word: str,
) -> None:
    assert COMMAND_RULES[command] in ("owner", "worker", "admin")
    team, env, ws = team_with_runs
    before = alice_state(env)
    proc = studio(*argv, cwd=ws, env=env[who], timeout=60)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and word in proc.stderr, proc.stderr
    assert alice_state(env) == before


def test_rerunning_another_users_run_makes_a_run_of_your_own(
    team_with_runs: tuple[Server, dict[str, dict[str, str]], Path],
) -> None:
    """`studio rerun` reads what anyone may read (the stored workspace) and creates a new run
    owned by the caller; nothing of the original owner's changes."""
    team, env, ws = team_with_runs
    before = alice_state(env)
    proc = studio("rerun", "a-done", "-e", "b-rerun", cwd=ws, env=env["bob"], check=True)
    assert "trained" in proc.stdout
    shown = json.loads(studio("runs", "show", "b-rerun", "--json", env=env["bob"], check=True).stdout)
    assert shown["owner"] == "bob" and shown["status"] == "finished", shown
    assert alice_state(env) == before


def test_purging_a_shared_queue_deletes_only_your_own(team_with_runs: tuple[Server, dict[str, dict[str, str]], Path]) -> None:
    team, env, ws = team_with_runs
    studio("run", "-e", "b-queued", "--queue", "q", "train.py", cwd=ws, env=env["bob"], check=True)
    proc = studio("queue", "purge", "--yes", "q", "--json", env=env["bob"], check=True)
    result = json.loads(proc.stdout)
    assert result["deleted"] == ["b-queued"] and result["others"] == ["a-queued"], result
    assert [s["status"] for s in alice_state(env)] == ["finished", "queued"]
    # Every command the table says only owners, workers or admins may use has a refusal above.
    guarded = {c for c, rule in COMMAND_RULES.items() if rule in ("owner", "admin")} - {"queue purge"}
    untested = guarded - {r[0] for r in REFUSED}
    assert untested == set(), f"owner/admin commands without a who-may-not test: {sorted(untested)}"
