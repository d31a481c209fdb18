"""HTML pieces of the report: one static page, inline CSS, figures as inline base64 PNG, no script at all.

One escaping rule: every string is escaped unless it is `Raw`, and `Raw` is only made here, from this module's
own tags with escaped values filled in (`markup`). The page's Content-Security-Policy allows no script, no
network, no frames and no style but the page's own stylesheet (by its hash), so even markup that slipped through
could neither run, fetch, nor restyle the page; long texts fold into ``<details>``, which needs no script.
"""

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .notices import Notice, also_line
from .text import Code, Sentence, fmt


PREVIEW_CHARS = 150
FOLD_CHARS = 240  # texts longer than this (or over FOLD_LINES lines) are folded
FOLD_LINES = 4

CSS = """
:root { --ink:#1d2433; --muted:#5f6b7a; --line:#e3e7ee; --bg:#f5f7fa; --card:#fff; --accent:#1f4e99; --cut:#b0303a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font:14px/1.45 system-ui,-apple-system,"Segoe UI",
  Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:linear-gradient(120deg,#14305e,#1f4e99 60%,#2d6cc0); color:#fff; padding:26px 36px 20px; }
header h1 { margin:0 0 4px; font-size:23px; font-weight:650; letter-spacing:.2px; }
header .sub { color:#d5e1f5; font-size:13px; }
.tiles { display:flex; flex-wrap:wrap; gap:12px; margin-top:18px; }
.tile { background:rgba(255,255,255,.12); border:1px solid rgba(255,255,255,.18); border-radius:10px;
  padding:10px 14px; min-width:150px; }
.tile .v { font-size:20px; font-weight:650; white-space:nowrap; }
.tile .k { font-size:12px; color:#d5e1f5; letter-spacing:.3px; }
.tile .n { font-size:11.5px; color:#e7eefa; }
nav { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line); padding:8px 36px; }
nav a { color:var(--accent); text-decoration:none; margin-right:20px; font-weight:550; font-size:13px; }
main { max-width:1240px; margin:0 auto; padding:8px 28px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px; margin:20px 0; padding:18px 24px; }
h2 { margin:0 0 6px; font-size:18px; } h3 { margin:18px 0 6px; font-size:15px; }
p.lead { color:var(--muted); margin:0 0 12px; max-width:900px; }
img { max-width:100%; height:auto; display:block; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(460px,1fr)); gap:14px; }
figure { margin:8px 0; } figcaption { color:var(--muted); font-size:12px; margin-top:2px; }
table { border-collapse:collapse; width:100%; font-size:12.5px; margin:6px 0 10px; }
th { text-align:left; color:var(--muted); font-weight:600; border-bottom:2px solid var(--line); padding:6px 8px; }
td { border-bottom:1px solid var(--line); padding:6px 8px; vertical-align:top; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.cut td { border-bottom:2px dashed var(--cut); }
tr.dropped td.rank { color:var(--cut); }
.text, details .full { white-space:pre-wrap; word-break:break-word; font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,
  Consolas,monospace; max-width:520px; }
details summary { cursor:pointer; white-space:pre-wrap; word-break:break-word; font:12px/1.45 ui-monospace,
  SFMono-Regular,Menlo,Consolas,monospace; max-width:520px; color:#2b3442; }
details > summary.note { font-family:system-ui,sans-serif; font-size:13px; color:var(--accent); margin:6px 0; }
.scroll { overflow-x:auto; }
details summary .more { color:var(--accent); font-family:system-ui,sans-serif; font-size:11.5px; }
.chip { display:inline-block; border-radius:999px; padding:1px 8px; font-size:11.5px; background:#e8eef8; color:#1f4e99; }
.chip.flag { background:#fbe9e7; color:#a1302b; }
.role { color:var(--accent); font-weight:600; }
.raw { color:var(--muted); font-size:11px; }
.rho { font-weight:600; }
code { background:#f0f2f6; border-radius:4px; padding:0 4px; font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 30px; }
.note { color:var(--muted); font-size:12px; }
.headline { margin-top:16px; background:#fff4d6; color:#3d2c00; border-left:5px solid #e0a100; border-radius:8px;
  padding:10px 16px; max-width:1100px; }
.headline p { margin:4px 0; } .headline b { color:#7a4b00; }
.headline code { background:rgba(0,0,0,.07); }
table.kv td { white-space:pre-line; }
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
CSP = f"default-src 'none'; img-src data:; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'"


class Raw(str):
    """HTML built here: inserted as it is. Any other value is escaped."""


def esc(value: Any) -> str:
    return value if isinstance(value, Raw) else html.escape("" if value is None else str(value), quote=True)


def markup(template: str, *values: Any) -> Raw:
    """`template` (this module's tags, with ``{}`` where values go) with each value escaped unless `Raw`: the way
    every piece of the page that mentions data is built."""
    return Raw(template.format(*(esc(v) for v in values)))


def code_spans(text: str) -> Raw:
    """`text` (this library's words) escaped, with its backtick spans shown as ``<code>``."""
    return Raw(re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text)))


def sentence(s: Sentence) -> Raw:
    """A `Sentence`: its words with their code spans, each value escaped (`Code` values as ``<code>``)."""
    values = [markup("<code>{}</code>", fmt(v)) if isinstance(v, Code) else esc(fmt(v)) for v in s.values]
    return Raw(code_spans(s.template).format(*values))


def headline(notices: Sequence[Notice]) -> Raw:
    """The notices a reader must see first, as one block for the page's header ('' when there are none)."""
    if not notices:
        return Raw("")
    items = []
    for notice in (n for n in notices if n.primary):
        lead = markup("<code>{}</code> ", notice.column) if notice.column is not None else ""
        items.append(markup("<p>{}{} What to do: {}.</p>", Raw(lead), code_spans(notice.sentence.rstrip(".") + "."),
                            code_spans(notice.remedy)))  # fmt: skip
    also = also_line(notices)
    if also:
        listed = ", ".join(markup("<code>{}</code> ({})", column, what) for column, what in also[1])
        items.append(markup("<p>{} {}.</p>", also[0], Raw(listed)))
    return markup('<div class="headline" id="read-first"><b>Read this first.</b>{}</div>', Raw("".join(items)))


def table(
    header: Sequence[Any], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (), row_class=None, cls: str = ""
) -> Raw:
    """A table; columns whose index is in `numeric` align right. `row_class(k)` may give a row a class, `cls` the
    table (``kv``: line breaks in cells shown)."""

    def align(j: int) -> str:
        return ' class="num"' if j in numeric else ""

    head = "".join(f"<th{align(j)}>{esc(h)}</th>" for j, h in enumerate(header))
    body = []
    for k, row in enumerate(rows):
        extra = row_class(k) if row_class else ""
        attr = f' class="{esc(extra)}"' if extra else ""
        cells = "".join(f"<td{align(j)}>{esc(v)}</td>" for j, v in enumerate(row))
        body.append(f"<tr{attr}>{cells}</tr>")
    attr = f' class="{esc(cls)}"' if cls else ""
    return Raw(f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def image(png: bytes, alt: str) -> Raw:
    data = base64.b64encode(png).decode("ascii")
    return Raw(f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">')


def figure(png: bytes, alt: str, caption: str = "") -> Raw:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Raw(f"<figure>{image(png, alt)}{cap}</figure>")


def _as_text(value: Any) -> tuple[str, Raw]:
    """(plain text, HTML) of a prompt or completion cell: a string, a conversation (role: content), or JSON."""
    if isinstance(value, str):
        return value, Raw(esc(value))
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        plain, parts = [], []
        for m in value:
            content = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"], ensure_ascii=False)
            plain.append(f"{m.get('role', '?')}: {content}")
            parts.append(f'<span class="role">{esc(m.get("role", "?"))}:</span> {esc(content)}')
        return "\n".join(plain), Raw("\n".join(parts))
    text = "" if value is None else json.dumps(value, ensure_ascii=False, default=str)
    return text, Raw(esc(text))


def text_cell(value: Any) -> Raw:
    """A prompt or completion, escaped; long ones folded behind their first characters."""
    plain, full = _as_text(value)
    if len(plain) <= FOLD_CHARS and plain.count("\n") < FOLD_LINES:
        return Raw(f'<div class="text">{full}</div>')
    preview = plain[:PREVIEW_CHARS].rstrip()
    more = f"show all {len(plain):,} characters"
    return Raw(
        f'<details><summary>{esc(preview)}\u2026 <span class="more">{more}</span></summary>'
        f'<div class="full">{full}</div></details>'
    )


def chip(label: str, is_flagged: bool) -> Raw:
    return Raw(f'<span class="chip{" flag" if is_flagged else ""}">{esc(label)}</span>')


def tile(key: str, value: str, note: str = "") -> Raw:
    extra = f'<div class="n">{esc(note)}</div>' if note else ""
    return Raw(f'<div class="tile"><div class="k">{esc(key)}</div><div class="v">{esc(value)}</div>{extra}</div>')


def section(anchor: str, title: str, lead: str, *body: str) -> Raw:
    intro = f'<p class="lead">{esc(lead)}</p>' if lead else ""
    return Raw(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{intro}{"".join(esc(b) for b in body)}</section>')


def page(
    title: str,
    subtitle: str,
    tiles: Sequence[str],
    nav: Sequence[tuple[str, str]],
    sections,
    footer: str,
    notices: Sequence[Notice] = (),
):
    """The whole document; `notices` are shown in the header, under the tiles."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(name)}</a>' for anchor, name in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>\n<body>'
        f'<header id="summary"><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div>'
        f'<div class="tiles">{"".join(esc(t) for t in tiles)}</div>{headline(notices)}</header>'
        f"<nav>{links}</nav><main>{''.join(esc(s) for s in sections)}</main>"
        f"<footer>{esc(footer)}</footer></body></html>\n"
    )
