"""A step's batch form: one shared body with substitution tags, and a contact's tag values.

Batch form (per step, at compile time): when the HTML and text use the variables only
as plain values, each such expression becomes a substitution tag in one shared copy
of the content, and a contact's values come from a few tiny renders. A provider can
then send one body for many contacts (SendGrid personalizations with substitutions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from jinja2 import Template, nodes

from campaigns.rendering.placeholders import ATTRIBUTES, VARIABLES, concat, contact_environment
from senders.base import BatchForm, TaggedContent

__all__ = ["Batch", "step_batch"]

# What a per-contact expression may be for its step to have a batch form: a variable
# or one of the contact's attributes, a constant, `default` with constant arguments,
# or `urlencode` (which the compiler puts on a name inside a link). Anything else,
# `{% if first_name %}` above all, makes the content's shape differ per contact, so the
# step goes one rendered email at a time.
_PLAIN_FILTERS = frozenset({"default", "d", "urlencode"})


def _plain(expr: nodes.Node) -> bool:
    """Whether `expr` is a plain per-contact value (see _PLAIN_FILTERS)."""
    if isinstance(expr, nodes.Const):
        return True
    if isinstance(expr, nodes.Name):
        return expr.name in VARIABLES and expr.name != ATTRIBUTES
    if isinstance(expr, nodes.Getattr):  # `attributes.patient_type`: one value per contact
        return isinstance(expr.node, nodes.Name) and expr.node.name == ATTRIBUTES
    if isinstance(expr, nodes.Filter):
        return (
            expr.name in _PLAIN_FILTERS
            and expr.node is not None
            and _plain(expr.node)
            and all(isinstance(arg, nodes.Const) for arg in expr.args)
            and all(isinstance(kwarg.value, nodes.Const) for kwarg in expr.kwargs)
            and expr.dyn_args is None
            and expr.dyn_kwargs is None
        )
    return False


_Part = str | tuple[nodes.Expr, bool]  # literal text, or (expression, autoescaped)


def _flatten(body: list[nodes.Node], autoescape: bool, out: list[_Part]) -> bool:
    """A block as literal text and plain expressions, in order; False if it has anything else."""
    for node in body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    out.append(child.data)  # written as it is, escaping or not
                elif _plain(child):
                    out.append((child, autoescape))
                else:
                    return False
        elif isinstance(node, nodes.Scope):
            if not _flatten(node.body, autoescape, out):
                return False
        elif isinstance(node, nodes.ScopedEvalContextModifier):  # {% autoescape false %}
            options = {option.key: option.value for option in node.options}
            setting = options.pop("autoescape", None)
            if options or not isinstance(setting, nodes.Const):
                return False
            if not _flatten(node.body, bool(setting.value), out):
                return False
        else:
            return False
    return True


class Batch:
    """A step's tagged content, and the template whose blocks give one contact's tag values.

    Every distinct (expression, escaping) gets one tag `-<marker>h<n>-` (HTML, the value
    escaped) or `-<marker>t<n>-` (text, raw): SendGrid applies one value per key to
    all content, so a value escaped for HTML cannot serve the text part. The marker
    holds a nonce absent from the step's literal text, so no text is mistaken for a
    tag; the closing `-` keeps `h1` from matching the start of `h10`. Letters, digits
    and `-` survive every place a tag lands (text, attribute, URL) unchanged. A value
    could still hold the marker (a contact's name is theirs to choose): BatchForm.clashes
    finds that and such a message goes rendered in full.
    """

    def __init__(self, parts: dict[str, list[_Part]], key: str, seed: str) -> None:
        literal = seed + concat(p for ps in parts.values() for p in ps if isinstance(p, str))
        salt = 0
        while True:
            self.marker = "dm" + hashlib.sha256(f"{salt}:{literal}".encode()).hexdigest()[:12]
            if self.marker not in literal:
                break
            salt += 1
        # One block per distinct (expression, escaping), in order of first use.
        slots: dict[tuple[str, bool], tuple[nodes.Expr, bool]] = {}
        for ps in parts.values():
            for part in ps:
                if not isinstance(part, str):
                    slots.setdefault((repr(part[0]), part[1]), part)
        values = _values_template(list(slots.values()))
        fills: dict[tuple[str, bool], str] = {}  # what goes in the content for each
        self._slots: list[tuple[str, Callable[[Any], Any]]] = []  # (tag, its block)
        for number, (slot, (expr, escape)) in enumerate(slots.items()):
            block = values.blocks[f"v{number}"]
            if isinstance(expr, nodes.Name) or any(expr.find_all(nodes.Name)):
                fills[slot] = tag = f"-{self.marker}{'h' if escape else 't'}{number}-"
                self._slots.append((tag, block))
            else:  # a constant, like `{{ "{" }}` for a literal brace: its text
                fills[slot] = concat(block(values.new_context({}, shared=True)))

        def content(name: str) -> str:
            return concat(p if isinstance(p, str) else fills[repr(p[0]), p[1]] for p in parts[name])

        self.content = TaggedContent(key, content("html"), content("text"), self.marker)
        self._new_context = values.new_context

    def form(self, variables: dict[str, object]) -> BatchForm:
        """One contact's value for each tag."""
        context = self._new_context(variables, shared=True)
        return BatchForm(self.content, {tag: concat(block(context)) for tag, block in self._slots})


def _values_template(expressions: list[tuple[nodes.Expr, bool]]) -> Template:
    """A template with one block `v<n>` per expression, escaping as where it was found.

    Compiled from the step's own expression nodes, so each value is exactly what the
    full render writes in that place (same filters, same escaping, same sandbox).
    """
    env = contact_environment()
    body: list[nodes.Node] = []
    for number, (expr, escape) in enumerate(expressions):
        output: list[nodes.Node] = [nodes.Output([expr])]
        if not escape:
            off = nodes.Keyword("autoescape", nodes.Const(False))
            output = [nodes.ScopedEvalContextModifier([off], output)]
        body.append(nodes.Block(f"v{number}", output, False, False))
    code = env.compile(nodes.Template(body))
    return env.template_class.from_code(env, code, env.make_globals(None))


def step_batch(source: str, key: str, seed: str) -> Batch | None:
    """The step's batch form, or None when its HTML or text is more than plain values."""
    blocks = {
        block.name: block for block in contact_environment().parse(source).find_all(nodes.Block)
    }
    parts: dict[str, list[_Part]] = {"html": [], "text": []}
    for name, out in parts.items():
        if not _flatten(blocks[name].body, True, out):
            return None
    return Batch(parts, key, seed)
