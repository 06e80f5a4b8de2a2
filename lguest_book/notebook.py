"""Small helpers for the book's notebooks: showing the model's own source, and a trace, in
a form that reads well in JupyterLab and compares exactly under nbval.

Every object here has a deterministic plain-text form (what nbval compares) and a richer
Markdown form (what JupyterLab shows).  Nothing here changes the model.
"""

from __future__ import annotations

import inspect as _pyinspect

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


def twin(name: str) -> Shown:
    """The Python twin of the C function ``name``, read from the package itself (so the book
    and the model cannot drift), headed by the C name and its narrative marker."""
    if name not in _pt.C_FUNCTIONS:
        raise ValueError(f"{name!r} is not a function of page_tables.c")
    source = _pyinspect.getsource(vars(_pt)[name]).rstrip()  # the twin, not its checked view
    marker = _pt.MARKERS[name]
    head = f"{name}() — {marker} — lguest_book/page_tables.py"
    return Shown(f"**`{name}()`** · {marker} · `lguest_book/page_tables.py`\n\n```python\n{source}\n```", f"{head}\n{source}")


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
