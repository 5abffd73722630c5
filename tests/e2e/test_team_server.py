"""End to end: `studio server` with accounts, `studio users`, `studio login`, and the dashboard's
defences, on real server processes on 127.0.0.1.

Two users on two homes and a worker on a third share one server: each sees every run, neither
can delete the other's, the worker runs both users' queued work. Then what an attacker tries:
DNS rebinding, cross-site writes, `Origin: null`, tokens in query strings, a session without
its CSRF token; and the bad inputs of the commands (wrong, revoked token, not a studio server).
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import studio, studio_env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    home: Path
    proc: subprocess.Popen[str]
    tokens: dict[str, str]
    log: Path
    database: str = ""

    def env(self) -> dict[str, str]:
        return {"STUDIOML_HOME": str(self.home), **({"STUDIOML_DATABASE_URL": self.database} if self.database else {})}

    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.home / 'studio.db'}"


def add_user(home: Path, name: str, *flags: str, database: str = "") -> str:
    env = {"STUDIOML_HOME": str(home), **({"STUDIOML_DATABASE_URL": database} if database else {})}
    proc = studio("users", "add", name, *flags, env=env, check=True)
    token = proc.stdout.strip()
    assert token.startswith("studio_") and len(proc.stdout.splitlines()) == 1
    return token


def start_server(
    home: Path, *flags: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> tuple[str, subprocess.Popen[str], Path]:
    """`studio server` on HOST (another address than loopback is also its allowed host name)."""
    port = free_port(host)
    log = home / "server.log"
    if host != "127.0.0.1":
        flags = ("--host", host, "--allow-host", host, *flags)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "studio", "server", "--port", str(port), *flags],
            env=studio_env({"STUDIOML_HOME": str(home), **(env or {})}), stdout=out, stderr=subprocess.STDOUT,
            text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return url, proc, log
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"studio server did not start: {log.read_text()}")
        time.sleep(0.1)


def serve_team(tmp_path: Path, database: str = "") -> Server:
    home = tmp_path / "server-home"
    home.mkdir()
    tokens = {
        "alice": add_user(home, "alice", database=database),
        "bob": add_user(home, "bob", database=database),
        "root": add_user(home, "root", "--admin", database=database),
        "gpu": add_user(home, "gpu", "--worker", database=database),
    }
    url, proc, log = start_server(home, env={"STUDIOML_DATABASE_URL": database} if database else None)
    return Server(url, home, proc, tokens, log, database)


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Server]:
    server = serve_team(tmp_path)
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=30)


@pytest.fixture
def team_postgres(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    server = serve_team(tmp_path, postgres_url)
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=30)


def login(server: Server, home: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "studio", "login", server.url, "--token-stdin"], input=token + "\n",
        env=studio_env({"STUDIOML_HOME": str(home)}), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_two_users_and_a_worker_share_a_server(team: Server, tmp_path: Path) -> None:
    two_users_and_a_worker(team, tmp_path)


def test_two_users_and_a_worker_share_a_server_on_postgresql(team_postgres: Server, tmp_path: Path) -> None:
    two_users_and_a_worker(team_postgres, tmp_path)


def two_users_and_a_worker(team: Server, tmp_path: Path) -> None:
    storage = str(tmp_path / "shared-objects")
    homes = {name: tmp_path / f"home-{name}" for name in ("alice", "bob", "gpu")}
    for name, home in homes.items():
        proc = login(team, home, team.tokens[name])
        assert proc.returncode == 0, proc.stderr
        assert f"as {name}" in proc.stdout
        kept = home / "credentials.json"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    env = {name: {"STUDIOML_HOME": str(home), "STUDIOML_STORAGE_URL": storage} for name, home in homes.items()}
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('trained')\n")
    for name in ("alice", "bob"):
        proc = studio("run", "-e", f"{name}-direct", "train.py", cwd=ws, env=env[name])
        assert proc.returncode == 0 and "trained" in proc.stdout, proc.stderr
        proc = studio("run", "-e", f"{name}-queued", "--queue", "gpu", "train.py", cwd=ws, env=env[name])
        assert proc.returncode == 0, proc.stderr
    # The worker runs both users' queued work; it records, but it may not delete.
    for _ in range(2):
        proc = studio("worker", "--queue", "gpu", "--single-run", cwd=tmp_path, env=env["gpu"], timeout=120)
        assert proc.returncode == 0, proc.stderr
    from studio.meta import open_meta_store

    store = open_meta_store(team.database_url())
    try:
        for name in ("alice", "bob"):
            for kind in ("direct", "queued"):
                exp = store.get_experiment(f"{name}-{kind}")
                assert exp.owner == name and exp.status.value == "finished", exp
    finally:
        store.close()
    # "My runs" are the logged-in account's.
    mine = studio("runs", "list", "--json", env=env["bob"])
    assert mine.returncode == 0 and "bob-direct" in mine.stdout and "alice-direct" not in mine.stdout, mine.stdout
    # Each sees every run.
    for name in ("alice", "bob"):
        listed = studio("runs", "list", "all", "--json", env=env[name])
        assert listed.returncode == 0, listed.stderr
        for key in ("alice-direct", "bob-direct", "alice-queued", "bob-queued"):
            assert key in listed.stdout
    # Neither can delete the other's; the worker cannot delete anyone's; each deletes their own.
    for name, other in (("alice", "bob"), ("bob", "alice"), ("gpu", "alice")):
        proc = studio("runs", "kill", "--yes", f"{other}-direct", env=env[name])
        assert proc.returncode == 200, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "may not delete" in proc.stderr
    proc = studio("runs", "kill", "--yes", "alice-direct", env=env["alice"])
    assert proc.returncode == 0, proc.stderr
    # ... and the admin reads who did it.
    with httpx.Client(base_url=team.url, headers={"Authorization": f"Bearer {team.tokens['root']}"}) as c:
        items = c.get("/api/audit").json()["items"]
    assert any(i["action"] == "delete" and i["actor"] == "alice" and i["target"] == "alice-direct" for i in items)
    audit = studio("audit", "--json", env=team.env())
    assert audit.returncode == 0 and "alice-direct" in audit.stdout
    # Tokens are never written to the server's log.
    log = team.log.read_text()
    assert not any(token in log for token in team.tokens.values())


def test_bad_tokens_and_urls_are_one_line_errors(team: Server, tmp_path: Path) -> None:
    home = tmp_path / "laptop"
    proc = login(team, home, "studio_wrong")
    assert proc.returncode == 200 and "refused the token" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (home / "credentials.json").exists()
    # A URL that is not a studio server (its health page is JSON, but not studio's session API).
    other = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        proc = subprocess.run(
            [sys.executable, "-m", "studio", "login", f"http://127.0.0.1:{port}", "--token-stdin"], input="x\n",
            env=studio_env({"STUDIOML_HOME": str(home)}), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode != 0 and "is not a studio server" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        other.terminate()
        other.wait()
    # A revoked user: the token that worked stops working at once.
    assert login(team, home, team.tokens["bob"]).returncode == 0
    assert studio("runs", "list", "all", env={"STUDIOML_HOME": str(home)}).returncode == 0
    studio("users", "revoke", "bob", env=team.env(), check=True)
    time.sleep(1.1)  # the server trusts a token it verified for up to a second (accounts.TOKEN_CACHE_S)
    proc = studio("runs", "list", "all", env={"STUDIOML_HOME": str(home)})
    assert proc.returncode == 200 and "revoked" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Rotation: the new token works, the old one does not.
    new = studio("users", "rotate", "bob", env=team.env(), check=True).stdout.strip()
    time.sleep(1.1)
    assert login(team, home, team.tokens["bob"]).returncode == 200
    assert login(team, home, new).returncode == 0
    # An expired token.
    brief = studio("users", "add", "brief", "--expires", "1s", env=team.env(), check=True).stdout.strip()
    time.sleep(1.5)
    proc = login(team, tmp_path / "other-laptop", brief)
    assert proc.returncode == 200 and "expired" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = studio("users", "add", "x", "--expires", "soon", env=team.env())
    assert proc.returncode == 194 and len(proc.stderr.strip().splitlines()) == 1
    # Unknown user, and users commands on a client (an http database) say where to run them.
    proc = studio("users", "revoke", "nobody", env=team.env())
    assert proc.returncode == 195 and "no user 'nobody'" in proc.stderr
    proc = studio("users", "list", env={"STUDIOML_HOME": str(home)})
    assert proc.returncode == 194 and "server's own database" in proc.stderr


def test_dashboard_defences(team: Server) -> None:
    alice = team.tokens["alice"]
    with httpx.Client(base_url=team.url, headers={"Authorization": f"Bearer {alice}"}) as c:
        from studio.entities import Experiment
        from studio.meta import wire

        body = wire.dumps({"args": [Experiment(key="mine", project="p")], "kwargs": {}})
        assert c.post("/api/store/create_experiment", content=body).status_code == 200
    # No token: reads and writes are refused; pages send the browser to the login form.
    assert httpx.get(f"{team.url}/api/experiments").status_code == 401
    assert httpx.delete(f"{team.url}/api/experiments/mine").status_code == 401
    page = httpx.get(f"{team.url}/all", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    # A token in a query string is never read.
    for name in ("token", "access_token", "api_token"):
        assert httpx.get(f"{team.url}/api/experiments", params={name: alice}).status_code == 401
    # DNS rebinding: attacker.example resolving to this server is not answered, even with a token.
    rebound = {"Host": f"attacker.example:{team.url.rsplit(':', 1)[1]}", "Authorization": f"Bearer {alice}"}
    r = httpx.delete(f"{team.url}/api/experiments/mine", headers={**rebound, "Origin": "http://attacker.example"})
    assert r.status_code == 403 and "not served here" in r.json()["detail"]
    assert httpx.get(f"{team.url}/api/experiments", headers=rebound).status_code == 403
    # Browser login: HttpOnly, SameSite=Strict session cookie; the token is not in the page.
    browser = httpx.Client(base_url=team.url)
    r = browser.post("/login", data={"token": alice, "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = browser.get("/all", headers={"Accept": "text/html"})
    assert page.status_code == 200 and alice not in page.text and "alice" in page.text
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert csrf is not None
    # Writes from the session need the CSRF token; a cross-site or opaque origin is refused.
    assert browser.post("/api/experiments/mine/stop").status_code == 403
    assert browser.post("/api/experiments/mine/stop", headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    for origin in ("null", "http://attacker.example"):
        r = browser.post("/api/experiments/mine/stop", headers={"X-CSRF-Token": csrf.group(1), "Origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"], origin
    from studio.meta import open_meta_store

    store = open_meta_store(f"sqlite:///{team.home / 'studio.db'}")
    try:
        assert store.get_experiment("mine").status.value == "queued"  # none of that stopped it
        r = browser.post("/api/experiments/mine/stop", headers={"X-CSRF-Token": csrf.group(1), "Origin": team.url})
        assert r.status_code == 200 and r.json()["status"] == "stopped"
        # Logging out ends the session.
        browser.post("/logout")
        assert browser.get("/api/experiments").status_code == 401
    finally:
        store.close()
        browser.close()
    assert alice not in team.log.read_text()


def test_guest_mode_reads_only_and_plain_http_warns(tmp_path: Path) -> None:
    home = tmp_path / "server-home"
    home.mkdir()
    add_user(home, "alice")
    url, proc, log = start_server(home, "--guest", "--host", "0.0.0.0", "--allow-host", "127.0.0.1")  # noqa: S104
    try:
        assert httpx.get(f"{url}/api/experiments").status_code == 200
        assert httpx.get(f"{url}/api/session").json()["role"] == "guest"
        r = httpx.post(f"{url}/api/store/create_experiment", content=b'{"args":[],"kwargs":{}}')
        assert r.status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "WARNING" in log.read_text() and "plain http" in log.read_text()


def test_credentials_file_is_private_from_the_start(tmp_path: Path) -> None:
    from studio.credentials import save_token, token_for

    old = os.umask(0)
    try:
        path = save_token(tmp_path, "https://s.example/", "studio_t", "alice")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_for(tmp_path, "https://s.example") == "studio_t"
