"""Links (with their visible text) and images of an email's HTML part, as the checks read them."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass
class Link:
    href: str
    text: str = ""


@dataclass
class Image:
    src: str
    alt: str | None


class Collector(HTMLParser):
    """Links (with their visible text) and images of an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.images: list[Image] = []
        self._open: list[Link] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            link = Link(values["href"] or "")
            self.links.append(link)
            self._open.append(link)
        elif tag == "img":
            self.images.append(Image(values.get("src") or "", values.get("alt")))
            if self._open:  # an image inside a link: its alt text is the link text
                self._open[-1].text += values.get("alt") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for link in self._open:
            link.text += data


def parse_html(html: str) -> Collector:
    """The links and images of `html`."""
    collector = Collector()
    collector.feed(html)
    collector.close()
    return collector
