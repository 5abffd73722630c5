"""Where a worker gets its server token: the environment, a file, or the cloud's secret store.

    --token-from env:NAME                 another environment variable
    --token-from file:/run/secrets/token  a mounted secret (Docker, Kubernetes)
    --token-from ssm:/studio/worker-token AWS SSM Parameter Store (SecureString, decrypted)
    --token-from secretsmanager:NAME      AWS Secrets Manager (SecretString)
    --token-from gcpsecret:projects/P/secrets/S[/versions/V]   GCP Secret Manager (REST, ADC)

Nothing is baked into images, user data or launch templates: on a cloud instance the
instance role (AWS) grants read access to exactly that parameter, and the worker reads it at
start. Without --token-from a worker uses `STUDIOML_API_TOKEN`, as every studio command does.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.exceptions import MissingDependencyError, StudioError, UsageError

SCHEMES = ("env", "file", "ssm", "secretsmanager", "gcpsecret")


def resolve_token(source: str) -> str:
    """The token `source` names; a one-line StudioError when it cannot be read."""
    scheme, _, name = source.partition(":")
    if scheme not in SCHEMES or not name:
        raise UsageError(f"--token-from {source!r}: use one of {', '.join(s + ':NAME' for s in SCHEMES)}")
    if scheme == "env":
        value = os.environ.get(name)
        if not value:
            raise UsageError(f"--token-from {source}: the environment variable {name} is not set")
        return value
    if scheme == "file":
        try:
            return Path(name).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-from {source}: cannot read {name}: {exc.strerror}") from None
    if scheme == "gcpsecret":
        return _gcp_secret(source, name)
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        from studio.cloud.config import install_hint

        raise MissingDependencyError(f"--token-from {scheme}: needs boto3: {install_hint('aws')}") from None
    try:
        if scheme == "ssm":
            reply = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
            return str(reply["Parameter"]["Value"])
        reply = boto3.client("secretsmanager").get_secret_value(SecretId=name)
        return str(reply["SecretString"])
    except botocore.exceptions.ClientError as exc:
        raise StudioError(f"--token-from {source}: {exc.response['Error'].get('Message') or exc}; "
                          "check that the instance role may read it") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise StudioError(f"--token-from {source}: {exc}") from None


def _gcp_secret(source: str, name: str) -> str:
    """Secret Manager's `versions/V:access` over REST with Application Default Credentials
    (on GCE: the instance's service account through the metadata server)."""
    import base64

    try:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession
    except ImportError:
        from studio.cloud.config import install_hint

        raise MissingDependencyError(f"--token-from gcpsecret: needs google-auth: {install_hint('gcp')}") from None
    if "/versions/" not in name:
        name += "/versions/latest"
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        reply = AuthorizedSession(credentials).get(f"https://secretmanager.googleapis.com/v1/{name}:access", timeout=30)
    except Exception as exc:
        raise StudioError(f"--token-from {source}: {exc}") from None
    if reply.status_code != 200:
        raise StudioError(f"--token-from {source}: Secret Manager answered {reply.status_code}; check that the "
                          "instance's service account may access it")
    return base64.b64decode(reply.json()["payload"]["data"]).decode().strip()
