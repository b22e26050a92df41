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
