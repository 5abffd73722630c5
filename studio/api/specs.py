"""Parsing of artifact flags: `--capture(-once) path:tag` and `--reuse experiment/tag[:newtag]`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from studio.exceptions import ArtifactSpecError
from studio.keys import MAX_NAME

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_tag(tag: str, flag: str) -> str:
    if len(tag) > MAX_NAME:
        raise ArtifactSpecError(f"{flag}: artifact tag {tag[:20]}... is {len(tag)} characters long; use at most {MAX_NAME}")
    if not _TAG.match(tag):
        raise ArtifactSpecError(
            f"{flag}: artifact tag {tag!r} must be letters, digits, '_', '-' or '.' (e.g. weights)"
        )
    return tag


@dataclass(frozen=True)
class CaptureSpec:
    path: Path
    tag: str


@dataclass(frozen=True)
class ReuseSpec:
    experiment: str
    tag: str
    newtag: str


def parse_capture(spec: str, flag: str = "--capture") -> CaptureSpec:
    """`path:tag`; the last `:` separates the tag so Windows-free paths may contain colons."""
    path, sep, tag = spec.rpartition(":")
    if not sep or not path or not tag:
        raise ArtifactSpecError(f"{flag} {spec!r}: expected PATH:TAG, e.g. {flag}=~/data:data")
    check_tag(tag, flag)
    return CaptureSpec(Path(os.path.abspath(os.path.expanduser(path))), tag)


def parse_reuse(spec: str) -> ReuseSpec:
    """`experiment/tag[:newtag]`; without newtag the artifact keeps its tag."""
    source, sep, newtag = spec.rpartition(":")
    if not sep:
        source, newtag = spec, ""
    experiment, slash, tag = source.rpartition("/")
    if not slash or not experiment or not tag:
        raise ArtifactSpecError(
            f"--reuse {spec!r}: expected EXPERIMENT/TAG[:NEWTAG], e.g. --reuse=linear_regression/weights:w"
        )
    check_tag(tag, "--reuse")
    newtag = newtag or tag
    check_tag(newtag, "--reuse")
    return ReuseSpec(experiment, tag, newtag)
