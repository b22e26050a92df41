"""Staff placeholders: the tags a step may hold, kept intact through the pipeline, checked.

Staff may write `{{ first_name }}`, `{{ first_name | default("there") }}` or
`{% if first_name %}...{% endif %}` in a step's subject, preheader, CTA label and body.
Markdown, MJML and premailer would each mangle such a tag (premailer URL-encodes it
inside href), so every tag is swapped for an opaque alphanumeric token first and put
back after premailer. A tag is one whole `{{ ... }}` or `{% ... %}` on one line;
everything else, including a stray `{{`, `{%` or `{#` in the article, is literal text
and is escaped so that Jinja prints it as written. In Markdown, `\\{{ x }}` (a
backslash first) shows `{{ x }}` as typed; `{% raw %}...{% endraw %}` shows what it
holds as typed anywhere, code included (split writes an article's own tags so).

The only variables are first_name ("" when unknown), unsubscribe_url,
preferences_url and the contact's attributes, each read as `attributes.<name>` (""
when the contact has none of that name); a contact's data is a value, never template
source.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.authoring.conditions import ATTRIBUTE_NAME
from campaigns.authoring.sources import line_containing, step_file
from campaigns.authoring.spec import Campaign, Step
from campaigns.errors import InputError

__all__ = [
    "ATTRIBUTES",
    "VARIABLES",
    "PlaceholderTokens",
    "check_staff_text",
    "concat",
    "contact_environment",
]

ATTRIBUTES = "attributes"  # read only as `attributes.<name>` (see attribute_misuse)
VARIABLES = frozenset({"first_name", "unsubscribe_url", "preferences_url", ATTRIBUTES})

# A placeholder is one whole `{{ ... }}` or `{% ... %}` on one line with no other
# delimiter inside it; any other brace is article text and shows as written.
_TAG = re.compile(
    r"""
    (?<!\\)                                  # `\{{` is Markdown for a literal brace
    (?: \{\{ (?!\{) (?:(?!\{[{%#]).)*? \}\}     # {{ expression }}; in `{{{ x }}}` the inner one
      | \{% (?:(?!\{[{%#]).)*? %\}              # {% statement %}
    )
    """,
    re.VERBOSE,
)
_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.DOTALL)
_OPENER = re.compile(r"\{(?=[{%#])")
_BRACE = '{{ "{" }}'  # a tag that prints one literal brace
_STATEMENT = re.compile(r"^\{%[-+]?\s*(\w+)")
_STATEMENTS = frozenset({"if", "elif", "else", "endif"})


class PlaceholderTokens:
    """Opaque alphanumeric stand-ins for Jinja tags while text goes through the pipeline.

    Letters and digits mean nothing to Markdown, MJML, lxml or premailer, so a token
    comes out exactly as it went in, wherever it lands (text, attribute, URL).
    """

    def __init__(self, seed: str) -> None:
        salt = 0
        while True:  # a prefix that the content cannot contain, so no text is mistaken for one
            nonce = hashlib.sha256(f"{salt}:{seed}".encode()).hexdigest()[:10]
            self.prefix = f"DMX{nonce}N"
            if self.prefix not in seed:
                break
            salt += 1
        self._pattern = re.compile(re.escape(self.prefix) + r"\d+X")
        self._literal = re.compile(r"\{(?=[{%#]|" + re.escape(self.prefix) + ")")
        self.tags: dict[str, str] = {}
        self._by_tag: dict[str, str] = {}

    def token(self, tag: str) -> str:
        """The token for one Jinja tag (the same tag always gets the same token)."""
        if tag not in self._by_tag:
            token = f"{self.prefix}{len(self.tags)}X"
            self.tags[token] = tag
            self._by_tag[tag] = token
        return self._by_tag[tag]

    def protect(self, text: str) -> str:
        """Replace every Jinja tag in `text` with its token; a raw block's text is literal.

        In a raw block each brace that would open a delimiter becomes the token of a tag
        printing one brace, so the rest goes through Markdown as ordinary text.
        """
        text = _RAW.sub(lambda m: _OPENER.sub(lambda _: self.token(_BRACE), m.group(1)), text)
        return _TAG.sub(lambda m: self.token(m.group(0)), text)

    def in_url(self, url: str) -> str:
        """Make each `{{ ... }}` inside a URL (not at its start) URL-encode its value.

        A first name in a query string must not end it at a space or `&`; a tag at
        the start is a whole URL (`{{ unsubscribe_url }}`) and is left alone.
        """

        def encode(match: re.Match[str]) -> str:
            tag = self.tags[match.group(0)]
            if match.start() == 0 or not tag.startswith("{{"):
                return match.group(0)
            expression = tag[2:-2].strip("-+ \t")
            return self.token(f"{{{{ ({expression}) | urlencode }}}}")

        return self._pattern.sub(encode, url)

    def source(self, text: str) -> str:
        """Jinja source for `text`: literal delimiters escaped, then tokens back to tags."""
        # `{` starts a Jinja delimiter only before `{`, `%` or `#`; a `{` right before a
        # token would join the restored tag's own `{{`, so it is escaped too.
        escaped = self._literal.sub('{{ "{" }}', text)
        return self._pattern.sub(lambda m: self.tags[m.group(0)], escaped)


def _default(value: Any, default_value: str = "", boolean: bool = True) -> Any:
    """Jinja's `default`, but an empty first name counts as missing too."""
    if isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


@lru_cache(maxsize=1)
def contact_environment() -> Environment:
    # Sandboxed because a published version's steps come from the database too;
    # printing a plain variable costs the same as in an ordinary Environment.
    env = ImmutableSandboxedEnvironment(
        autoescape=True,  # the text parts switch it off with {% autoescape false %}
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.globals.clear()  # only VARIABLES exist: no range(), lipsum(), dict() ...
    env.filters["default"] = env.filters["d"] = _default
    del env.filters["safe"]  # `{{ first_name | safe }}` would put a contact's HTML in the email
    return env


def check_staff_text(
    text: str, field: str | None, tokens: PlaceholderTokens, campaign: Campaign, step: Step
) -> None:
    """Reject a broken tag or an unknown variable in staff text, naming file, line, field."""
    source = step_file(campaign, step)
    file_text = campaign.files.get(step.file, "")

    def error(message: str, needle: str) -> InputError:
        return InputError(
            message, source=source, line=line_containing(file_text, needle), field=field
        )

    tags = _TAG.findall(without_raw(text))
    for tag in tags:
        statement = _STATEMENT.match(tag)
        if statement and statement.group(1) not in _STATEMENTS:
            raise error(
                f"{tag} is not supported in an email: use {{% if %}} ... {{% endif %}}, "
                "and braces that are not a placeholder show as written",
                tag,
            )
    try:
        tree = contact_environment().parse(tokens.source(tokens.protect(text)))
        contact_environment().compile(tree)  # an unknown filter is found here, not by parse()
    except TemplateSyntaxError as exc:
        # Escaping adds no line breaks, so the error's line is a line of `text`.
        lines = text.splitlines() or [""]
        raise error(
            f"placeholder error: {exc.message}", lines[min(exc.lineno, len(lines)) - 1].strip()
        ) from None
    misuse = attribute_misuse(tree)
    if misuse:
        tag = next((t for t in tags if ATTRIBUTES in t), ATTRIBUTES)
        raise error(f"{misuse} in {tag}", tag)
    unknown = sorted(meta.find_undeclared_variables(tree) - VARIABLES)
    if unknown:
        name = unknown[0]
        tag = next((t for t in tags if re.search(rf"\b{name}\b", t)), name)
        raise error(
            f"unknown placeholder {name!r} in {tag}; "
            f"the variables are {', '.join(sorted(VARIABLES))}",
            tag,
        )


def attribute_misuse(tree: nodes.Template) -> str | None:
    """What is wrong with a use of `attributes` in a parsed step, or None.

    Only `attributes.<name>` is a value (filters and tests may follow it): the mapping
    alone, an item lookup, a call or an attribute of the value would print nothing
    useful or fail for some contact at send time, so `check` refuses them now.
    """
    parents: dict[int, nodes.Node] = {}
    for node in tree.find_all(nodes.Node):
        for child in node.iter_child_nodes():
            parents[id(child)] = node
    hint = "write {{ attributes.NAME }} (NAME: letters, digits, underscores)"
    for name in tree.find_all(nodes.Name):
        if name.name != ATTRIBUTES:
            continue
        read = parents.get(id(name))
        if not isinstance(read, nodes.Getattr) or read.node is not name:
            return f"`attributes` is read one at a time: {hint}"
        if not ATTRIBUTE_NAME.match(read.attr):
            return f"{read.attr!r} is not an attribute name: {hint}"
        outer = parents.get(id(read))
        if isinstance(outer, nodes.Getattr | nodes.Getitem | nodes.Call) and outer.node is read:
            return f"attributes.{read.attr} is text, with no parts to look up: {hint}"
    return None


def without_raw(text: str) -> str:
    """`text` without its `{% raw %}` blocks: what remains may hold placeholders."""
    return _RAW.sub("", text)


# What a block of a contact template renders, joined (a bound method: no lookup per call).
concat = "".join
