"""What people write about a run: its display name, tags and a markdown note.

    annotate(ctx, key, name="baseline", add_tags=("good",), note="Loss *plateaus* at 0.3")

Names, tags and notes never change what ran; they are for finding and explaining runs
(filters: `name ~ base`, `tags = good`, `note ~ plateau`). One `update_experiment` per call,
after every value has been checked, so bad input changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from studio.api.context import Context
from studio.entities import Experiment
from studio.exceptions import UsageError

MAX_NAME = 200
MAX_TAG = 64
MAX_TAGS = 50
MAX_NOTE = 100_000
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/+=-]*$")


def check_name(name: str) -> str | None:
    """A name as stored: stripped, one line; '' clears it (back to the default name)."""
    text = name.strip()
    if "\n" in text or "\r" in text:
        raise UsageError("a run's name is one line; put longer text in its note (`studio runs note`)")
    if len(text) > MAX_NAME:
        raise UsageError(f"a run's name has at most {MAX_NAME} characters, got {len(text)}")
    return text or None


def check_tag(tag: str) -> str:
    text = tag.strip()
    if not TAG.match(text) or len(text) > MAX_TAG:
        raise UsageError(
            f"bad tag {tag!r}: a tag is 1-{MAX_TAG} letters, digits and _ . : / + = - "
            "(starting with a letter, digit or _), e.g. baseline or lr-sweep/2"
        )
    return text


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise UsageError(f"a note has at most {MAX_NOTE} characters, got {len(note)}")
    return note.strip("\n")


def annotate(
    ctx: Context, key: str, *, name: str | None = None, note: str | None = None,
    tags: Iterable[str] | None = None, add_tags: Iterable[str] = (), remove_tags: Iterable[str] = (),
) -> Experiment:
    """Set the name (`""` restores the default), the note, the whole tag list (`tags`), or add and
    remove tags. Arguments left as None / empty leave their field alone."""
    exp = ctx.meta.get_experiment(key)
    fields: dict[str, object] = {}
    if name is not None:
        fields["name"] = check_name(name)
    if note is not None:
        fields["note"] = check_note(note)
    adding = [check_tag(t) for t in add_tags]
    removing = {check_tag(t) for t in remove_tags}
    if tags is not None or adding or removing:
        current = [check_tag(t) for t in tags] if tags is not None else list(exp.tags)
        new = [t for t in dict.fromkeys([*current, *adding]) if t not in removing]
        if len(new) > MAX_TAGS:
            raise UsageError(f"a run has at most {MAX_TAGS} tags; remove some first")
        fields["tags"] = tuple(new)
    if not fields:
        return exp
    return ctx.meta.update_experiment(key, **fields)


__all__ = ["annotate", "check_name", "check_note", "check_tag"]
