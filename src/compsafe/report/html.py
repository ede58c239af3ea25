"""A tiny HTML builder for the static report: every value is escaped unless it is ``Markup``.

Model names, group names, subset names and generations come from models and datasets, so
they are untrusted text: a generation containing ``<script>alert(1)</script>`` must show as
text. Building pages only through ``el()`` (which escapes every child and attribute that is
not already ``Markup``) makes that the default instead of something each call site must
remember. The page has no JavaScript and no external URLs; its CSS is inline.

    body = el("p", "group ", el("code", group_name), class_="note")
    page("compsafe report", body)
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

_VOID = {"img", "br", "hr", "meta", "link", "col"}


class Markup(str):
    """A string that is already HTML (built by ``el``); never escaped again."""

    def __add__(self, other: object) -> Markup:
        return Markup(str(self) + str(esc(other)))


# C0 controls other than tab, newline and carriage return (NUL first of all) are parse
# errors in HTML; a generation or dataset row can carry them, so they are shown as U+FFFD.
_CONTROLS = {c: "\ufffd" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}


def esc(value: object) -> Markup:
    """``value`` as HTML text: Markup stays as is, None is empty, anything else is escaped
    (and stripped of control characters HTML cannot carry)."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value).translate(_CONTROLS), quote=True))


def join(parts: Iterable[object], sep: object = "") -> Markup:
    """Concatenate escaped parts (the HTML counterpart of ``str.join``)."""
    return Markup(str(esc(sep)).join(str(esc(p)) for p in parts))


def el(tag: str, *children: object, **attrs: object) -> Markup:
    """``<tag attrs>children</tag>``; ``class_`` becomes ``class``, ``data_x`` ``data-x``.

    Attributes whose value is None or False are left out; True gives a bare attribute.
    Children may be strings, Markup, None (skipped) or lists of those.
    """
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    opening = f"<{' '.join(parts)}>"
    if tag in _VOID:
        return Markup(opening)
    return Markup(f"{opening}{_children(children)}</{tag}>")


def _children(children: Iterable[object]) -> str:
    out = []
    for child in children:
        if isinstance(child, (list, tuple)):
            out.append(_children(child))
        elif child is not None:
            out.append(str(esc(child)))
    return "".join(out)


def table(headers: Sequence[object], rows: Iterable[Sequence[object]],
          numeric: Sequence[bool] | None = None, class_: str = "data") -> Markup:
    """A table with a header row; ``numeric[i]`` right-aligns column i (digits line up)."""
    numeric = numeric or [False] * len(headers)
    head = el("tr", [el("th", h, class_="num" if num else None)
                     for h, num in zip(headers, numeric, strict=True)])
    body = [el("tr", [el("td", cell, class_="num" if num else None)
                      for cell, num in zip(row, numeric, strict=True)]) for row in rows]
    return el("table", el("thead", head), el("tbody", body), class_=class_)


CSS = """
:root { --fg: #1b1b1b; --muted: #5a5a5a; --line: #d9d9d9; --bg-alt: #f5f6f8;
        --worse: #b2182b; --better: #2166ac; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #333; }
h3 { font-size: 17px; margin: 24px 0 6px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
nav { background: var(--bg-alt); border: 1px solid var(--line); padding: 8px 12px;
      border-radius: 6px; margin: 12px 0 20px; }
nav a { margin-right: 14px; white-space: nowrap; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0 18px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px;
        background: var(--bg-alt); }
.card b { display: block; font-size: 22px; }
.card span { color: var(--muted); font-size: 13px; }
table.data { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0 14px; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 8px;
                               text-align: left; vertical-align: top; }
table.data th { background: var(--bg-alt); position: sticky; top: 0; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.worse { color: var(--worse); font-weight: 600; }
.better { color: var(--better); font-weight: 600; }
.muted, .note { color: var(--muted); }
.warn { border-left: 4px solid var(--worse); padding: 2px 12px; margin: 8px 0; }
.nowrap { white-space: nowrap; }
.note { font-size: 13px; }
ul.caveats { font-size: 13px; color: #7a4b00; margin: 4px 0 12px; padding-left: 18px;
             list-style: none; }
.wrap { overflow-x: auto; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
       overflow-wrap: anywhere; }
figure { margin: 14px 0 22px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 0 20px; }
.grid figure { margin: 8px 0 14px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.gen { white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; color: var(--muted); }
footer { margin-top: 40px; border-top: 1px solid var(--line); padding-top: 10px;
         font-size: 13px; color: var(--muted); }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
footer dt { font-weight: 600; }
footer dd { margin: 0; overflow-wrap: anywhere; }
"""


def page(title: str, body: Markup) -> Markup:
    """A complete HTML document: UTF-8, inline CSS, no scripts, no external resources."""
    head = el("head", Markup('<meta charset="utf-8">'),
              el("meta", name="viewport", content="width=device-width, initial-scale=1"),
              el("title", title), el("style", Markup(CSS)))
    return Markup("<!DOCTYPE html>\n" + el("html", head, el("body", el("main", body)),
                                           lang="en") + "\n")
