"""Small helpers for the book's notebooks: showing the model's own source, and a trace, in
a form that reads well in JupyterLab and compares exactly under nbval.

Every object here has a deterministic plain-text form (what nbval compares) and a richer
Markdown form (what JupyterLab shows).  Nothing here changes the model.
"""

from __future__ import annotations

import html as _html
import inspect as _pyinspect

from . import csource as _cs
from . import page_tables as _pt
from .trace import Trace


class Shown:
    """Something to display: Markdown for people, the same text for tests."""

    def __init__(self, markdown: str, text: str):
        self._markdown = markdown
        self._text = text

    def _repr_markdown_(self) -> str:
        return self._markdown

    def __repr__(self) -> str:
        return self._text


def _c_head(name: str) -> tuple[str, str]:
    """Where the C is (line range, link at v4.7) and who wrote it: (markdown, text)."""
    where = _cs.where(name)
    links = " · ".join(f"[{label}]({u})" for label, u in _cs.links(name))
    authors = _cs.authorship_line(name)
    md = f"C: `{where}` — {links}  \n" + "  \n".join(_html.escape(a) for a in authors.splitlines())
    text = f"C: {where}: {_cs.links(name)[0][1]}\n{authors}"
    return md, text


def twin(name: str, c: bool = False, source=None) -> Shown:
    """The Python twin of the C function ``name``, read from the package itself (so the book
    and the model cannot drift), headed by the C name, its narrative marker, its line range in
    Linux 4.7's page_tables.c (linked at v4.7) and who wrote its tokens (cregit).

    ``c=True`` shows the C beside the Python, read live from a source the reader has (``source``,
    ``$LGUEST_BOOK_C_SOURCE`` or the cregit seed beside the repository); without one it says
    where to get it.  The book's stored cells never pass ``c=True``: no kernel code is stored."""
    if name not in _pt.C_FUNCTIONS:
        raise ValueError(f"{name!r} is not a function of page_tables.c")
    source_py = _pyinspect.getsource(vars(_pt)[name]).rstrip()  # the twin, not its checked view
    marker = _pt.MARKERS[name]
    head = f"{name}() — {marker} — lguest_book/page_tables.py"
    c_md, c_txt = _c_head(name)
    md = f"**`{name}()`** · {marker} · `lguest_book/page_tables.py`  \n{c_md}\n\n"
    text = f"{head}\n{c_txt}\n"
    if not c:
        return Shown(md + f"```python\n{source_py}\n```", text + source_py)
    found = _cs.c_text(name, source)
    if found is None or not found.bodies:
        return Shown(md + _cs.HOW_TO_GET + f"\n\n```python\n{source_py}\n```",
                     text + _cs.HOW_TO_GET + "\n" + source_py)
    c_src = "\n\n".join(found.bodies).expandtabs(4)
    html = (f"<div>{_markdown_inline(md)}<p>C read live from <code>{_html.escape(found.origin)}</code></p>"
            "<table><tr><th>C (Linux 4.7)</th><th>Python (lguest_book)</th></tr><tr>"
            f"<td style='vertical-align:top;text-align:left'><pre>{_html.escape(c_src)}</pre></td>"
            f"<td style='vertical-align:top;text-align:left'><pre>{_html.escape(source_py)}</pre></td>"
            "</tr></table></div>")
    return SideBySide(html, md + f"C read live from `{found.origin}`\n\n```c\n{c_src}\n```\n\n```python\n{source_py}\n```",
                      text + "C read live from " + found.origin + "\n" + columns(c_src, source_py))


def columns(left: str, right: str, width: int = 160) -> str:
    """Two texts side by side in plain text (each column wrapped to half the width)."""
    import textwrap
    half = (width - 3) // 2
    def wrap(t):
        out = []
        for line in t.splitlines() or [""]:
            out.extend(textwrap.wrap(line, half, subsequent_indent="    ", drop_whitespace=False) or [""])
        return out
    a, b = wrap(left.expandtabs(4)), wrap(right.expandtabs(4))
    n = max(len(a), len(b))
    a += [""] * (n - len(a))
    b += [""] * (n - len(b))
    return "\n".join(f"{x:<{half}} | {y}".rstrip() for x, y in zip(a, b))


def _markdown_inline(md: str) -> str:
    """The twin's heading as HTML (links kept), for the side-by-side view."""
    import re
    out = _html.escape(md).replace("  \n", "<br>")
    out = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"<a href='\2'>\1</a>", out)
    out = re.sub(r"\*\*`([^`]+)`\*\*", r"<b><code>\1</code></b>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


class SideBySide(Shown):
    """A live C/Python comparison: HTML for JupyterLab, Markdown and text otherwise."""

    def __init__(self, html: str, markdown: str, text: str):
        super().__init__(markdown, text)
        self._html = html

    def _repr_html_(self) -> str:
        return self._html


def source(obj) -> Shown:
    """Any function or class of the package, shown the same way."""
    text = _pyinspect.getsource(obj).rstrip()
    where = f"{obj.__module__}.{obj.__qualname__}"
    return Shown(f"`{where}`\n\n```python\n{text}\n```", f"{where}\n{text}")


def decisions(trace: Trace, func: str | None = "demand_page") -> Shown:
    """The decisions a traced run made, as a checklist."""
    rows = [f"{'✔' if e.outcome else '✘'} {e.label}" for e in trace.decisions(func)]
    md = "\n".join(f"- {r}" for r in rows)
    return Shown(md, "\n".join(rows))


def call_tree(trace: Trace, decisions: bool = True) -> Shown:
    text = trace.render(decisions=decisions)
    return Shown(f"```text\n{text}\n```", text)
