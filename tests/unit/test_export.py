"""Review output: .html, .txt and .eml per step in order, and an offline index page."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from campaigns.planning.schedule import Delay
from campaigns.rendering.personalise import Recipient
from campaigns.rendering.tokens import PLACEHOLDER_PUBLIC_URL
from campaigns.reporting.export import export_campaign, export_for
from campaigns.studio.views import describe_delay

FIXTURE = Path(__file__).parents[1] / "fixtures" / "render"
STEMS = ["01-welcome", "02-mental-health", "03-every-patient"]


class _Links(HTMLParser):
    """Every link, and every tag that would load something, of the offline index."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.frames: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "iframe":
            self.frames.append(values.get("src") or "")
        elif tag in ("link", "script", "img") or values.get("src"):
            self.external.append(tag)


def test_export_writes_every_step_in_order_and_an_index(tmp_path: Path) -> None:
    campaign = load_folder(FIXTURE)
    written = export_campaign(
        campaign, tmp_path / "out", date=datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    )
    names = [path.name for path in written]
    assert names == [f"{stem}.{ext}" for stem in STEMS for ext in ("html", "txt", "eml")] + [
        "index.html"
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)
    assert all(path.stat().st_size > 0 for path in written)

    html = (tmp_path / "out" / "02-mental-health.html").read_text(encoding="utf-8")
    text = (tmp_path / "out" / "02-mental-health.txt").read_text(encoding="utf-8")
    assert "Sam, many patients" in text and "Sam, many patients" in html.replace("\n", " ")
    assert f"Unsubscribe: {PLACEHOLDER_PUBLIC_URL}/u/sample-token" in text
    assert f'href="{PLACEHOLDER_PUBLIC_URL}/u/sample-token"' in html


def test_index_lists_subjects_preheaders_delays_and_links_offline(tmp_path: Path) -> None:
    export_campaign(load_folder(FIXTURE), tmp_path, date=datetime(2026, 3, 9, 14, 0, tzinfo=UTC))
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    timeline = index[index.index('<ol class="timeline">') : index.index("</nav>")]
    positions = [
        timeline.index(text)
        for text in (
            "Day 0",
            "Mon 9 Mar 2026, 10:00 EDT",  # a sign-up at `date`, in the sample's zone
            "Ketamine and sleep</span>",
            "Sleep is one of the most important things we can do for our health.",
            "at sign-up",
            "Day 2",
            "How mental health affects sleep</span>",
            "2 days after sign-up",
            "Day 4",
            "All patients are different</span>",
            "4 days after sign-up",
        )
    ]
    assert positions == sorted(positions)
    links = _Links()
    links.feed(index)
    assert links.external == []  # inline CSS; no script, stylesheet or image to fetch
    assert "http" not in "".join(links.hrefs + links.frames)
    for stem in STEMS:
        for ext in ("html", "txt", "eml"):
            assert f"{stem}.{ext}" in links.hrefs
        assert links.frames.count(f"{stem}.html") == 2  # desktop and phone, side by side
    for href in links.hrefs:  # every link leads to a file written or a part of this page
        if href.startswith("#"):
            assert href[1:] in links.ids, href
        else:
            assert (tmp_path / href).is_file(), href
    text = (tmp_path / "02-mental-health.txt").read_text(encoding="utf-8")
    assert f'<pre class="text-part">{escape(text)}</pre>' in index  # the text part, inline
    assert "Not ready to send" not in index


def test_eml_files_parse_as_multipart_alternative_with_list_unsubscribe(tmp_path: Path) -> None:
    export_campaign(
        load_folder(FIXTURE),
        tmp_path,
        recipient=Recipient("pat@example.com", "Pat", "Europe/London"),
        public_url="https://mail.balancedketamine.example.com/",
    )
    for stem in STEMS:
        raw = (tmp_path / f"{stem}.eml").read_bytes()
        assert b"\r\n" not in raw  # written with the file line separator
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["To"].addresses[0].addr_spec == "pat@example.com"
        assert parsed["Date"] is not None and parsed["Message-ID"].startswith("<dripmail.")
        assert re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"])) == [
            "https://mail.balancedketamine.example.com/u/sample-token",
            "mailto:care@balancedketamine.example.com?subject=unsubscribe",
        ]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = (part.get_content() for part in parsed.iter_parts())
        assert text == (tmp_path / f"{stem}.txt").read_text(encoding="utf-8")
        assert html == (tmp_path / f"{stem}.html").read_text(encoding="utf-8")


def test_placeholders_show_in_the_emails_and_the_index(tmp_path: Path) -> None:
    folder = tmp_path / "draft"
    shutil.copytree(FIXTURE, folder)
    yaml = (folder / "campaign.yaml").read_text(encoding="utf-8")
    yaml = yaml.replace("    1200 Harbor Street, Suite 4\n    Portland, OR 97201\n", "    TODO\n")
    yaml = yaml.replace("  organisation: Balanced Ketamine", "  organisation: TODO organisation")
    (folder / "campaign.yaml").write_text(yaml, encoding="utf-8")
    export_campaign(load_folder(folder), tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Not ready to send" in index
    assert "brand.organisation" in index and "brand.postal_address" in index
    # The checks beside each email say what is wrong, as the studio does.
    assert index.count("no postal address: set brand.postal_address") == len(STEMS)
    for stem in STEMS:
        text = (tmp_path / "out" / f"{stem}.txt").read_text(encoding="utf-8")
        html = (tmp_path / "out" / f"{stem}.html").read_text(encoding="utf-8")
        assert "TODO organisation\nTODO\n" in text
        assert "TODO organisation" in html and ">TODO<" in html.replace("\n", "").replace(" ", "")


def test_export_for_previews_a_folder_without_a_database(tmp_path: Path) -> None:
    index = export_for(None, str(FIXTURE), tmp_path / "out")
    assert index == tmp_path / "out" / "index.html" and index.is_file()
    assert (tmp_path / "out" / "03-every-patient.eml").is_file()
    with pytest.raises(InputError):
        export_for(None, str(FIXTURE), tmp_path / "out2", email="pat@example.com")


def test_delays_read_as_plain_english() -> None:
    assert describe_delay(Delay(0, "d")) == "at sign-up"
    assert describe_delay(Delay(1, "w")) == "1 week after sign-up"
    assert describe_delay(Delay(36, "h")) == "36 hours after sign-up"
