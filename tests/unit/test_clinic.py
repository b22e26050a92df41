"""The clinic article end to end: the acceptance points of the main job on the real example."""

from __future__ import annotations

import email
import email.policy
import re

from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import Recipient
from campaigns.rendering.tokens import contact_links
from examples import ARTICLE

HEADINGS = [
    "How Mental Health Affects Sleep",
    "What About Physical Health?",
    "How Ketamine Therapy Can Help",
    "Can Ketamine Make My Sleep Issues Worse?",
    "All Patients are Different",
]


PAT = Recipient("pat@example.com", "Pat", "America/New_York")


def messages(campaign, recipient=PAT, date=None):
    compiled = compile_campaign(campaign)
    links = contact_links("https://mail.clinic.example", "TOKEN123", "care@clinic.example")
    return [
        compiled.message(
            step.key,
            recipient,
            delivery_id=str(step.position),
            unsubscribe_url=links.unsubscribe_url,
            unsubscribe_mailto=links.unsubscribe_mailto,
            preferences_url=links.preferences_url,
            date=date,
        )
        for step in campaign.steps
    ]


def article_sentences() -> list[str]:
    text = ARTICLE.read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    body = [p for p in paragraphs if p != "Skip to content" and p not in HEADINGS]
    return [s for p in body for s in re.split(r"(?<=[.!?])\s+", p)]


def test_the_article_becomes_an_opening_email_and_its_five_headings(clinic):
    subjects = [step.subject for step in clinic.steps]
    assert subjects[1:] == HEADINGS
    assert subjects[0] == "Ketamine and Sleep"


def test_every_sentence_appears_exactly_once_in_order_across_the_text_parts(clinic):
    text = " ".join(" ".join(m.text.split()) for m in messages(clinic))
    assert "Skip to content" not in text
    position = 0
    for sentence in article_sentences():
        assert text.count(sentence) == 1, sentence
        found = text.index(sentence)
        assert found >= position, f"out of order: {sentence}"
        position = found


def test_every_html_is_small_complete_and_free_of_template_leftovers(clinic):
    for message in messages(clinic):
        html = message.html
        assert len(html.encode()) < 102 * 1024  # Gmail clips larger messages
        assert "100 Example Avenue" in html
        assert 'href="https://mail.clinic.example/u/TOKEN123"' in html
        assert "@media" in html
        for leftover in ("{{", "{%", "%7B%7B", "%7B%25"):
            assert leftover not in html
        assert "100 Example Avenue" in message.text
        assert "https://mail.clinic.example/u/TOKEN123" in message.text


def test_a_contacts_own_text_shows_as_typed_and_is_never_evaluated(clinic):
    name = "<b>{{ 7*7 }}</b>"
    sent = messages(clinic, Recipient("pat@example.com", name, "UTC"))
    assert "Hi <b>{{ 7*7 }}</b>," in sent[0].text  # the opening email greets by name
    assert "Hi &lt;b&gt;{{ 7*7 }}&lt;/b&gt;," in sent[0].html
    for message in sent:
        assert "49" not in message.text + message.html
        assert "<b>{{" not in message.html


def test_a_contact_without_a_name_is_greeted_plainly(clinic):
    assert "Hi there," in messages(clinic, Recipient("pat@example.com", None, "UTC"))[0].text


def test_list_unsubscribe_parses_back_to_its_exact_uris(clinic):
    from senders.mime import to_bytes

    for message in messages(clinic):
        raw = to_bytes(message)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        uris = re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"]))
        assert uris == [
            "https://mail.clinic.example/u/TOKEN123",
            "mailto:care@clinic.example?subject=unsubscribe%20TOKEN123",
        ]
        assert b"=?" not in raw.split(b"List-Unsubscribe:")[1].split(b"List-Unsubscribe-Post")[0]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_every_clinic_email_greets_pat_and_names_the_next_one(clinic):
    # Added with `greeting:` and `teaser:`: the layout greets in every email (split used to
    # greet in the first only) and each email but the last ends naming the next.
    texts = [m.text.split("\n-- \n", 1)[0] for m in messages(clinic)]
    assert [t.count("Hi Pat,") for t in texts] == [1] * 6
    endings = [t.strip().splitlines()[-1] for t in texts]
    assert endings[:5] == [
        "Next, in 2 days: How Mental Health Affects Sleep",
        "Next, in 2 days: What About Physical Health?",
        "Next, in 3 days: How Ketamine Therapy Can Help",
        "Next, in 3 days: Can Ketamine Make My Sleep Issues Worse?",
        "Next, in 4 days: All Patients are Different",
    ]
    assert "Next," not in texts[5]
