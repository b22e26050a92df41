"""The keys a campaign-file model takes, and a misspelt one named with what it meant."""

from __future__ import annotations

import difflib
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def unknown_key(key: str, allowed: list[str]) -> str:
    """`unknown key 'organization': did you mean `organisation`?`, else the keys it takes."""
    message = f"unknown key {key!r}"
    # Spelling variants (organization, colour) and typos are the usual cause.
    close = difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.6)
    if close:
        return f"{message}: did you mean `{close[0]}`?"
    return f"{message} (expected one of: {', '.join(allowed)})" if allowed else message


def is_plain_union(annotation: Any) -> bool:
    """A union of two or more types besides None (pydantic puts each one's name in `loc`)."""
    if get_origin(annotation) not in (Union, UnionType):
        return False
    return len([a for a in get_args(annotation) if a is not NoneType]) > 1


def is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def model_keys(model: Any) -> list[str]:
    """The keys a campaign-file mapping takes (none when `model` is not a model)."""
    if not is_model(model):
        return []
    return [f.alias or name for name, f in model.model_fields.items()]
