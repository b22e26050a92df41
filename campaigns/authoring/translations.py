"""A campaign in each of its languages: step translations beside their steps, its own texts.

`in_language(campaign, "es")` is the campaign as a Spanish-speaking contact gets it: each
step from `NN-name.es.md` when that file exists (else the step in the default language),
and the title, greeting, From name, disclaimer and links from `translations.es`. It is a
Campaign of one language, so everything that compiles, checks or previews a campaign
works on it unchanged. `language_findings` is what `dripmail check` says about coverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from campaigns.authoring.languages import (
    LanguageTexts,
    language_name,
    language_of_file,
    translation_file,
)
from campaigns.authoring.sources import campaign_file
from campaigns.authoring.spec import (
    CAMPAIGN_FILE,
    DEFAULT_GREETING,
    Campaign,
    CampaignSpec,
    StepRef,
    parse_step,
)
from campaigns.authoring.yamlio import line_of, load_with_lines

__all__ = [
    "LanguageFinding",
    "campaign_languages",
    "each_language",
    "in_language",
    "language_choices",
    "language_findings",
]


def campaign_languages(spec: CampaignSpec) -> list[str]:
    """The default language first, then the others `languages:` lists."""
    return [spec.language, *(tag for tag in spec.languages if tag != spec.language)]


def in_language(campaign: Campaign, tag: str) -> Campaign:
    """The campaign in language `tag` (one of its languages), as a one-language Campaign.

    A step without a translation stays in the default language; texts without one too,
    but for the greeting: an untranslated greeting is the layout's default greeting in
    that language (from the gettext catalog), never English in a Spanish email.
    """
    spec = campaign.spec
    if tag == spec.language:
        return _with(campaign, spec.model_copy(update={"languages": [tag]}), campaign.steps)
    texts = spec.translations.get(tag) or LanguageTexts()
    greeting = None if spec.greeting is None else (texts.greeting or DEFAULT_GREETING)
    translated = spec.model_copy(
        update={
            "language": tag,
            "languages": [tag],
            "title": texts.title or spec.title,
            "greeting": " ".join(greeting.split()) if greeting else None,
            "from_": spec.from_.model_copy(update={"name": texts.from_name or spec.from_.name}),
            "brand": spec.brand.model_copy(
                update={"disclaimer": texts.disclaimer or spec.brand.disclaimer}
            ),
            "links": spec.links.model_copy(
                update={
                    "website": texts.website or spec.links.website,
                    "cta_url": texts.cta_url or spec.links.cta_url,
                }
            ),
        }
    )
    steps = []
    for step, ref in zip(campaign.steps, spec.steps, strict=True):
        name = translation_file(step.file, tag)
        if name not in campaign.files:
            steps.append(step)
            continue
        source = str(Path(campaign.origin) / name) if campaign.origin else name
        steps.append(
            parse_step(
                campaign.files[name],
                StepRef.model_construct(file=name, delay=ref.delay),
                step.position,
                source,
            )
        )
    return _with(campaign, translated, tuple(steps))


def _with(campaign: Campaign, spec: CampaignSpec, steps: tuple) -> Campaign:
    return Campaign(
        spec=spec, steps=steps, files=campaign.files, origin=campaign.origin, closed=campaign.closed
    )


def language_choices(spec: CampaignSpec) -> list[tuple[str, str]]:
    """(tag, English name) of each of the campaign's languages, the default first."""
    return [(tag, language_name(tag)) for tag in campaign_languages(spec)]


def each_language(campaign: Campaign) -> list[Campaign]:
    """The campaign in each of its languages, the default first."""
    return [in_language(campaign, tag) for tag in campaign_languages(campaign.spec)]


@dataclass(frozen=True)
class LanguageFinding:
    """Something `check` says about a campaign's languages: severity, file, line, message."""

    severity: Literal["error", "warning"]
    file: str
    message: str
    line: int | None = None


def language_findings(campaign: Campaign, catalogs: frozenset[str]) -> list[LanguageFinding]:
    """A listed language that lacks a step, a translation whose step the default lacks,
    a translation in a language not listed, and campaign texts left untranslated.

    `catalogs` are the languages dripmail's layout text (footer, "Part 2 of 6", pages)
    is translated into; a language outside them gets that text in English.
    """
    spec = campaign.spec
    languages = campaign_languages(spec)
    default = spec.language
    found: list[LanguageFinding] = []
    folder = Path(campaign.origin) if campaign.origin else None

    def where(name: str) -> str:
        return str(folder / name) if folder else name

    _, lines = load_with_lines(campaign.files[CAMPAIGN_FILE], campaign_file(campaign))
    for tag in languages[1:]:
        name = language_name(tag)
        for step in campaign.steps:
            expected = translation_file(step.file, tag)
            if expected not in campaign.files:
                found.append(
                    LanguageFinding(
                        "warning",
                        where(expected),
                        f"step {PurePosixPath(step.file).stem} has no {name} ({tag}) "
                        f"translation: {name} speakers get it in {language_name(default)}",
                    )
                )
        texts = spec.translations.get(tag) or LanguageTexts()
        if spec.greeting not in (None, DEFAULT_GREETING) and not texts.greeting:
            found.append(
                LanguageFinding(
                    "warning",
                    campaign_file(campaign),
                    f"greeting has no {name} translation (translations.{tag}.greeting): "
                    f"{name} emails open with the default greeting",
                    line_of(lines, ("greeting",)),
                )
            )
        if spec.brand.disclaimer and not texts.disclaimer:
            found.append(
                LanguageFinding(
                    "warning",
                    campaign_file(campaign),
                    f"brand.disclaimer has no {name} translation "
                    f"(translations.{tag}.disclaimer): {name} emails show it untranslated",
                    line_of(lines, ("brand", "disclaimer")),
                )
            )
    for tag in languages:
        if tag.split("-")[0] not in catalogs and tag not in catalogs:
            found.append(
                LanguageFinding(
                    "warning",
                    campaign_file(campaign),
                    f'dripmail\'s own text (footer, "Part 2 of 6", unsubscribe pages) has no '
                    f"{language_name(tag)} ({tag}) catalog yet and stays English: see "
                    "README, Adding a language",
                    line_of(lines, ("languages",)) or line_of(lines, ("language",)),
                )
            )
    for tag in spec.translations:
        if tag not in languages:
            found.append(
                LanguageFinding(
                    "warning",
                    campaign_file(campaign),
                    f"translations.{tag}: {tag} is not in languages, so it is never used",
                    line_of(lines, ("translations", tag)),
                )
            )
    found += _stray_translations(campaign, languages, where)
    return found


def _stray_translations(campaign: Campaign, languages: list[str], where) -> list[LanguageFinding]:
    """Translation files with no step in the default language, or in a language not listed."""
    steps = {step.file for step in campaign.steps}
    names = set(campaign.files)
    if campaign.origin and Path(campaign.origin).is_dir():
        folder = Path(campaign.origin)
        names |= {
            str(path.relative_to(folder).as_posix())
            for path in folder.rglob("*.md")
            if path.is_file() and ".dripmail" not in path.parts
        }
    found = []
    for name in sorted(names):
        parsed = language_of_file(name)
        if parsed is None or name in steps:
            continue
        base, tag = parsed
        if base not in steps:
            found.append(
                LanguageFinding(
                    "error",
                    where(name),
                    f"has no step in the default language: {base} is not among "
                    "campaign.yaml's steps, so this translation is never sent",
                )
            )
        elif tag not in languages:
            found.append(
                LanguageFinding(
                    "warning",
                    where(name),
                    f"{language_name(tag)} ({tag}) is not in the campaign's languages, so "
                    f"this translation is never sent: add {tag} to languages in campaign.yaml",
                )
            )
    return found
