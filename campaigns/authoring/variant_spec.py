"""A step's A/B variants in campaign.yaml (`variants:`, `winner:`): schema, files, validation.

    steps:
      - file: 01-welcome.md
        delay: 0d
        variants:
          - subject: "Sleep better from tonight"
          - subject: "{{ first_name | default('Hello') }}, one habit for better sleep"
            file: 01-welcome-b.md      # another body (optional): a step file in the folder
            weight: 2                  # default 1
        winner: {metric: clicked, after: 500}

Each variant is a whole email of the step: its `subject` (required), optionally a
`preheader` and another body `file` (a Markdown step file, read as step files are);
without `file` it has the step file's body and button. A variant is named by its
position (`a`, `b`, …) unless it has a `name`: the name is its identity, which the
keyed assignment (planning/variants.py) and the recorded deliveries use.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from campaigns.authoring.fields import FileModel, OneLine
from campaigns.authoring.yamlio import line_of
from campaigns.errors import InputError

if TYPE_CHECKING:
    from campaigns.authoring.spec import Step, StepRef

MAX_VARIANTS = 26  # a … z
MAX_AFTER = 1_000_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

__all__ = [
    "MAX_VARIANTS",
    "Variant",
    "VariantList",
    "VariantRef",
    "Winner",
    "dotted",
    "label",
    "variant_files",
    "variant_of",
    "variant_step",
    "with_variants",
]


class VariantRef(FileModel):
    """One entry of a step's `variants:` as campaign.yaml gives it."""

    name: str
    subject: OneLine
    preheader: OneLine | None = None
    file: str | None = None
    weight: float = 1.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r}: name a variant with lower-case letters, digits and dashes (at most 32)"
            )
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not value:
            raise ValueError("a variant needs a subject")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value)
        if path.is_absolute() or ".." in path.parts or path.suffix.lower() not in (".md", ".txt"):
            raise ValueError(f"{value!r} must be a .md file inside the campaign folder")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0 or value > 1000:
            raise ValueError(f"{value!r}: a weight is a number above 0 (and at most 1000)")
        return value


def _named(value: Any) -> Any:
    """Give each variant without a `name` its position's letter: a, b, c …"""
    if not isinstance(value, list):
        return value
    if len(value) < 2 or len(value) > MAX_VARIANTS:
        raise ValueError(f"{len(value)} variants: list 2 to {MAX_VARIANTS}, or none")
    named = []
    for index, item in enumerate(value):
        if isinstance(item, dict) and "name" not in item:
            item = {"name": string.ascii_lowercase[index], **item}
        named.append(item)
    names = [item.get("name") for item in named if isinstance(item, dict)]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two variants are named {name!r}: give each its own `name`")
    return named


VariantList = Annotated[list[VariantRef], BeforeValidator(_named)]


class Winner(FileModel):
    """`winner: {metric: clicked|converted, after: 500}`: once each variant has been sent
    `after` times, the one with the better rate goes to everyone (delivery/winner.py)."""

    metric: Literal["clicked", "converted"]
    after: int = Field(ge=1, le=MAX_AFTER)


@dataclass(frozen=True)
class Variant:
    """One variant of a step, read: its name, weight, and the email's own parts."""

    name: str
    weight: float
    subject: str
    preheader: str | None
    file: str  # the body's step file (the step's own when the variant names none)
    body: str
    body_line: int
    cta: str | None


def label(name: str) -> str:
    """How reports name a variant: `B` for the letter names, the name itself otherwise."""
    return name.upper() if len(name) == 1 else name


def variant_files(item: Any) -> list[tuple[int, str]]:
    """(index, file) of every variant body a raw campaign.yaml step entry names."""
    variants = item.get("variants") if isinstance(item, dict) else None
    found = []
    for index, variant in enumerate(variants if isinstance(variants, list) else []):
        name = variant.get("file") if isinstance(variant, dict) else None
        if isinstance(name, str):
            found.append((index, name))
    return found


def dotted(loc: tuple) -> str:
    """A campaign-file location as errors name it: `steps[0].variants[1].file`."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def with_variants(
    step: Step,
    ref: StepRef,
    files: Mapping[str, str],
    parse: Callable[..., Step],
    *,
    origin: str,
    lines: dict,
) -> Step:
    """The step with its variants read, each body file by `parse` (spec.parse_step's rules:
    front matter, bounded text), and its `winner` rule."""
    source = str(Path(origin) / "campaign.yaml") if origin else "campaign.yaml"
    here = ("steps", step.position - 1)
    if ref.winner is not None and not ref.variants:
        loc = (*here, "winner")
        raise InputError(
            "`winner` chooses among variants: list `variants` on this step too",
            source=source,
            line=line_of(lines, loc),
            field=dotted(loc),
        )
    variants = []
    for index, variant in enumerate(ref.variants):
        body = step
        if variant.file is not None:
            if variant.file not in files:  # read_folder reads it; a published version lacks it
                loc = (*here, "variants", index, "file")
                raise InputError(
                    f"no such file {variant.file!r}",
                    source=source,
                    line=line_of(lines, loc),
                    field=dotted(loc),
                )
            body_source = str(Path(origin) / variant.file) if origin else variant.file
            body = parse(files[variant.file], source=body_source, subject=variant.subject)
        variants.append(
            Variant(
                name=variant.name,
                weight=variant.weight,
                subject=variant.subject,
                preheader=variant.preheader if variant.preheader is not None else body.preheader,
                file=variant.file or step.file,
                body=body.body,
                body_line=body.body_line,
                cta=body.cta,
            )
        )
    return replace(step, variants=tuple(variants), winner=ref.winner)


def variant_step(step: Step, variant: Variant) -> Step:
    """The step as this variant's email: the same key, position and delay, its own parts."""
    return replace(
        step,
        file=variant.file,
        subject=variant.subject,
        preheader=variant.preheader,
        body=variant.body,
        body_line=variant.body_line,
        cta=variant.cta,
        variants=(),
    )


def variant_of(step: Step, name: str) -> Step:
    """The step as its variant `name`'s email (KeyError when it has no such variant)."""
    for variant in step.variants:
        if variant.name == name:
            return variant_step(step, variant)
    raise KeyError(name)
