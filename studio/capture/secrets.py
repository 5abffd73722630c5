"""What counts as a secret, and how studio keeps secrets out of what it records.

Three rules, applied to everything a run records (the config's `env:` values, the git diff,
installed packages' lines, the command line):

1. **By name**: a variable whose name has a secret-looking word (`*_KEY`, `DB_PASS`,
   `*_TOKEN`, `*_COOKIE`, `*SECRET*`, `*PASSWORD*`, `AUTH`, `CREDS`, `DSN`, ...) has its
   value masked, and so does every recorded text that contains the value of such a variable
   of the environment (`S3_CREDS: $AWS_SECRET_ACCESS_KEY` records `***`).
2. **In URLs and connection strings**: `scheme://user:password@host` keeps the user and
   loses the password (http(s) loses the whole user info, often a token), and
   `Password=...;` / `?token=...` style pairs lose their value.
3. **Secret files** (`.env`, `.env.*`, private keys, `.netrc`, credential files: see
   `SECRET_FILES`) stay out of the workspace capture and the stored git diff, unless a
   `!name` line in `.studioml_ignore` re-includes them.

Masked text reads `***`. Masking only ever shortens what is recorded: it never touches what
the script itself receives.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence

MASK = "***"

# Words that make a variable name secret when they are one of its `_`-separated parts...
_SECRET_PARTS = frozenset({
    "KEY", "KEYS", "APIKEY", "SECRET", "SECRETS", "TOKEN", "TOKENS", "PASS", "PASSWD", "PASSWORD",
    "PASSPHRASE", "PWD", "PW", "CREDS", "CREDENTIAL", "CREDENTIALS", "COOKIE", "COOKIES",
    "AUTH", "PRIVATE", "DSN", "SALT", "SIGNATURE", "OTP", "BEARER", "JWT",
})  # fmt: skip
# ...or anywhere in it (`GITHUBTOKEN`, `MYPASSWORD`). Kept narrow on purpose: a masked value
# does not travel to a worker (the worker's own `env:` section supplies secrets).
_SECRET_SUBSTRINGS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "APIKEY", "CREDENTIAL", "COOKIE", "PRIVATE_KEY")
# Names that contain such a part but are not secrets.
_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "KEYTIMEOUT"})
# Shorter values of secret variables are not searched for in other text (too many false hits:
# `HF_HUB_DISABLE_TOKEN=true` must not mask every "true" of a diff); nor are plain numbers.
MIN_SECRET_LEN = 8

# Basename patterns of files that hold secrets (fnmatch, case-sensitive as on Linux).
SECRET_FILES: tuple[str, ...] = (
    ".env", ".env.*", "*.env",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_rsa_*", "*.pem", "*.key", "*.p12", "*.pfx",
    "*.jks", "*.keystore", ".netrc", "_netrc", ".pgpass", ".git-credentials", ".pypirc", ".npmrc",
    "credentials", "credentials.json", "*.credentials", "secrets.yaml", "secrets.yml", "secrets.json",
    "service-account*.json", ".htpasswd",
)  # fmt: skip

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/@:'\"]*)(?::(?P<pw>[^\s/@'\"]*))?@")
_PAIR = re.compile(
    r"(?P<name>\b[A-Za-z_\-]*(?:password|passwd|pwd|pass|secret|token|apikey|api_key|api-key|accountkey|"
    r"sharedaccesskey|sharedaccesssignature|sig|auth|key|credential|cookie)\s*[=:]\s*)(?P<value>[^\s;&,'\"]+)",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)  # a pure function of a name, asked for every variable
def is_secret_name(name: str) -> bool:
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    if any(s in upper for s in _SECRET_SUBSTRINGS):
        return True
    return any(part in _SECRET_PARTS for part in re.split(r"[^A-Z0-9]+", upper))


def secret_values(environ: Mapping[str, str] | None = None, *more: Mapping[str, str]) -> list[str]:
    """Values of secret-named variables (of the environment and of `more` mappings), longest
    first so that a secret containing another is masked whole."""
    found: set[str] = set()
    for mapping in (os.environ if environ is None else environ, *more):
        for name, value in mapping.items():
            if len(value) >= MIN_SECRET_LEN and not value.isdigit() and is_secret_name(name):
                found.add(value)
    return sorted(found, key=len, reverse=True)


def mask_text(text: str, secrets: Sequence[str] = (), pairs: bool = True) -> str:
    """`text` with known secret values, URL credentials and (with `pairs`) `password=...`
    pairs masked. Source code (a diff) is masked without `pairs`, which would mangle it."""
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    if "@" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if not pairs:
        return text
    return _PAIR.sub(lambda m: m.group("name") + MASK if m.group("value") != MASK else m.group(0), text)


def _mask_userinfo(m: re.Match[str]) -> str:
    scheme, user, pw = m.group("scheme"), m.group("user"), m.group("pw")
    if scheme.lower().rstrip(":/") in ("http", "https", "ftp", "ftps"):
        return f"{scheme}{MASK}@" if (user or pw) else m.group(0)  # a token as user: all of it
    if pw is None or pw == MASK:
        return m.group(0)
    return f"{scheme}{user}:{MASK}@"


def redact_env(env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What of the config's `env:` section may be recorded: every name; a value unless its
    name looks secret, and with secrets inside it masked (values of secret-named variables
    of `environ` or of `env` itself, URL passwords, `password=` pairs)."""
    if not env:  # nothing to record (the usual case): no need to look for secrets
        return {}
    secrets = secret_values(environ, env)
    return {k: (MASK if is_secret_name(k) else mask_text(str(v), secrets)) for k, v in env.items()}


def redact_argv(argv: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """A command line for the record: `--password X` / `--api-key=X` values, known secret
    values and URL credentials masked."""
    secrets = secret_values(environ)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if arg.startswith("-") and not arg.startswith("---"):
            name, eq, _value = arg.lstrip("-").partition("=")
            if is_secret_name(name):
                if eq:
                    out.append(arg[: arg.index("=") + 1] + MASK)
                else:
                    out.append(arg)
                    hide_next = True
                continue
        out.append(mask_text(arg, secrets))
    return out


def is_secret_file(path: str) -> bool:
    """True if the file at `path` (a POSIX relative path or a name) is a well-known secret."""
    return _is_secret_file_name(path.rstrip("/").rpartition("/")[2])


@functools.lru_cache(maxsize=4096)  # asked for every file of every capture
def _is_secret_file_name(name: str) -> bool:
    return _secret_file_re().match(name) is not None


@functools.cache
def _secret_file_re() -> re.Pattern[str]:
    # Compiled on first use (~0.5 ms): the workspace rules ask only about names that one of
    # their own patterns matches first, so a run whose files none can match never needs it.
    return re.compile("|".join(fnmatch.translate(p) for p in SECRET_FILES))


__all__ = ["MASK", "SECRET_FILES", "is_secret_file", "is_secret_name", "mask_text", "redact_argv", "redact_env",
           "secret_values"]
