"""A step as a discreet email: neutral subject and preheader, the body unchanged.

The compiler (rendering/compile.py) compiles `discreet_step(campaign, step)` where it
would compile `step`: the neutral texts take the subject's and preheader's places (so
the HTML <title> and the hidden preview line are neutral too), and the step's real
subject stays the body's `# ` heading, where it always was. Texts are chosen per step
front matter, then campaign.yaml, then dripmail's default in the campaign's language.
"""

from __future__ import annotations

from dataclasses import replace

from campaigns.authoring.privacy_spec import fill_organisation, without_words
from campaigns.authoring.spec import Campaign, CampaignSpec, Step
from campaigns.rendering.catalogs import N_, translations
from campaigns.rendering.markdown import with_heading

__all__ = [
    "DEFAULT_PREHEADER",
    "DEFAULT_SUBJECT",
    "NEUTRAL_NAME",
    "PREVIEW_PADDING",
    "discreet_name",
    "discreet_step",
    "neutral_texts",
]

DEFAULT_SUBJECT = N_("A note from {{ organisation }}")
DEFAULT_PREHEADER = N_("Your latest email from {{ organisation }}")
# The name of a discreet email whose organisation's name is nothing but sensitive words.
NEUTRAL_NAME = N_("Updates")

# After the hidden preview line: invisible characters that fill the inbox's and the
# lock screen's preview, so no client reads on into the body (its heading, its words).
PREVIEW_PADDING = "&zwnj;&nbsp;" * 100


def discreet_name(spec: CampaignSpec) -> str:
    """The name a discreet email goes out under: `discreet_name`, else the organisation's
    name without its sensitive words ("Balanced Ketamine": "Balanced"): a name that says
    what the emails are about would undo the neutral subject. `check` names the change."""
    if spec.discreet_name:
        return spec.discreet_name
    name = without_words(spec.brand.organisation, spec.sensitive)
    return name or translations(spec.language).gettext(NEUTRAL_NAME)


def neutral_texts(campaign: Campaign, step: Step) -> tuple[str, str]:
    """The step's neutral subject and preheader, the organisation's name written in."""
    spec = campaign.spec
    words = translations(spec.language)
    subject = step.discreet_subject or spec.discreet_subject or words.gettext(DEFAULT_SUBJECT)
    preheader = (
        step.discreet_preheader or spec.discreet_preheader or words.gettext(DEFAULT_PREHEADER)
    )
    name = discreet_name(spec)
    return fill_organisation(subject, name), fill_organisation(preheader, name)


def discreet_step(campaign: Campaign, step: Step) -> Step:
    """`step` with its neutral subject and preheader; its real subject stays its heading."""
    subject, preheader = neutral_texts(campaign, step)
    return replace(
        step, subject=subject, preheader=preheader, body=with_heading(step.body, step.subject)
    )
