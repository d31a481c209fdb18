"""User text in the cards (markdown), the report (HTML) and the terminal: one escaping rule per format, and
sentences built once for both documents.

Anything that comes from the data or its provenance (column names, labels, split names, paths, provenance values)
is user text: in markdown it is written so that it renders as itself (HTML special characters as entities, markdown
punctuation backslash-escaped, line breaks as spaces), in a code span it gets a fence longer than any backtick run
it holds. Text this library wrote (`Md`) is inserted as it is. A `Sentence` keeps its fixed words apart from the
values it mentions, so the same sentence renders safely as markdown (`to_markdown`) or as HTML (`report_html`). On a
terminal (`terminal_text`) user text loses its escape sequences and control characters, so a column name from a
downloaded file cannot recolour, move the cursor, rewrite the screen or reorder the line.
"""

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Md(str):
    """Markdown built here: inserted as it is. Any other value is user text and is escaped."""


class Code(str):
    """A value shown as code (an identifier, a path): a code span in markdown, ``<code>`` in HTML."""


_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]|~$])")  # what could start markup inline (HTML chars become entities)
# ANSI/VT escape sequences: CSI (ESC [ or the 8-bit CSI), OSC (ESC ] ... BEL or ESC \\), and two-character ESC codes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?")
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # and bidi overrides


def fmt(value: Any) -> str:
    """A value as plain text: floats to 7 significant digits (scores differ in the 4th to 6th), lists
    comma-joined, mappings as ``key: value`` pairs."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.7g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) if value else "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) if value else "-"
    return "-" if value is None else str(value)


def terminal_text(value: Any) -> str:
    """`value` (user text: a column name, a path, a provenance value) as it may be printed to a terminal: escape
    sequences removed, line breaks and tabs as one space, other control characters and bidi overrides removed."""
    text = _LINE_BREAKS.sub(" ", _ESCAPES.sub("", str(value)))
    return _CONTROLS.sub("", text)


def md_text(value: Any) -> Md:
    """`value` (formatted by `fmt`) as markdown that renders as exactly that text, on one line."""
    if isinstance(value, Md):
        return value
    text = html.escape(" ".join(fmt(value).splitlines()), quote=False)
    return Md(_MD_PUNCTUATION.sub(r"\\\1", text))


def md_code(value: Any) -> Md:
    """`value` as one markdown code span whatever it holds: the fence is one backtick longer than the longest run
    inside, padded with a space when the text starts or ends with a backtick; pipes escaped for table cells."""
    text = " ".join(fmt(value).splitlines()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return Md(f"{fence}{pad}{text}{pad}{fence}")


def lines(value: Any) -> list[str]:
    """A provenance value as lines a person reads: a mapping one ``key: value`` a line, a list of mappings one
    mapping a line (``key: value · key: value``), anything else one line."""
    if isinstance(value, Mapping) and value:
        return [f"{k}: {fmt(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        return [" \u00b7 ".join(f"{k}: {fmt(x)}" for k, x in v.items()) for v in value]
    return [fmt(value)]


def md_value(value: Any) -> Md:
    """A provenance value in a card cell: strings and lists of strings as code, mappings and lists of mappings
    one entry a line, the rest as text."""
    if isinstance(value, Md):
        return value
    if isinstance(value, str):
        return md_code(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return Md(", ".join(md_code(v) for v in value))
    return Md("<br>".join(md_text(line) for line in lines(value)))


def py_string(value: Any) -> Md:
    """`value` as a Python string literal (for code samples in a card: quotes and line breaks escaped)."""
    return Md(json.dumps(str(value), ensure_ascii=False))


@dataclass(frozen=True)
class Sentence:
    """Fixed words with ``{}`` where `values` go. The words are this library's (backtick spans in them are code);
    the values are user text, or `Code`."""

    template: str
    values: tuple = ()

    def plain(self) -> str:
        return self.template.format(*(fmt(v) for v in self.values))


def to_markdown(sentence: Sentence) -> Md:
    return Md(sentence.template.format(*(md_code(v) if isinstance(v, Code) else md_text(v) for v in sentence.values)))


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Md:
    """A GitHub-flavoured markdown table; every cell not already `Md` is escaped as user text."""
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(v) for v in row) + " |" for row in rows]
    return Md("\n".join(lines))
