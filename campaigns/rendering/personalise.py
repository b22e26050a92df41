"""Compiled steps and campaigns personalised per contact: Recipient in, Rendered or Message out.

Personalise (per contact): four renders of precompiled templates, nothing else. A
contact's data is a value for the placeholders' VARIABLES, never template source.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from jinja2 import Template

from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign
from campaigns.errors import NotFoundError
from campaigns.rendering.batch import Batch
from campaigns.rendering.categories import campaign_category, step_category
from campaigns.rendering.discreet import discreet_name
from campaigns.rendering.placeholders import concat
from senders.addresses import wire_address
from senders.base import BatchForm, Message, TaggedContent

__all__ = [
    "SAMPLE",
    "Attributes",
    "CompiledCampaign",
    "CompiledStep",
    "Recipient",
    "Rendered",
    "step_source",
]


@dataclass(frozen=True)
class Recipient:
    """Who a step is personalised for."""

    email: str
    first_name: str | None = None
    timezone: str = "UTC"
    # The contact's attributes (an import's other columns, the API's `attributes`).
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    language: str | None = None  # BCP 47; None: the campaign's default language
    # The contact chose discreet emails (contacts.discreet): neutral subject, preheader
    # and From name, whatever the campaign's `privacy` (rendering/discreet.py).
    discreet: bool = False


SAMPLE = Recipient("sample.patient@example.com", "Sam", "America/New_York")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One personalised email."""

    subject: str
    preheader: str | None
    html: str
    text: str


def step_source(subject: str, preheader: str | None, html: str, text: str) -> str:
    """One template whose blocks are the four parts, so a contact needs one context, not four."""
    parts = [("subject", subject, False), ("html", html, True), ("text", text, False)]
    if preheader is not None:
        parts.append(("preheader", preheader, False))
    return "".join(
        f"{{% block {name} %}}"
        + (part if escape else f"{{% autoescape false %}}{part}{{% endautoescape %}}")
        + "{% endblock %}"
        for name, part, escape in parts
    )


class CompiledStep:
    """One step's frozen subject, preheader, HTML and text, as blocks of one Jinja template.

    `tagged` is the step's batch form (None when it has none): see Batch.
    """

    __slots__ = (
        "_batch",
        "_blocks",
        "_new_context",
        "file",
        "key",
        "position",
        "total",
        "variant",
    )

    def __init__(
        self,
        *,
        key: str,
        file: str,
        position: int,
        total: int,
        template: Template,
        batch: Batch | None = None,
        variant: str | None = None,
    ):
        self.key = key
        self.variant = variant  # the A/B variant this is the email of, if any
        self.file = file
        self.position = position
        self.total = total
        self._new_context = template.new_context
        blocks = template.blocks
        self._blocks = (blocks["subject"], blocks.get("preheader"), blocks["html"], blocks["text"])
        self._batch = batch

    def __repr__(self) -> str:
        variant = f", variant {self.variant!r}" if self.variant else ""
        return f"CompiledStep({self.key!r}, {self.position} of {self.total}{variant})"

    @property
    def tagged(self) -> TaggedContent | None:
        return self._batch.content if self._batch is not None else None

    def personalise(
        self, recipient: Recipient, *, unsubscribe_url: str, preferences_url: str
    ) -> Rendered:
        """Render this step for one contact: Jinja renders of precompiled templates only."""
        # shared=True: the environment has no globals to merge into the context.
        context = self._new_context(
            _variables(recipient, unsubscribe_url, preferences_url), shared=True
        )
        subject, preheader, html, text = self._blocks
        return Rendered(
            concat(subject(context)),
            concat(preheader(context)) if preheader is not None else None,
            concat(html(context)),
            concat(text(context)),
        )

    def batch_form(
        self, recipient: Recipient, *, unsubscribe_url: str, preferences_url: str
    ) -> BatchForm | None:
        """The contact's values for the step's tagged content; None when the step has none."""
        if self._batch is None:
            return None
        return self._batch.form(_variables(recipient, unsubscribe_url, preferences_url))

    def drop_batch_form(self) -> None:
        """Send this step rendered in full only (its batch form failed the compile check)."""
        self._batch = None


class Attributes:
    """A contact's attributes as a step reads them: `{{ attributes.patient_type }}`.

    A missing one is empty text (so `| default("...")` applies), never an error. Values
    are the contact's own text: printed, escaped in HTML like the first name, never
    template source. The class has no attributes of its own for a name to reach, and
    the sandbox refuses names starting with `_`.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name) or ""

    def __repr__(self) -> str:
        return f"Attributes({len(self._values)})"


def _variables(
    recipient: Recipient, unsubscribe_url: str, preferences_url: str
) -> dict[str, object]:
    return {
        "first_name": recipient.first_name or "",
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "attributes": Attributes(recipient.attributes),
    }


class CompiledCampaign:
    """A campaign version with every step compiled, ready to personalise per contact.

    `steps` are in the default language; `languages` holds the campaign compiled in each
    of its other languages (authoring/translations.py), and `message` picks the contact's.
    `discreet` says the steps are discreet emails (default: the campaign's `privacy`);
    `discreet_version` makes the discreet emails of a campaign whose steps are not, for
    the contacts who chose them (`in_discreet` calls it once).
    """

    def __init__(
        self,
        campaign: Campaign,
        steps: dict[str, CompiledStep],
        variants: dict[str, dict[str, CompiledStep]] | None = None,
        languages: dict[str, CompiledCampaign] | None = None,
        *,
        discreet: bool | None = None,
        discreet_version: Callable[[], CompiledCampaign] | None = None,
    ) -> None:
        self.campaign = campaign
        self.steps = steps  # in step order
        self.variants = variants or {}  # step key -> variant name -> its email
        self.languages = languages or {}
        self._chosen: dict[str | None, CompiledCampaign] = {}  # a contact's language -> which
        self.discreet = campaign.spec.discreet if discreet is None else discreet
        self._discreet_version = discreet_version
        self._discreet: CompiledCampaign | None = None
        self._discreet_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CompiledCampaign({self.campaign.name!r}, version={self.campaign.version!r})"

    def in_language(self, language: str | None) -> CompiledCampaign:
        """The campaign as a contact speaking `language` gets it: theirs if the campaign has
        it (exactly, then by primary subtag), else the default; never an error."""
        found = self._chosen.get(language)
        if found is None:
            default = self.campaign.spec.language
            chosen = choose_language(language, [default, *self.languages], default)
            found = self._chosen[language] = self.languages.get(chosen, self)
        return found

    def in_discreet(self) -> CompiledCampaign:
        """The campaign as discreet emails: itself when it is discreet (or has no way to
        be: a campaign put together by hand), else its discreet version, compiled once."""
        if self.discreet or self._discreet_version is None:
            return self
        with self._discreet_lock:  # two threads wanting it at once compile it once
            if self._discreet is None:
                self._discreet = self._discreet_version()
            return self._discreet

    @cached_property
    def from_name(self) -> str:
        """The From display name: the organisation's (or `discreet_name`) when discreet."""
        spec = self.campaign.spec
        return discreet_name(spec) if self.discreet else spec.from_.name

    def step(self, step_key: str, variant: str | None = None) -> CompiledStep:
        """The step's email, or its variant `variant`'s (None: the step file's own)."""
        try:
            compiled = self.steps[step_key]
        except KeyError:
            raise NotFoundError(
                f"campaign {self.campaign.name!r} has no step {step_key!r}"
            ) from None
        if variant is None:
            return compiled
        try:
            return self.variants[step_key][variant]
        except KeyError:
            raise NotFoundError(f"step {step_key!r} has no variant {variant!r}") from None

    def message(
        self,
        step_key: str,
        recipient: Recipient,
        *,
        delivery_id: str,
        unsubscribe_url: str,
        unsubscribe_mailto: str,
        preferences_url: str,
        date: datetime | None,
        message_id: str | None = None,
        is_test: bool = False,
        batch_form: bool = True,
        variant: str | None = None,
    ) -> Message:
        """The personalised step (or its variant `variant`) as a Message with its list and
        identity headers.

        `batch_form=False` leaves out the step's batch form (a sender that sends one
        message per request has no use for it, and it costs a few renders).
        """
        spoken = self.in_language(recipient.language)
        if recipient.discreet:
            spoken = spoken.in_discreet()
        spec = spoken.campaign.spec
        step = spoken.step(step_key, variant)
        rendered = step.personalise(
            recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
        )
        # An internationalised From domain goes into the Message-ID as its A-label: the
        # header is written as ASCII (senders/mime.py), as From itself is.
        domain = wire_address(spec.from_.address)[0].rpartition("@")[2]
        if not unsubscribe_mailto.startswith("mailto:"):
            unsubscribe_mailto = f"mailto:{unsubscribe_mailto}"
        headers = {
            "Message-ID": message_id
            or f"<dripmail.{_atom(delivery_id)}.{self.campaign.version}@{domain}>",
            # RFC 2369 list of URIs; RFC 8058 one-click needs the https one and the Post header.
            "List-Unsubscribe": f"<{unsubscribe_url}>, <{unsubscribe_mailto}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        if is_test:
            headers["X-Dripmail-Test"] = "yes"
        return Message(
            delivery_id=delivery_id,
            from_name=spoken.from_name,
            from_address=spec.from_.address,
            to_address=recipient.email,
            to_name=recipient.first_name or None,
            subject=f"[TEST] {rendered.subject}" if is_test else rendered.subject,
            preheader=rendered.preheader,
            html=rendered.html,
            text=rendered.text,
            reply_to=spec.reply_to,
            headers=headers,
            date=date,
            categories=(campaign_category(self.campaign.name), step_category(step_key)),
            is_test=is_test,
            batch=step.batch_form(
                recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
            )
            if batch_form
            else None,
        )


def _atom(value: str) -> str:
    # The left part of a Message-ID must be an RFC 5322 dot-atom.
    return re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", str(value)).strip(".") or "x"
