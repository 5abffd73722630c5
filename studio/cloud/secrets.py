"""Where a worker gets its server token: the environment, a file, or the cloud's secret store.

    --token-from env:NAME                 another environment variable
    --token-from file:/run/secrets/token  a mounted secret (Docker, Kubernetes)
    --token-from ssm:/studio/worker-token AWS SSM Parameter Store (SecureString, decrypted)
    --token-from secretsmanager:NAME      AWS Secrets Manager (SecretString)

Nothing is baked into images, user data or launch templates: on a cloud instance the
instance role (AWS) grants read access to exactly that parameter, and the worker reads it at
start. Without --token-from a worker uses `STUDIOML_API_TOKEN`, as every studio command does.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.exceptions import MissingDependencyError, StudioError, UsageError

SCHEMES = ("env", "file", "ssm", "secretsmanager")


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
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise MissingDependencyError(f"--token-from {scheme}: needs boto3: pip install 'studio[aws]'") from None
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
