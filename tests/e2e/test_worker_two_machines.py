"""Two machines: a submitter and a worker that share only a PostgreSQL URL and an s3:// URL.

Each "machine" has its own STUDIOML_HOME and HOME; the object store is a real S3-compatible
HTTP server (moto_server) reached through the normal S3 client path; the metadata store is a
real PostgreSQL server. Afterwards every table of the database is dumped and searched for the
secrets either machine had (S3 secret key, database password, a token in the config's env).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.e2e.helpers import studio
from tests.e2e.test_worker import write
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Storage

API_TOKEN = "tok-studio-4b1d9e0c7a"


def _psycopg_dsn(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port} user={u.username} dbname={u.database}" + (
        f" password={u.password}" if u.password else "")


def with_password_role(postgres_url: str) -> tuple[str, str]:
    """A login role with a password that owns the test database; returns (url, password)."""
    import psycopg

    role, password = f"studio_{uuid.uuid4().hex[:8]}", f"pg-secret-{uuid.uuid4().hex[:12]}"
    u = make_url(postgres_url)
    with psycopg.connect(_psycopg_dsn(postgres_url), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'ALTER DATABASE "{u.database}" OWNER TO {role}')
    return u.set(username=role, password=password).render_as_string(hide_password=False), password


def dump_database(url: str) -> str:
    import psycopg

    out = []
    with psycopg.connect(_psycopg_dsn(url)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out.append(f"{table}: {row!r}")
    return "\n".join(out)


def machine(root: Path, db_url: str, storage: S3Storage, env_section: str = "") -> dict[str, str]:
    home, user_home = root / "studiohome", root / "home"
    user_home.mkdir(parents=True)
    write(home / "config.yaml", f"database:\n  url: {db_url}\nstorage:\n  url: {storage.url}\n"
                                f"worker:\n  lease: 5\n  heartbeat: 1\n{env_section}")
    return {"STUDIOML_HOME": str(home), "HOME": str(user_home), **storage.env}


def test_submit_on_one_machine_run_on_another(tmp_path: Path, postgres_url: str, s3_storage: S3Storage) -> None:
    db_url, db_password = with_password_role(postgres_url)
    submitter = machine(tmp_path / "a", db_url, s3_storage, f"env:\n  API_TOKEN: {API_TOKEN}\n  MODE: fast\n")
    worker = machine(tmp_path / "b", db_url, s3_storage)
    proj = tmp_path / "a" / "proj"
    write(proj / "data.csv", "x,y\n1,2\n")
    write(proj / "train.py", """\
        import os, sys
        from studio import fs_tracker
        rows = open("data.csv").read().splitlines()
        out = fs_tracker.get_artifact("results")
        open(os.path.join(out, "summary.json"), "w").write('{"rows": %d}' % len(rows))
        print("rows", len(rows), "mode", os.environ.get("MODE"), "token", os.environ.get("API_TOKEN", "none"))
        print("home", os.environ["STUDIOML_HOME"])
        """)
    proc = studio("run", "--queue", "gpu-box", "--capture", "results:results", "train.py", cwd=proj, env=submitter)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip().splitlines()[-1]

    run = studio("remote", "worker", "--queue", "gpu-box", "--single-run", env=worker, cwd=tmp_path / "b", timeout=120)
    assert run.returncode == 0, run.stderr

    shown = json.loads(studio("runs", "show", key, "--json", env=submitter, check=True).stdout)
    assert shown["status"] == "finished" and shown["attempts"] == 1 and shown["queue"] == "gpu-box"
    logs = studio("runs", "logs", key, env=submitter, check=True).stdout
    assert "rows 2 mode fast token none" in logs  # non-secret env travels; the token does not
    assert f"home {worker['STUDIOML_HOME']}" in logs
    got = tmp_path / "a" / "got"
    studio("artifacts", "get", key, "results", str(got), env=submitter, check=True)
    assert json.loads((got / "summary.json").read_text()) == {"rows": 2}
    assert not (proj / "results").exists() or not any((proj / "results").iterdir())
    assert s3_storage.keys(), "nothing was stored in S3"
    for home in (submitter["STUDIOML_HOME"], worker["STUDIOML_HOME"]):
        assert not (Path(home) / "objects").exists() and not (Path(home) / "studio.db").exists()
    listed = json.loads(studio("queue", "list", "--json", env=worker, check=True).stdout)
    assert listed == [{"name": "gpu-box", "total": 1, "counts": {"finished": 1}, "workers": []}]

    dump = dump_database(db_url)
    assert key in dump and "gpu-box" in dump  # the dump does see the records
    for secret in (SECRET_KEY, ACCESS_KEY, db_password, API_TOKEN):
        assert secret not in dump
