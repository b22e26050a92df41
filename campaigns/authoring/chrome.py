"""Page furniture in an article copied or saved from the web: navigation, share buttons,
cookie and newsletter notices, and "Related posts" blocks of links.
"""

from __future__ import annotations

import re

from campaigns.authoring.article import HEADING_MAX_WORDS, line_words, plain_text

# Whole lines that are page furniture, not article text. Only short lines are tested, so a
# sentence that merely mentions "home" or "menu" is never dropped.
_CHROME = re.compile(
    r"""^(?:
      skip\ to\ (?:the\ )?(?:main\ )?(?:content|navigation)|skip\ navigation
    | share(?:\ this)?(?:\ (?:post|article|page|story))?(?:\ (?:on|via|with)\ [\w ]+)?
    | facebook|twitter|x|linkedin|pinterest|instagram|youtube|whatsapp|reddit|tweet|pin\ it
    | e-?mail(?:\ this)?(?:\ (?:post|article|page))?|copy\ link|×
    | print(?:\ this)?(?:\ (?:post|article|page))?|print\ friendly|print\ or\ pdf
    | related(?:\ (?:posts?|articles?|stories|content|reading|links|resources))?
    | you\ (?:may|might)\ also\ (?:like|enjoy|be\ interested\ in)
    | recommended(?:\ (?:for\ you|reading|articles?|posts?))?
    | (?:recent|popular|latest|more|trending)\ (?:posts|articles|stories|news)|read\ next
    | today\ on\ .{1,60}
    | (?:subscribe|sign\ up)(?:\ (?:to|for))?\ (?:our|the)\ (?:free\ )?
      (?:newsletter|mailing\ list|blog)\b.*
    | (?:join|get)\ our\ (?:free\ )?(?:newsletter|mailing\ list)\b.*|newsletter|subscribe(?:\ now)?
    | accept(?:\ all)?(?:\ cookies)?|reject(?:\ all)?(?:\ cookies)?|decline|got\ it|i\ agree
    | manage\ (?:cookies|preferences|consent)|cookie\ (?:settings|preferences|policy|notice|consent)
    | (?:main\ |open\ |close\ )?menu|toggle\ navigation|navigation|home|search|close
    | back\ to\ top|scroll\ to\ top|top\ of\ page
    | (?:previous|next)(?:\ (?:post|article|page|story))?
    | leave\ a\ (?:comment|reply)|\d*\ ?comments?
    | (?:posted|filed)\ (?:in|under|on)\ .*|tags?\s*:.*|categor(?:y|ies)\s*:.*|tagged\ .*
    | (?:©|copyright\ ©?\s*\d{4}).*|all\ rights\ reserved
    )[\s.:!»›→>|]*$""",
    re.IGNORECASE | re.VERBOSE,
)
# A cookie notice is a sentence or two, so it gets a longer allowance.
_COOKIES = re.compile(
    r"\b(?:we|this\ (?:web)?site|our\ (?:web)?site)\ uses?\ cookies\b", re.IGNORECASE | re.VERBOSE
)
# Lines that open a block of links to other pages (related posts, "Today on ..."): the short
# lines that follow them are link titles, not article text.
_CHROME_HEADER = re.compile(
    r"""^(?:related(?:\ (?:posts?|articles?|stories|content|reading|links|resources))?
    | you\ (?:may|might)\ also\ (?:like|enjoy|be\ interested\ in)
    | recommended(?:\ (?:for\ you|reading|articles?|posts?))?
    | (?:recent|popular|latest|more|trending)\ (?:posts|articles|stories|news)|read\ next
    | today\ on\ .{1,60}
    | share(?:\ this)?(?:\ (?:post|article|page|story))?
    )[\s.:!»›→>|]*$""",
    re.IGNORECASE | re.VERBOSE,
)


def is_chrome(line: str) -> bool:
    """True for a line of site furniture: navigation, share buttons, cookie and newsletter lines."""
    text = " ".join(plain_text(line).split())
    if not text:
        return False
    if line_words(text) <= HEADING_MAX_WORDS and _CHROME.match(text):
        return True
    return line_words(text) <= 60 and bool(_COOKIES.search(text))


def is_chrome_header(line: str) -> bool:
    """True for a line that opens a block of links to other pages ("Related posts")."""
    text = " ".join(plain_text(line).split())
    return line_words(text) <= HEADING_MAX_WORDS and bool(_CHROME_HEADER.match(text))


def is_chrome_block(block: str) -> bool:
    """True for a block whose every line is site furniture."""
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and all(is_chrome(line) for line in lines)


# ---------------------------------------------------------------- a pasted page's head and foot

# What a site's menu, breadcrumb or section label says: never an article's title.
NAV_WORDS = frozenset(
    {"home", "blog", "news", "articles", "posts", "services", "about", "about us", "contact"}
    | {"contact us", "resources", "faq", "faqs", "team", "our team", "locations", "book now"}
    | {"patients", "patient resources", "insurance", "careers", "log in", "login", "shop"}
    | {"treatments", "conditions", "events", "updates", "press", "menu", "search"}
)
_MENU_SEPARATOR = re.compile(r"\s{2,}|\t|\s*[|·•]\s*|\s+[>›»]\s+")
_BYLINE = re.compile(
    r"^(?i:(?:(?:written|posted|reviewed|published)\s+)?by)[:\s]+(?P<name>[A-Z][\w.'’-]*"
    r"(?:\s+(?:[A-Z][\w.'’-]*|de|van|von|la|del))*(?:,\s*[A-Z][\w.]*){0,3})\s*$"
)
_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = re.compile(
    rf"""^(?:(?:published|posted|updated|last\ updated|last\ reviewed|date)(?:\ on)?:?\s+)?
    (?P<date>{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}
      | \d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}}
      | {_MONTHS}\s+\d{{4}}
      | \d{{4}}-\d{{2}}-\d{{2}} | \d{{1,2}}/\d{{1,2}}/\d{{2,4}})
    (?:\s*[|·•–—-]\s*\d+\s+min(?:ute)?s?\s+read)?\.?$""",
    re.IGNORECASE | re.VERBOSE,
)
_READING_TIME = re.compile(r"^\d+\s+min(?:ute)?s?\s+read$", re.IGNORECASE)
# The line before a signature: "Warm regards," "With care," "Sincerely,".
_CLOSING = re.compile(
    r"^(?:(?:warm(?:est)?|kind|best|with\ (?:kind\ )?)?\s*regards|sincerely|yours(?:\ truly)?"
    r"|(?:warm|best)\ wishes|with\ (?:care|love|gratitude|thanks)|thanks|thank\ you|best|cheers"
    r"|warmly|take\ care|be\ well|in\ good\ health)[,.!]?$",
    re.IGNORECASE | re.VERBOSE,
)


def is_menu_line(line: str) -> bool:
    """A site menu or breadcrumb pasted as one line: "Home  Services  Blog  Contact"."""
    items = [item for item in _MENU_SEPARATOR.split(line.strip()) if item]
    if len(items) < 2 or len(items) > 10:
        return False
    for item in items:
        words = item.split()
        if len(words) > 3 or not all(w[:1].isupper() or w in ("&", "and", "of") for w in words):
            return False
        if item[-1:] in ".!?,;:":
            return False
    return len(items) >= 3 or any(item.lower() in NAV_WORDS for item in items)


def is_nav_word(line: str) -> bool:
    """A line that is only a menu entry or section label ("Blog", "News")."""
    return " ".join(line.lower().strip(" .:»›>|").split()) in NAV_WORDS


def byline(line: str) -> str | None:
    """ "By Dr. Jane Smith" -> "Dr. Jane Smith"; None for any other line."""
    match = _BYLINE.match(line.strip())
    return match.group("name").strip() if match and len(line.split()) <= 10 else None


def about_line(line: str) -> tuple[str | None, str | None] | None:
    """A byline, a date line or both ("By Dr. Jane Smith | March 4, 2024"): (author, date);
    None when the line is anything else."""
    author = date = None
    for part in re.split(r"\s+[|·•]\s+|\s+[–—-]\s+", line.strip()):
        if byline(part):
            author = author or byline(part)
        elif date_line(part):
            date = date or date_line(part)
        elif not is_reading_time(part):
            return None
    return author, date


def date_line(line: str) -> str | None:
    """ "March 4, 2024", "Published: 4 March 2024 · 5 min read" -> the date as written."""
    match = _DATE.match(line.strip())
    return match.group("date") if match else None


def is_reading_time(line: str) -> bool:
    return bool(_READING_TIME.match(line.strip()))


def is_closing(line: str) -> bool:
    """A letter's closing line ("Warm regards,"): the next short line is a signature."""
    return bool(_CLOSING.match(line.strip()))
