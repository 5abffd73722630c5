"""Secrets never reach the database or the object store, while the script still gets them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from studio.capture.secrets import (
    is_secret_file,
    is_secret_name,
    mask_text,
    redact_argv,
    redact_env,
)
from tests.e2e.helpers import studio, studio_json


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path

AWS = "aws-secret-987654"
SECRETS = {
    "S3_CREDS": "$AWS_SECRET_ACCESS_KEY",  # a secret through a variable
    "UPLOAD_TO": "${AWS_SECRET_ACCESS_KEY}",  # ... even under a harmless name
    "DB_PASS": "hunter2xyz",
    "SVC_KEY": "k-1234567",
    "SESSION_COOKIE": "c-7654321",
    "DATABASE_URL": "postgresql://ada:pw-123456@db.example/x",
    "CONN": "Server=db;User Id=ada;Password=pw-777777;",
    "REPO": "https://tok-555555@github.com/org/repo",
}
LEAKS = [AWS, "hunter2xyz", "k-1234567", "c-7654321", "pw-123456", "pw-777777", "tok-555555",
         "DOTENV-VALUE-1", "PRIVATE-KEY-BODY", "PROD-ENV-VALUE"]  # fmt: skip


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip


def _everything_stored(home: Path) -> bytes:
    """Every byte studio wrote: database (and WAL), objects, caches; not the run's own output."""
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file() and p.name != "output.log")


def test_secrets_are_masked_and_secret_files_left_out(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "train.py", f"""\
        import hashlib, os
        from pathlib import Path
        assert os.environ["S3_CREDS"] == os.environ["UPLOAD_TO"] == "{AWS}"
        digest = hashlib.sha256((os.environ["DB_PASS"] + os.environ["DATABASE_URL"]).encode()).hexdigest()
        assert digest == "{hashlib.sha256(("hunter2xyz" + SECRETS["DATABASE_URL"]).encode()).hexdigest()}"
        assert Path(".env").read_text().startswith("TOKEN=")
        print("script got every secret")
        """)
    write(ws / ".env.prod", "TOKEN=old\n")
    _git(ws, "init", "-q")
    _git(ws, "add", "train.py", ".env.prod")
    _git(ws, "commit", "-qm", "init")
    write(ws / ".env.prod", "TOKEN=PROD-ENV-VALUE\n")  # a tracked secret file, changed
    write(ws / ".env", "TOKEN=DOTENV-VALUE-1\n")
    write(ws / "keys" / "id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nPRIVATE-KEY-BODY\n")
    write(ws / "notes.txt", f"connect with postgresql://ada:pw-123456@db.example/x and {AWS}\n")
    config = tmp_path / "config.yaml"
    config.write_text("env:\n  MODE: fast\n" + "".join(f"  {k}: '{v}'\n" for k, v in SECRETS.items()))
    env = {"AWS_SECRET_ACCESS_KEY": AWS}

    proc = studio("run", "--config", str(config), "-e", "s1", "train.py", cwd=ws, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "script got every secret" in proc.stdout
    notes = [line for line in proc.stderr.splitlines() if "secret-looking files" in line]
    assert len(notes) == 1 and ".env" in notes[0] and "keys/id_rsa" in notes[0] and ".studioml_ignore" in notes[0]

    shown = studio_json("runs", "show", "s1", env=env)
    assert shown["env"]["MODE"] == "fast"
    assert shown["env"]["DATABASE_URL"] == "postgresql://ada:***@db.example/x"
    assert shown["env"]["CONN"] == "Server=db;User Id=ada;Password=***;"
    assert shown["env"]["UPLOAD_TO"] == shown["env"]["S3_CREDS"] == shown["env"]["DB_PASS"] == "***"
    diff = shown["git"]["diff"]
    assert "notes.txt" in diff and "postgresql://ada:***@db.example/x" in diff and ".env" not in diff
    assert shown["git"]["diff_secrets_left_out"] == [".env", ".env.prod", "keys/id_rsa"]

    got = tmp_path / "got"
    studio("artifacts", "get", "s1", "workspace", str(got), check=True)
    assert sorted(p.name for p in got.iterdir()) == ["notes.txt", "train.py"]
    stored = _everything_stored(studio_home)
    leaked = [s for s in LEAKS if s.encode() in stored and s not in ("pw-123456", AWS)]
    assert not leaked
    # notes.txt is ordinary workspace content (the user's own file): it is stored as is, but
    # neither the database nor any other record holds the secrets.
    db = b"".join(p.read_bytes() for p in studio_home.glob("studio.db*"))
    assert not [s for s in LEAKS if s.encode() in db]

    # Opting in: a `!` line in .studioml_ignore records the file, and the note stops naming it.
    write(ws / ".studioml_ignore", "!.env\n")
    proc = studio("run", "--config", str(config), "-e", "s2", "train.py", cwd=ws, env=env)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "secret-looking files" in line]
    assert len(notes) == 1 and "keys/id_rsa" in notes[0] and ".env," not in notes[0] and ".env " not in notes[0]
    got2 = tmp_path / "got2"
    studio("artifacts", "get", "s2", "workspace", str(got2), check=True)
    assert (got2 / ".env").read_text() == "TOKEN=DOTENV-VALUE-1\n" and not (got2 / "keys").exists()
    shown = studio_json("runs", "show", "s2", env=env)
    assert "DOTENV-VALUE-1" in shown["git"]["diff"] and "PROD-ENV-VALUE" not in shown["git"]["diff"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [("DB_PASS", True), ("SVC_KEY", True), ("SESSION_COOKIE", True), ("GITHUBTOKEN", True), ("S3_CREDS", True),
     ("DSN", True), ("AWS_SECRET_ACCESS_KEY", True), ("PWD", False), ("OLDPWD", False), ("MODE", False),
     ("KEYBOARD", False), ("AUTHOR", False), ("MONKEY_COUNT", False), ("TF_SESSION_THREADS", False),
     ("SSL_CERT_FILE", False)],
)  # fmt: skip
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_masking_rules() -> None:
    environ = {"AWS_SECRET_ACCESS_KEY": AWS, "PWD": "/home/ada", "SHORT_KEY": "ab", "HF_HUB_DISABLE_TOKEN": "true",
               "PIN_PASS": "12345678"}  # fmt: skip
    assert redact_env({"FLAG": "true", "N": "12345678"}, environ) == {"FLAG": "true", "N": "12345678"}
    env = redact_env({"A": AWS, "B": f"prefix-{AWS}", "C": "/home/ada", "D": "ab", "E": "ssh://git:pw@h/x",
                      "F": "s3://bucket/path", "G": "redis://:pw-9@cache:6379/0"}, environ)  # fmt: skip
    assert env == {"A": "***", "B": "prefix-***", "C": "/home/ada", "D": "ab", "E": "ssh://git:***@h/x",
                   "F": "s3://bucket/path", "G": "redis://:***@cache:6379/0"}  # fmt: skip
    assert mask_text("https://user:pw@host/x and http://host/y") == "https://***@host/x and http://host/y"
    assert mask_text("url?token=abc&x=1; api_key: zzz") == "url?token=***&x=1; api_key: ***"
    argv = redact_argv(["train.py", "--password", "p1", "--api-key=p2", "--lr", "0.1", "--db", "mysql://u:p3@h/d",
                        AWS], environ)  # fmt: skip
    assert argv == ["train.py", "--password", "***", "--api-key=***", "--lr", "0.1", "--db", "mysql://u:***@h/d", "***"]
    assert json.dumps(argv).count("***") == 4


@pytest.mark.parametrize(
    ("path", "secret"),
    [(".env", True), (".env.local", True), ("prod.env", True), ("a/b/id_rsa", True), ("id_ed25519", True),
     ("tls.pem", True), ("server.key", True), (".netrc", True), ("credentials", True), (".git-credentials", True),
     ("env.py", False), ("keys.py", False), ("id_rsa.pub", False), ("environment.yml", False), ("key.txt", False)],
)  # fmt: skip
def test_secret_files(path: str, secret: bool) -> None:
    assert is_secret_file(path) is secret
