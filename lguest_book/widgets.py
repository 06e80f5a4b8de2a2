"""Widgets to poke the tables: a fault stepper, a table explorer and a hypercall console.

Each widget is a plain Python object first — methods that act (``step()``, ``select()``,
``set_pte()``...) and attributes that tell its state — and an ipywidgets view second
(``.view``), so tests drive it without a browser and a notebook shows it by making it the
last expression of a cell.  The plain-text form of every widget (what nbval compares) is a
short, deterministic summary.

Like :mod:`lguest_book.plots`, this module reads the model only through
:mod:`lguest_book.inspect` (and :mod:`lguest_book.trace`); it acts only through the Guest's
public methods.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from . import fmt
from . import inspect as li
from . import plots
from .trace import Tracer


class _Shown:
    """Mixin: display ``.view`` with a short, deterministic text form.  The widgets are built
    on first use (``_build_view``, then ``_refresh``), so a widget made only to be read costs
    no ipywidgets."""

    _view = None

    @property
    def view(self):
        if self._view is None:
            self._build_view()
            self._refresh()
        return self._view

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.view._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle = dict(bundle)
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return self.summary()


# =============================================================================================
# HTML pieces shared by the widgets (inline styles: they render the same in JupyterLab and in
# a static HTML export of the saved widget state)
# =============================================================================================
_LEVEL_COLOURS = {"pgd": "#56B4E9", "pmd": "#F0E442", "pte": "#009E73", "page": "#E0E0E0"}
_HI = "#D55E00"  # vermilion: the entry this step read or wrote / what changed
_FONT = "font-family:var(--jp-code-font-family,monospace);font-size:13px;line-height:1.35"


def _esc(text) -> str:
    import html

    return html.escape(str(text), quote=False)


def _box(title: str, body: str, colour: str, highlight: str = "") -> str:
    border = f"3px solid {_HI}" if highlight else "1px solid #555"
    tag = (f"<div style='color:{_HI};font-weight:bold'>{_esc(highlight)}</div>" if highlight else "")
    return (f"<div style='display:inline-block;vertical-align:middle;border:{border};border-radius:4px;"
            f"margin:2px;min-width:150px;background:#fff'>"
            f"<div style='background:{colour};padding:1px 6px;font-weight:bold'>{_esc(title)}</div>"
            f"<div style='padding:2px 6px'>{body}{tag}</div></div>")


_ARROW = "<span style='display:inline-block;vertical-align:middle;font-size:20px;padding:0 2px'>&#10132;</span>"


class _WalkPicture:
    """The two walks of one address (shadow and Guest) at one state, as data: what a step's
    picture draws.  Built once per table state; drawn as HTML with the step's entry marked."""

    def __init__(self, guest, vaddr: int):
        L = li.layout(guest)
        self.layout = L
        self.vaddr = vaddr
        self.slot = li.current_slot(guest)
        self.linear = bool(li.limits(guest)["linear_pages"])
        self.shadow = li.walk_shadow(guest, vaddr)
        self.guest = [] if self.linear else li.walk_guest(guest, vaddr)
        cache = li.pgdir_cache(guest)[self.slot]
        self.shadow_top = cache["frame"]
        self.guest_top = cache["gpgdir"]

    def html(self, mark=None, mark_text: str = "") -> str:
        """``mark``: ("shadow", (frame, index)) or ("guest", guest-physical address): the entry
        to outline, labelled ``mark_text``."""
        L = self.layout
        fields = [("pgd", L.pgd_index(self.vaddr))] + ([("pmd", L.pmd_index(self.vaddr))] if L.pae else [])
        fields.append(("pte", L.pte_index(self.vaddr)))
        split = " ".join(f"<span style='background:{_LEVEL_COLOURS[lev]};padding:0 4px'>"
                         f"{'PDPT' if (lev == 'pgd' and L.pae) else lev.upper()} {fmt.index(i)}</span>"
                         for lev, i in fields)
        split += f" <span style='background:#eee;padding:0 4px'>offset {self.vaddr & 0xFFF:#05x}</span>"
        rows = [f"<div>{_esc(fmt.vaddr(self.vaddr))} = {split}</div>"]
        rows.append(self._walk_html("shadow", mark, mark_text))
        rows.append(self._walk_html("guest", mark, mark_text))
        return "".join(rows)

    def _walk_html(self, which: str, mark, mark_text: str) -> str:
        L = self.layout
        steps = self.shadow if which == "shadow" else self.guest
        label = (f"shadow walk (slot {self.slot}, host frames)" if which == "shadow"
                 else "Guest's walk (guest-physical)")
        out = [f"<div style='margin-top:4px'><b>{label}</b><br>"]
        if which == "guest" and self.linear:
            out.append("<i>linear mode: the Guest has no page tables yet</i></div>")
            return "".join(out)
        if not steps:
            out.append("<i>no top level in this slot</i></div>")
            return "".join(out)
        parts = []
        for st in steps:
            if which == "shadow":
                frame, idx = st.where
                title = f"{'PDPT' if (st.level == 'pgd' and L.pae) else st.level.upper()} page, frame {fmt.frame(frame, L)}"
                hit = mark is not None and mark[0] == "shadow" and tuple(mark[1]) == (frame, idx)
            else:
                title = (f"{'PDPT' if (st.level == 'pgd' and L.pae) else st.level.upper()} at "
                         f"{fmt.paddr(st.where - st.index * L.entry_bytes if st.level != 'pgd' else self.guest_top, L)}")
                hit = mark is not None and mark[0] == "guest" and mark[1] == st.where
            flags = "|".join(L.flag_names(st.value)) if st.value else "empty"
            body = (f"[{fmt.index(st.index)}] {fmt.entry(st.value, L)}<br>"
                    f"<span style='color:{'#000' if st.present else _HI}'>{_esc(flags)}"
                    f"{'' if st.present else ' — not present: the walk stops'}</span>")
            parts.append(_box(title, body, _LEVEL_COLOURS[st.level], mark_text if hit else ""))
        last = steps[-1]
        if last.present and last.level == "pte":
            pfn = L.pte_pfn(last.value)
            what = "host" if which == "shadow" else "guest"
            parts.append(_box("page", f"{what} frame {fmt.frame(pfn, L)}<br>"
                              f"+ {self.vaddr & 0xFFF:#05x}", _LEVEL_COLOURS["page"]))
        elif which == "shadow" and not last.present:
            parts.append("<span style='vertical-align:middle;color:#D55E00'>page fault: demand_page() runs</span>")
        out.append(_ARROW.join(parts))
        out.append("</div>")
        return "".join(out)

    def marked(self, mark) -> bool:
        """Is ``mark`` one of the entries drawn?"""
        if mark is None:
            return False
        if mark[0] == "shadow":
            return any(tuple(mark[1]) == st.where for st in self.shadow)
        return any(mark[1] == st.where for st in self.guest)


# --- the C beside the Python, live only ----------------------------------------------------------
def c_source_path(path=None):
    """The C source to show beside the Python, if the reader has it: ``path``, else the file
    named by the environment variable ``LGUEST_BOOK_C_SOURCE``; None if neither exists.
    (The book never stores the kernel's text: it is read only at run time.)"""
    import os

    path = path or os.environ.get("LGUEST_BOOK_C_SOURCE")
    if path and os.path.isfile(path):
        return path
    return None


class _CSource:
    """Find the C statement that best matches a line of the port (by shared words), inside
    the C function of the same name.  Works on page_tables.c or on cregit's one-line-per-
    function text."""

    def __init__(self, path: str):
        import re

        self.path = path
        text = open(path, encoding="utf-8", errors="replace").read()
        self.lines = text.splitlines()
        self._re = re
        self._funcs: dict[str, tuple[int, int]] = {}
        starts = []
        for n, line in enumerate(self.lines, start=1):
            m = re.match(r"^[a-z_][\w \*]*?\b([a-z_]\w*)\s*\(", line)
            if m and (not line.rstrip().endswith(";") or "{" in line) and m.group(1) not in ("if", "for", "while"):
                starts.append((m.group(1), n))
        for k, (name, n) in enumerate(starts):
            end = starts[k + 1][1] - 1 if k + 1 < len(starts) else len(self.lines)
            self._funcs.setdefault(name, (n, end))

    def find(self, func: str, python_line: str):
        """(line number, statement) or None."""
        span = self._funcs.get(func)
        if span is None or not python_line.strip():
            return None
        code_only = python_line.split("#", 1)[0]  # the port's comment is not the C's code
        is_if = code_only.strip().startswith("if ")
        words = set(self._re.findall(r"[A-Za-z_]\w+", code_only)) - {"if", "not", "and", "or", "return",
                                                                      "None", "True", "False", "self", "L"}
        best = None
        for n in range(span[0], span[1] + 1):
            for stmt in self._re.split(r"(?<=[;{}])\s+", self.lines[n - 1]):
                code = self._re.sub(r"/\*.*?\*/", "", stmt).strip()
                if not code:
                    continue
                score = len(words & set(self._re.findall(r"[A-Za-z_]\w+", code)))
                if score and is_if and code.startswith("if"):
                    score += 1  # a decision of the port is a decision of the C
                if "(struct " in code:
                    score -= 1  # a function's signature is never the statement running
                if best is None or score > best[0]:
                    best = (score, n, code)
        if best is None or best[0] == 0:
            return None
        return best[1], best[2][:160]


# =============================================================================================
# The fault stepper
# =============================================================================================
class _StopHere(BaseException):
    """Raised from the trace function to freeze the model mid-fault (never escapes)."""


@dataclass(frozen=True)
class FaultStep:
    """One step of a fault's handling."""

    index: int
    kind: str  # "access" | "enter" | "fault" | "call" | "check" | "read" | "write" | "alloc" | "kill" | "result"
    func: str
    text: str
    lineno: int  # the line of page_tables.py running (0 if none)
    events: int  # how many trace events had happened when this step was complete
    where: tuple | None = None  # the entry read or written: ("shadow", (frame, index)) or ("guest", paddr)
    in_func: str = ""  # the function of the port whose line ``lineno`` is

    @property
    def source_line(self) -> str:
        return li.source_line(self.lineno)

    @property
    def changes(self) -> bool:
        """Does this step change a table (or the Guest's life)?"""
        return self.kind in ("enter", "write", "alloc", "kill")


_C_CALLS = frozenset(("demand_page", "find_spte", "gpte_to_spte", "get_pfn", "check_gpte", "check_gpgd",
                      "check_gpmd", "gpte_in_iomem", "release_pte"))
_ENTRY_ARGS = frozenset(("gpte", "pte", "gpgd", "gpmd", "spte", "val", "value"))


def _describe(L, value: int) -> str:
    """An entry read aloud, numbers by :mod:`fmt`: ``frame 0x00300 P|RW|U``."""
    if not value:
        return "empty"
    return f"frame {fmt.frame(L.pte_pfn(value), L)} {'|'.join(L.flag_names(value)) or 'no flags'}"


def _arg(L, name: str, value) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name}={value}"
    if name == "vaddr":
        return f"{name}={fmt.vaddr(value)}"
    if name in _ENTRY_ARGS:
        return f"{name}={fmt.entry(value, L)}"
    if name.endswith("pfn"):
        return f"{name}={fmt.frame(value, L)}"
    if name in ("write", "allocate", "errcode"):
        return f"{name}={value}"
    return f"{name}={value:#x}"


class _CountingTracer(Tracer):
    """A tracer that freezes the run (raises :class:`_StopHere`) after ``limit`` events."""

    def __init__(self, limit: int | None):
        super().__init__(lines=True)
        self.limit = limit
        trace = self.trace
        append = trace.append

        def counted(event):
            append(event)
            if self.limit is not None and len(trace) >= self.limit:
                raise _StopHere

        trace.append = counted  # type: ignore[method-assign]


class FaultStepper(_Shown):
    """Step through one page fault's handling, decision by decision.

    The Guest accesses ``vaddr`` (a write if ``write``, from user mode if ``user``) with
    ``Guest.touch()``; each page fault the access raises makes the Host call
    ``demand_page()`` (an access the shadow already maps raises none).
    ``steps`` lists what happens; ``step()``/``back()``/``next_decision()``/``next_change()``/
    ``run_to_end()``/``go(k)`` move the position; ``state_at(k)`` is a copy of the Guest as it
    stands after step ``k`` (the model frozen mid-fault).  The picture (:meth:`picture_html`)
    draws the shadow and Guest walks of ``vaddr`` then, with the entry the step read or wrote
    outlined; every step's picture is made when the fault is recorded, so moving costs only
    sending it.  ``figure(k)`` draws the same walks with matplotlib.

    ``c_source``: a path to page_tables.c (or cregit's text of it), or the environment
    variable ``LGUEST_BOOK_C_SOURCE``: then the C statement that matches the current Python
    line is shown beside it — live only; it is never part of the text form.
    The Guest passed in is never changed.
    """

    def __init__(self, guest, vaddr: int, *, write: bool = False, user: bool = False, c_source=None):
        self._guest = guest
        self._view = None
        path = c_source_path(c_source)
        self._c = _CSource(path) if path else None
        self.reset(vaddr, write, user)

    # --- recording ------------------------------------------------------------------------
    def reset(self, vaddr: int | None = None, write: bool | None = None, user: bool | None = None) -> None:
        """Start again, optionally with another address or access."""
        if vaddr is not None:
            if not isinstance(vaddr, int) or isinstance(vaddr, bool) or not 0 <= vaddr <= 0xFFFFFFFF:
                shown = f"{vaddr:#x}" if isinstance(vaddr, int) else repr(vaddr)
                raise ValueError(f"vaddr {shown} is not a 32-bit address: give a number from 0 to 0xffffffff")
            self.vaddr = vaddr
        if write is not None:
            self.write = bool(write)
        if user is not None:
            self.user = bool(user)
        # the error code of a not-present fault for this access (a protection fault adds 1)
        self.errcode = (2 if self.write else 0) | (4 if self.user else 0)
        self._base = copy.deepcopy(self._guest)
        self.steps = self._record()
        self._pictures = {key: _WalkPicture(self.state_at(key), self.vaddr)
                          for key in sorted({self.changed_at(k) for k in range(len(self.steps))})}
        self._html = [self._step_html(k) for k in range(len(self.steps))]
        self.position = 0
        self._refresh()

    def _run(self, guest, limit: int | None):
        tracer = _CountingTracer(limit)
        result = None
        try:
            with tracer:
                result = guest.touch(self.vaddr, write=self.write, user=self.user)
        except _StopHere:
            pass
        return tracer.trace, result

    def _record(self) -> list[FaultStep]:
        guest = copy.deepcopy(self._base)
        trace, result = self._run(guest, None)
        L = li.layout(guest)
        mode = "from user mode" if self.user else "from the kernel"
        steps = [FaultStep(0, "access", "", f"The Guest makes a {'write' if self.write else 'read'} of "
                           f"{fmt.vaddr(self.vaddr)} {mode}.", 0, 0)]
        faults = 0
        switcher = None  # while map_switcher_in_guest runs: [depth, shadow entries it stored]
        stack: list[list] = []  # [function, line it is running] for each active traced call
        pending: list = []  # calls whose step is complete only when they return
        for n, e in enumerate(trace, start=1):
            kind = text = where = None
            line = stack[-1][1] if stack else 0
            in_func = stack[-1][0] if stack else ""
            # Entering the Guest maps the Switcher first: one step, not its every detail.
            if switcher is None and e.kind == "call" and e.func == "map_switcher_in_guest":
                switcher = [e.depth, 0]
                continue
            if switcher is not None:
                if e.kind == "call" and e.func == "store":
                    switcher[1] += 1
                if e.kind in ("return", "raise") and e.func == "map_switcher_in_guest" and e.depth == switcher[0]:
                    what = (f"{switcher[1]} shadow entries stored" if e.kind == "return"
                            else f"it failed: {e.value}")
                    steps.append(FaultStep(len(steps), "enter", e.func, "Before the Guest runs, the Host maps the "
                                           f"Switcher's pages into this top level (map_switcher_in_guest: "
                                           f"{what}).", 0, n))
                    switcher = None
                continue
            if e.kind == "line":
                if stack:
                    stack[-1][1] = e.lineno
                continue
            if e.kind == "call":
                stack.append([e.func, 0])
                if e.func == "demand_page":
                    faults += 1
                    code = e.args.get("errcode", self.errcode)
                    bits = ", ".join(("protection" if code & 1 else "not present", "write" if code & 2 else "read",
                                      "user" if code & 4 else "kernel"))
                    kind, text = "fault", (f"The CPU faults{'' if faults == 1 else f' again (fault {faults})'}: "
                                           f"error code {code} ({bits}) at {fmt.vaddr(self.vaddr)}. "
                                           f"The Host calls demand_page().")
                elif e.func in _C_CALLS:
                    shown = ", ".join(_arg(L, k, v) for k, v in e.args.items() if k not in ("cpu", "lg", "host", "mm"))
                    kind, text = "call", f"{e.func}({shown})"
                elif e.func == "lgread":
                    pending.append((e, line, in_func, "read", None, ("guest", e.args["addr"])))
                elif e.func == "store":
                    frame, index = e.args["ptr"]
                    pending.append((e, line, in_func, "write",
                                    f"wrote the shadow entry at {fmt.ptr(frame, index, L)}: {fmt.entry(e.old or 0, L)} → "
                                    f"{fmt.entry(e.args['value'], L)} ({_describe(L, e.args['value'])})",
                                    ("shadow", (frame, index))))
                elif e.func == "lgwrite":
                    pending.append((e, line, in_func, "write",
                                    f"wrote back the Guest's PTE at {fmt.paddr(e.args['addr'], L)}: "
                                    f"{fmt.entry(e.old or 0, L)} → {fmt.entry(e.args['value'], L)} "
                                    f"({_describe(L, e.args['value'])})", ("guest", e.args["addr"])))
                elif e.func == "get_zeroed_page":
                    pending.append((e, line, in_func, "alloc", None, None))
                elif e.func == "kill_guest":
                    pending.append((e, line, in_func, "kill", f"kill_guest: {e.args['reason']!r}", None))
            elif e.kind in ("return", "raise"):
                if stack:
                    stack.pop()
                if pending and pending[-1][0].func == e.func:
                    call, line, in_func, kind, text, where = pending.pop()
                    if kind == "read":
                        text = (f"read the Guest's {call.args['type_name']} at {fmt.paddr(call.args['addr'], L)}: "
                                f"{fmt.entry(e.value or 0, L)} ({_describe(L, e.value or 0)})")
                    elif kind == "alloc":
                        text = (f"allocated a zeroed host page: frame {fmt.frame(e.value, L)}" if e.value
                                else "the page allocation FAILED")
            elif e.kind == "decision":
                kind, text, line, in_func = "check", f"{e.func}: {e.label}? {'yes' if e.outcome else 'no'}", e.lineno, e.func
            if kind is not None:
                steps.append(FaultStep(len(steps), kind, e.func, text, line, n, where, in_func))
        outcome = {"ok": "fixed" if result.faults else "no-fault", "guest-fault": "guest"}.get(
            result.outcome, result.outcome)
        final = {
            "fixed": f"demand_page() fixed the fault: the Guest retries the access and it succeeds "
                     f"(host physical address {fmt.paddr(result.hpa, L)}).",
            "no-fault": f"No fault: the shadow tables already map it (host physical address {fmt.paddr(result.hpa, L)}).",
            "guest": "demand_page() refused: the fault is the Guest's own, and goes back to it.",
            "mmio": f"device memory: the Launcher emulates the access at {fmt.paddr(result.info, L)}.",
            "killed": f"the Guest is dead: {li.limits(guest)['dead']!r}",
            "dead": "the Guest was already dead: nothing runs.",
            "livelock": "the access faulted again and again: the shadow never settles (livelock).",
        }[outcome]
        steps.append(FaultStep(len(steps), "result", "", final, 0, len(trace)))
        self.outcome = outcome
        return steps

    # --- moving -----------------------------------------------------------------------------
    @property
    def current(self) -> FaultStep:
        return self.steps[self.position]

    def go(self, k: int) -> FaultStep:
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(self.steps):
            raise ValueError(f"k={k!r}: steps are numbered 0..{len(self.steps) - 1}")
        self.position = k
        self._refresh()
        return self.current

    def step(self) -> FaultStep:
        return self.go(min(self.position + 1, len(self.steps) - 1))

    def back(self) -> FaultStep:
        return self.go(max(self.position - 1, 0))

    def run_to_end(self) -> FaultStep:
        return self.go(len(self.steps) - 1)

    def _next(self, test) -> FaultStep:
        k = next((st.index for st in self.steps[self.position + 1:] if test(st)), len(self.steps) - 1)
        return self.go(k)

    def next_decision(self) -> FaultStep:
        """Jump to the next decision (an ``if`` of the C), past calls, reads and writes."""
        return self._next(lambda st: st.kind == "check")

    def next_change(self) -> FaultStep:
        """Jump to the next step that changes a table (a write, an allocation, the Switcher
        mapped, a kill), past every quiet step; the end if none is left."""
        return self._next(lambda st: st.changes)

    @property
    def at_end(self) -> bool:
        return self.position == len(self.steps) - 1

    # --- state ---------------------------------------------------------------------------------
    def state_at(self, k: int | None = None):
        """A copy of the Guest as it stands once step ``k`` (default: the current one) is done."""
        k = self.position if k is None else k
        if not isinstance(k, int) or not 0 <= k < len(self.steps):
            raise ValueError(f"k={k!r}: steps are numbered 0..{len(self.steps) - 1}")
        guest = copy.deepcopy(self._base)
        if k == 0:
            return guest
        if k == len(self.steps) - 1:
            self._run(guest, None)
        else:
            self._run(guest, self.steps[k].events)
        return guest

    def changed_at(self, k: int | None = None) -> int:
        """The last step at or before ``k`` that wrote a table entry (0 if none): the walks
        drawn after step ``k`` are those after that step."""
        k = self.position if k is None else k
        return max((st.index for st in self.steps[: k + 1] if st.kind in ("enter", "write")), default=0)

    def marked(self, k: int | None = None) -> bool:
        """Does the picture of step ``k`` outline the entry the step read or wrote?"""
        k = self.position if k is None else k
        return self._pictures[self.changed_at(k)].marked(self.steps[k].where)

    def c_line(self, k: int | None = None):
        """(line, C statement) matching step ``k``'s Python line, when the C is at hand; else None."""
        st = self.steps[self.position if k is None else k]
        if self._c is None or not st.lineno:
            return None
        return self._c.find(st.in_func or st.func, st.source_line)

    def picture_html(self, k: int | None = None) -> str:
        """What the widget shows for step ``k``: the step, the Python line, the walks."""
        return self._html[self.position if k is None else k]

    def _step_html(self, k: int) -> str:
        st = self.steps[k]
        pic = self._pictures[self.changed_at(k)]
        label = {"read": "read now", "write": "written now"}.get(st.kind, "")
        mark = st.where if label else None
        note = ""
        if mark is not None and not pic.marked(mark):
            note = "<div><i>(the entry this step touched is not on this address's walk)</i></div>"
        colour = _HI if st.changes or st.kind in ("fault", "result") else "#000"
        head = (f"<div class='lgb-step-text' style='font-size:14px'><b>step {k} of {len(self.steps) - 1}</b> "
                f"<span style='color:{colour}'>[{st.kind}]</span> {_esc(st.text)}</div>")
        src = st.source_line
        py = (f"<div class='lgb-source'><span style='color:#0072B2'>page_tables.py:{st.lineno}</span>&nbsp; "
              f"{_esc(src.strip())}</div>" if src else
              "<div class='lgb-source'><span style='color:#777'>(no line of the port runs in this step)</span></div>")
        return (f"<div style='{_FONT}'>{head}{py}<div class='lgb-c-source'></div>"
                f"<div class='lgb-plot' style='margin-top:4px'>{pic.html(mark, label)}</div>{note}</div>")

    def figure(self, k: int | None = None):
        """The shadow walk and the Guest's walk of ``vaddr`` after step ``k`` (a new matplotlib
        Figure, for stored pictures), the entry step ``k`` read or wrote outlined in red
        (:data:`lguest_book.plots.MARK`) and labelled as in the widget ("read now", "written now").

        ``fig.lguest`` says what was drawn: ``step``, ``mark`` (the step's entry: ("shadow",
        (frame, index)) or ("guest", guest-physical address), None for a step that reads or
        writes no entry), ``marked`` (the entry outlined: which walk, level, index, value,
        colour; None if none is — the note under the walks says when the step's entry is not
        on this address's walk), and ``shadow``/``guest``: each walk's own ``fig.lguest``."""
        k = self.position if k is None else k
        guest = self.state_at(k)
        st = self.steps[k]
        label = {"read": "read now", "write": "written now"}.get(st.kind, "")
        mark = st.where if label else None
        fig = plots.new_figure((7.0, 5.4))
        top, bottom = fig.subplots(2, 1)
        plots.plot_walk(guest, self.vaddr, "shadow", ax=top,
                        mark=mark[1] if mark and mark[0] == "shadow" else None, mark_text=label)
        walks = {"shadow": fig.lguest}
        if not li.limits(guest)["linear_pages"]:
            plots.plot_walk(guest, self.vaddr, "guest", ax=bottom,
                            mark=mark[1] if mark and mark[0] == "guest" else None, mark_text=label)
            walks["guest"] = fig.lguest
        else:
            bottom.axis("off")
            bottom.text(0, 0.5, "linear mode: the Guest has no page tables yet", fontsize=9)
            walks["guest"] = None
        marked = None
        if mark is not None and walks.get(mark[0]) and walks[mark[0]]["marked"]:
            marked = dict(walks[mark[0]]["marked"], which=mark[0])
        elif mark is not None:
            fig.text(0.01, 0.005, "(the entry this step touched is not on this address's walk)", fontsize=8,
                     style="italic")
        fig.lguest = {"kind": "stepper", "step": k, "step_kind": st.kind, "mark": mark, "marked": marked,
                      "colour": plots.MARK if marked else None, **walks}
        return fig

    def summary(self) -> str:
        access = ("write" if self.write else "read") + (", user" if self.user else ", kernel")
        return (f"FaultStepper({fmt.vaddr(self.vaddr)}, {access}): step {self.position} of "
                f"{len(self.steps) - 1} — {self.current.text}")

    # --- the view ---------------------------------------------------------------------------------
    def _build_view(self) -> None:
        import ipywidgets as W

        self._w_addr = W.Text(value=fmt.vaddr(self.vaddr), description="address", layout=W.Layout(width="230px"))
        self._w_write = W.Checkbox(value=self.write, description="write", indent=False, layout=W.Layout(width="70px"))
        self._w_user = W.Checkbox(value=self.user, description="user", indent=False, layout=W.Layout(width="70px"))
        names = ("Back", "Step", "Next decision", "Next change", "Run to end", "Reset")
        buttons = {name: W.Button(description=name, layout=W.Layout(width="auto")) for name in names}
        buttons["Back"].on_click(lambda _: self.back())
        buttons["Step"].on_click(lambda _: self.step())
        buttons["Next decision"].on_click(lambda _: self.next_decision())
        buttons["Next change"].on_click(lambda _: self.next_change())
        buttons["Run to end"].on_click(lambda _: self.run_to_end())
        buttons["Reset"].on_click(lambda _: self._reset_from_view())
        buttons["Next change"].tooltip = "jump past the quiet steps to the next one that changes a table"
        self._w_buttons = buttons
        self._w_out = W.HTML()
        self._w_out.add_class("lgb-stepper")
        self._w_c = W.HTML()  # the C beside the Python: filled live only, never saved
        self._w_error = W.HTML()
        self._view = W.VBox([
            W.HBox([self._w_addr, self._w_write, self._w_user, buttons["Reset"]]),
            W.HBox([buttons[n] for n in names[:-1]]),
            self._w_error, self._w_out, self._w_c,
        ], layout=W.Layout(max_width="100%"))

    def _reset_from_view(self) -> None:
        text = self._w_addr.value.strip()
        try:
            vaddr = int(text, 0)
        except ValueError:
            self._w_error.value = (f"<span style='color:{_HI}'>{_esc(repr(text))} is not an address: type a "
                                   "number such as 0x08048000.</span>")
            return
        try:
            self.reset(vaddr, self._w_write.value, self._w_user.value)
            self._w_error.value = ""
        except ValueError as err:
            self._w_error.value = f"<span style='color:{_HI}'>{_esc(err)}</span>"

    def _refresh(self) -> None:
        if self._view is None:
            return
        self._w_out.value = self._html[self.position]
        c = self.c_line()
        c_html = (f"<div style='{_FONT}'><span style='color:#009E73'>page_tables.c:{c[0]}</span>&nbsp; "
                  f"{_esc(c[1])}</div>" if c else "")
        if self._w_c.value != c_html:
            self._w_c.value = c_html
        end = self.at_end
        for name, off in (("Back", self.position == 0), ("Step", end), ("Next decision", end),
                          ("Next change", end), ("Run to end", end)):
            if self._w_buttons[name].disabled != off:
                self._w_buttons[name].disabled = off


# =============================================================================================
# The table explorer
# =============================================================================================
class TableExplorer(_Shown):
    """Browse the Guest's tables and the shadow tables of any cached top level.

    ``select(which=, slot=, level=, vaddr=, index=)`` picks one entry and returns it decoded
    (an :class:`~lguest_book.inspect.Entry`); ``entries`` lists the present entries of the
    selected table; ``detail`` is the decoded text of the selected entry.
    """

    LEVELS = ("pgd", "pmd", "pte")

    def __init__(self, guest, which: str = "shadow", slot: int | None = None):
        self._guest = guest
        self._view = None
        self.which = "shadow"
        self.slot = li.current_slot(guest)
        self.level = "pgd"
        self.vaddr = 0
        self.index = 0
        self.select(which=which, slot=slot if slot is not None else self.slot)

    def _table(self):
        if not li.pgdir_cache(self._guest)[self.slot]["allocated"]:
            return []  # an empty slot: neither a shadow nor a Guest top level
        if self.which == "shadow":
            return li.shadow_table(self._guest, self.slot, self.level, self.vaddr)
        gpgdir = li.pgdir_cache(self._guest)[self.slot]["gpgdir"]
        return li.guest_table(self._guest, gpgdir, self.level, self.vaddr)

    def select(self, *, which: str | None = None, slot: int | None = None, level: str | None = None,
               vaddr: int | None = None, index: int | None = None):
        """Choose a table (and an entry in it); returns the selected entry, or None if the table
        does not exist (a level above is not present)."""
        L = li.layout(self._guest)
        if which is not None:
            if which not in ("shadow", "guest"):
                raise ValueError(f"which={which!r}: use 'shadow' or 'guest'")
            self.which = which
        if slot is not None:
            if not isinstance(slot, int) or not 0 <= slot < 4:
                raise ValueError(f"slot={slot!r} is not a pgdir slot (0..3)")
            self.slot = slot
        if level is not None:
            if level not in self.LEVELS or (level == "pmd" and not L.pae):
                raise ValueError(f"level={level!r}: this layout has levels {('pgd', 'pmd', 'pte') if L.pae else ('pgd', 'pte')}")
            self.level = level
        if vaddr is not None:
            if not isinstance(vaddr, int) or not 0 <= vaddr <= 0xFFFFFFFF:
                shown = fmt.vaddr(vaddr) if isinstance(vaddr, int) and vaddr >= 0 else repr(vaddr)
                raise ValueError(f"{shown} is not a 32-bit address: give one from 0x00000000 to 0xffffffff")
            self.vaddr = vaddr
        self.table = self._table()
        if index is not None:
            if not isinstance(index, int) or not 0 <= index < max(len(self.table), 1):
                shown = fmt.index(index) if isinstance(index, int) and index >= 0 else repr(index)
                raise ValueError(f"index {shown} is outside this table: its entries are "
                                 f"{fmt.index(0)}..{fmt.index(max(len(self.table), 1) - 1)}")
            self.index = index
        elif self.table:  # the entry of this table that covers the chosen address
            self.index = next((e.index for e in self.table if e.vaddr <= self.vaddr < e.vaddr + self._span()), 0)
        self.index = min(self.index, max(len(self.table) - 1, 0))
        self._refresh()
        return self.selected

    def _span(self) -> int:
        L = li.layout(self._guest)
        return {"pgd": L.PGDIR_SIZE, "pmd": L.PMD_SIZE, "pte": 4096}[self.level]

    @property
    def entries(self):
        return [e for e in self.table if e.present]

    @property
    def selected(self):
        return self.table[self.index] if self.table else None

    @property
    def detail(self) -> str:
        e = self.selected
        if e is None:
            if not li.pgdir_cache(self._guest)[self.slot]["allocated"]:
                return f"slot {self.slot} is empty: no top level cached there"
            return f"no {self.level} table here: a level above is not present"
        L = li.layout(self._guest)
        end = (e.vaddr + self._span() - 1) & 0xFFFFFFFF
        frame_kind = "guest frame" if self.which == "guest" else "host frame"
        owner = ""
        if self.which == "shadow" and e.present:
            kind, num = li.owner(self._guest, e.frame)
            owner = f" — {kind}{'' if num is None else ' ' + (fmt.frame(num, L) if kind == 'guest' else str(num))}"
        return (f"{self.which} {e.level}[{fmt.index(e.index)}] covers {fmt.vaddr(e.vaddr)}–{fmt.vaddr(end)}: "
                f"value {fmt.entry(e.value, L)}; {frame_kind} {fmt.frame(e.frame, L)}{owner}; "
                f"flags {'|'.join(e.flags) or 'none'}")

    def label(self, e) -> str:
        """One entry as the list shows it."""
        L = li.layout(self._guest)
        return (f"{e.level}[{fmt.index(e.index)}] {fmt.vaddr(e.vaddr)}  {fmt.entry(e.value, L)}  "
                f"{'|'.join(e.flags) or ('empty' if not e.value else '-')}")

    def listed(self):
        """The entries the list shows: the present ones, or all of them with ``show_empty``."""
        return list(self.table) if self.show_empty else self.entries

    show_empty = False

    def summary(self) -> str:
        return (f"TableExplorer({self.which}, slot {self.slot}, {self.level} for {fmt.vaddr(self.vaddr)}): "
                f"{len(self.entries)} present — {self.detail}")

    def _build_view(self) -> None:
        import ipywidgets as W

        L = li.layout(self._guest)
        self._w_which = W.ToggleButtons(options=["shadow", "guest"], value=self.which)
        self._w_slot = W.Dropdown(options=[(f"slot {i}", i) for i in range(4)], value=self.slot, description="top level")
        levels = ["pgd", "pmd", "pte"] if L.pae else ["pgd", "pte"]
        self._w_level = W.Dropdown(options=levels, value=self.level, description="level")
        self._w_vaddr = W.Text(value=fmt.vaddr(self.vaddr), description="address", continuous_update=False)
        self._w_index = W.Text(value=fmt.index(self.index), description="index", continuous_update=False,
                               layout=W.Layout(width="180px"))
        self._w_index.add_class("lgb-index")
        self._w_empty = W.Checkbox(value=self.show_empty, description="list empty entries too", indent=False)
        self._w_list = W.Select(options=[], rows=12, layout=W.Layout(width="95%"))
        self._w_list.add_class("lgb-entries")
        self._w_count = W.HTML()
        self._w_count.add_class("lgb-count")
        self._w_detail = W.HTML()
        self._w_detail.add_class("lgb-detail")
        self._w_which.observe(lambda c: self._from_view(which=c["new"]), "value")
        self._w_slot.observe(lambda c: self._from_view(slot=c["new"]), "value")
        self._w_level.observe(lambda c: self._from_view(level=c["new"]), "value")
        self._w_vaddr.observe(lambda c: self._from_view(vaddr_text=c["new"]), "value")
        self._w_index.observe(lambda c: self._from_view(index_text=c["new"]), "value")
        self._w_empty.observe(lambda c: self._show_empty(c["new"]), "value")
        self._w_list.observe(lambda c: c["new"] is not None and self._from_view(index=c["new"]), "value")
        self._view = W.VBox([W.HBox([self._w_which, self._w_slot]), W.HBox([self._w_level, self._w_vaddr]),
                             W.HBox([self._w_index, self._w_empty]), self._w_count, self._w_list, self._w_detail])

    def _show_empty(self, value: bool) -> None:
        self.show_empty = bool(value)
        self._refresh()

    def _from_view(self, vaddr_text: str | None = None, index_text: str | None = None, **kwargs) -> None:
        if self._busy:
            return
        text = vaddr_text if vaddr_text is not None else index_text
        if text is not None:
            try:
                number = int(text.strip(), 0)
            except ValueError:
                what = "an address: type a number such as 0x08048000" if vaddr_text is not None else \
                    "an index: type a number such as 0x300"
                self._w_detail.value = f"<span style='color:{_HI}'>{_esc(repr(text))} is not {what}.</span>"
                return
            kwargs["vaddr" if vaddr_text is not None else "index"] = number
        try:
            self.select(**kwargs)
        except ValueError as err:
            self._w_detail.value = f"<span style='color:{_HI}'>{_esc(err)}.</span>"

    _busy = False
    _options: tuple = ()

    def _refresh(self) -> None:
        if self._view is None:
            return
        self._busy = True
        try:
            shown = self.listed()
            options = tuple((self.label(e), e.index) for e in shown) or (("(no present entries)", None),)
            if options != self._options:  # 1,024 options are sent only when the table changes
                self._w_list.options = options
                self._options = options
            self._w_list.value = self.index if any(e.index == self.index for e in shown) else None
            present = len(self.entries)
            total = len(self.table)
            self._w_count.value = (f"{present} present entr{'y' if present == 1 else 'ies'} of {total}"
                                   f"{', all listed' if not self.show_empty else f'; all {total} listed'}"
                                   + (f"; selected [{fmt.index(self.index)}]" if self.table else ""))
            self._w_index.value = fmt.index(self.index)
            self._w_vaddr.value = fmt.vaddr(self.vaddr)
            self._w_detail.value = _esc(self.detail)
        finally:
            self._busy = False


# =============================================================================================
# The hypercall console
# =============================================================================================
class HypercallConsole(_Shown):
    """Be the Guest: make page-table hypercalls and see what the Host did.

    The console works on the Guest it is given (give it one of its own: a scripted attack on
    another Guest cannot kill it) and ``reset()`` (the Reset button) puts back a copy of
    that Guest as it was when the console was made.  Every action runs under a tracer; ``log``
    gets one line per action — which hypercalls the Guest made (a SET_PTE where the Guest
    had no page table first makes a SET_PGD, and says so), what the Host allocated, released,
    or why it killed the Guest — and ``changes`` the entries each action changed, one list
    per line of the log.  The count of shadow entries written is the count of the shadow
    lines listed: a store of the value an entry already held is counted apart, as a no-op
    store, and not listed.  The Guest's own entries are shown level by level, each with its
    own value before and after ("—": the walk did not reach it on that side).  ``last_trace`` is the full trace.
    """

    def __init__(self, guest):
        self._guest = guest
        self._start = copy.deepcopy(guest)
        self._view = None
        self.log: list[str] = []
        self.changes: list[list[str]] = []
        self.last_trace = None

    @property
    def guest(self):
        """The Guest the console works on now (a fresh copy after ``reset()``)."""
        return self._guest

    def reset(self) -> str:
        """Start again from the Guest as it was when the console was made."""
        self._guest = copy.deepcopy(self._start)
        self.log.append("Reset: the Guest is back as it was when the console was made")
        self.changes.append([])
        self._refresh()
        return self.log[-1]

    def _proc(self, proc):
        """The console's Guest's own process of that name (after a reset, a copy)."""
        if proc is None:
            return None
        mine = [p for p in getattr(self._guest, "processes", []) if p.gpgdir == getattr(proc, "gpgdir", None)]
        return mine[0] if mine else proc

    def _entries(self, trace, before, after) -> list[str]:
        L = li.layout(self._guest)
        lines = []
        for kind, where, old, new in trace.writes():
            if (old or 0) == new:
                continue  # stored, but unchanged
            if kind == "shadow":
                lines.append(f"shadow {fmt.ptr(where[0], where[1], L)}: {fmt.entry(old or 0, L)} → {fmt.entry(new, L)}")
            else:
                lines.append(f"Guest entry at {fmt.paddr(where, L)} (A/D written back by the Host): "
                             f"{fmt.entry(old or 0, L)} → {fmt.entry(new, L)}")
        for what, (old, new) in _diff(before, after).items():
            lines.append(f"{what}: {old} → {new}")
        return lines

    def _watch(self):
        """What the Guest itself and the cache hold, before and after an action (read through
        inspect): the Guest's own entries the console may write, and the pgdir cache.

        Each entry on the Guest's walk of a watched address has a key of its own (its level
        and the address), so before and after compare the same entry: an entry the walk no
        longer reaches (or did not reach before) is "—" on that side.  ``_watched`` holds
        (vaddr, levels): the levels to watch (None: every level of the walk)."""
        g = self._guest
        L = li.layout(g)
        out = {}
        for c in li.pgdir_cache(g):
            out[f"cache slot {c['slot']}"] = (f"Guest {fmt.paddr(c['gpgdir'], L)}, shadow frame {fmt.frame(c['frame'], L)}"
                                              if c["allocated"] else "empty")
        for vaddr, levels in self._watched:
            for st in li.walk_guest(g, vaddr):
                if levels is None or st.level in levels:
                    out[f"the Guest's {st.level} for {fmt.vaddr(vaddr)}"] = fmt.entry(st.value, L)
        return out

    _watched: tuple = ()

    def _do(self, what: str, action, watch: tuple = ()) -> str:
        g = self._guest
        if li.limits(g)["dead"] is not None:
            line = f"{what}: the Guest is dead ({li.limits(g)['dead']!r}); nothing happens — press Reset"
            entries = []
        else:
            self._watched = tuple(w if isinstance(w, tuple) else (w, None) for w in watch)
            before = self._watch()
            with Tracer() as t:
                action()
            after = self._watch()
            self.last_trace = t.trace
            calls = [name for e in t.trace if e.kind == "call" and e.depth == 0
                     for name in [_HCALL_OF.get(e.func)] if name]
            allocs = sum(1 for f in t.trace.allocations() if f)
            freed = len(t.trace.calls("free_page"))
            unpinned = len(t.trace.calls("put_page")) - freed
            dead = li.limits(g)["dead"]
            entries = self._entries(t.trace, before, after)
            # count what is listed: a store of the value already there (remove_switcher_percpu_map
            # clears entries that are already clear) changes nothing, and is counted apart
            stores = [w for w in t.trace.writes() if w[0] == "shadow"]
            shadow = sum(1 for w in stores if (w[2] or 0) != w[3])
            noop = len(stores) - shadow
            made = ""
            if len(calls) > 1 or (calls and calls[0] not in what):
                made = f" [hypercalls made: {', '.join(calls)}]"
            same = (f" (and {fmt.count(noop, 'no-op store')}: the value already there)"
                    if noop else "")
            line = (f"{what}{made}: {shadow} shadow entr{'y' if shadow == 1 else 'ies'} written{same}, "
                    f"{fmt.count(allocs, 'page')} allocated, {freed} freed, {max(unpinned, 0)} unpinned"
                    + (f"; Guest KILLED: {dead!r}" if dead else ""))
        self.log.append(line)
        self.changes.append(entries)
        self._refresh()
        return line

    def set_pte(self, vaddr: int, pte: int, proc=None) -> str:
        """The Guest writes a PTE and makes the SET_PTE hypercall (first building a page table
        and making SET_PGD if it has none there: the log says so)."""
        L = li.layout(self._guest)
        return self._do(f"SET_PTE {fmt.vaddr(vaddr)} = {fmt.entry(pte, L)}",
                        lambda: self._guest.set_pte(vaddr, pte, self._proc(proc)), (vaddr,))

    def hypercall_set_pte(self, vaddr: int, pte: int, proc=None) -> str:
        """Only the SET_PTE hypercall, the Guest's tables untouched: what a hostile Guest can
        ask without having a page table there."""
        L = li.layout(self._guest)
        num = li.hypercall_numbers()["SET_PTE"]
        proc = self._proc(proc) or self._guest.current
        if L.pae:
            act = lambda: self._guest.hypercall(num, proc.gpgdir, vaddr, pte & 0xFFFFFFFF, pte >> 32)  # noqa: E731
        else:
            act = lambda: self._guest.hypercall(num, proc.gpgdir, vaddr, pte)  # noqa: E731
        return self._do(f"SET_PTE (hypercall only) {fmt.vaddr(vaddr)} = {fmt.entry(pte, L)}", act, (vaddr,))

    def set_pgd(self, index: int, value: int, proc=None) -> str:
        """Top-level entry ``index``.  At ``PTRS_PER_PGD`` (1024, or 4 with PAE) or beyond there
        is no entry for the Guest to write: the console makes only the hypercall, which is how
        the ``set_pgd_bound`` flaw is reached."""
        L = li.layout(self._guest)
        limit = li.ptrs_per_pgd(self._guest)
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"index {index!r} is not a top-level index: use 0x000 or more")
        proc = self._proc(proc) or self._guest.current
        if index < limit:
            return self._do(f"SET_PGD [{fmt.index(index)}] = {fmt.entry(value, L)}",
                            lambda: self._guest.set_pgd(index, value, proc), ((index * L.PGDIR_SIZE, ("pgd",)),))
        num = li.hypercall_numbers()["SET_PGD"]
        base = proc.gpgdir & (0xFFFFFFE0 if L.pae else 0xFFFFF000)
        note = "PTRS_PER_PGD" if index == limit else "beyond PTRS_PER_PGD"
        return self._do(f"SET_PGD [{fmt.index(index)}] ({note}: no entry to write, the hypercall only)",
                        lambda: self._guest.hypercall(num, base, index))

    def set_pmd(self, vaddr: int, value: int, proc=None) -> str:
        if not li.layout(self._guest).pae:
            raise ValueError("SET_PMD exists only for a PAE Guest")
        L = li.layout(self._guest)
        return self._do(f"SET_PMD {fmt.vaddr(vaddr)} = {fmt.entry(value, L)}",
                        lambda: self._guest.set_pmd(vaddr, value, self._proc(proc)), ((vaddr, ("pgd", "pmd")),))

    def map_kernel(self, vaddr: int, gpfn: int) -> str:
        """Change a kernel mapping (SET_PTE on a kernel address: every cached top level)."""
        L = li.layout(self._guest)
        if vaddr < li.limits(self._guest)["kernel_address"]:
            raise ValueError(f"{fmt.vaddr(vaddr)} is below kernel_address "
                             f"({fmt.vaddr(li.limits(self._guest)['kernel_address'])}): not a kernel address")
        return self._do(f"kernel map {fmt.vaddr(vaddr)} -> page {fmt.frame(gpfn, L)}",
                        lambda: self._guest.map(vaddr, gpfn), (vaddr,))

    def switch_to(self, proc) -> str:
        """Switch to ``proc``: the NEW_PGTABLE hypercall with its top level."""
        proc = self._proc(proc)
        return self._do(f"NEW_PGTABLE {getattr(proc, 'name', '?')}", lambda: self._guest.switch_to(proc))

    def new_pgtable(self, proc=None, name: str | None = None) -> str:
        """The NEW_PGTABLE hypercall: switch to ``proc`` (a new process named ``name`` if None)."""
        if proc is None:
            proc = self.new_process(name)
        return self.switch_to(proc)

    def new_process(self, name: str | None = None):
        proc = self._guest.new_process(name)
        L = li.layout(self._guest)
        self.log.append(f"the Guest built a new top level for {proc.name} at {fmt.paddr(proc.gpgdir, L)} (no hypercall)")
        self.changes.append([])
        self._refresh()
        return proc

    def flush_user(self) -> str:
        return self._do("FLUSH_TLB(0) — user part", self._guest.flush_user)

    def flush_all(self) -> str:
        return self._do("FLUSH_TLB(1) — everything", self._guest.flush_all)

    def touch(self, vaddr: int, write: bool = False, user: bool = False) -> str:
        box = {}

        def act():
            box["a"] = self._guest.touch(vaddr, write=write, user=user)

        line = self._do(f"touch {fmt.vaddr(vaddr)} ({'write' if write else 'read'}, {'user' if user else 'kernel'})",
                        act, (vaddr,))
        if "a" in box:
            a = box["a"]
            self.log[-1] = f"{line}; outcome {a.outcome} after {fmt.count(a.faults, 'fault')}"
            self._refresh()
        return self.log[-1]

    def summary(self) -> str:
        last = self.log[-1] if self.log else "no hypercalls yet"
        return f"HypercallConsole: {len(self.log)} action(s); last: {last}"

    def _build_view(self) -> None:
        import ipywidgets as W

        pae = li.layout(self._guest).pae
        self._w_vaddr = W.Text(value="0x08048000", description="vaddr/index", layout=W.Layout(width="230px"))
        self._w_value = W.Text(value="0x00300067", description="entry", layout=W.Layout(width="230px"))
        self._w_write = W.Checkbox(value=False, description="touch writes", indent=False, layout=W.Layout(width="110px"))
        self._w_user = W.Checkbox(value=True, description="from user mode", indent=False, layout=W.Layout(width="130px"))
        names = (["SET_PTE", "SET_PGD"] + (["SET_PMD"] if pae else [])
                 + ["kernel map", "new process", "switch to", "touch", "FLUSH user", "FLUSH all", "Reset"])
        self._w_proc = W.Dropdown(options=[], description="process", layout=W.Layout(width="200px"))
        self._w_buttons = {n: W.Button(description=n, layout=W.Layout(width="auto")) for n in names}
        for n, b in self._w_buttons.items():
            b.on_click(lambda _b, n=n: self._from_view(n))
        limit = li.ptrs_per_pgd(self._guest)
        self._w_help = W.HTML(f"<small>SET_PTE / touch / kernel map: <i>vaddr</i>; SET_PGD: <i>index</i> (up to "
                              f"{fmt.index(limit)} = PTRS_PER_PGD, where only the hypercall is made); the entry's "
                              "frame is the page a kernel map points at; Reset: the Guest as it was.</small>")
        self._w_log = W.HTML()
        self._w_log.add_class("lgb-log")
        buttons = list(self._w_buttons.values())
        self._view = W.VBox([W.HBox([self._w_vaddr, self._w_value, self._w_write, self._w_user]),
                             W.HBox(buttons[:5]), W.HBox([self._w_proc, *buttons[5:]]), self._w_help, self._w_log])

    def _from_view(self, name: str) -> None:
        if name == "Reset":
            self.reset()
            return
        if name == "switch to":
            procs = [p for p in getattr(self._guest, "processes", []) if p.name == self._w_proc.value]
            if procs:
                self.switch_to(procs[0])
            return
        try:
            texts = {"vaddr/index": self._w_vaddr.value, "entry": self._w_value.value}
            numbers = {}
            for field, text in texts.items():
                try:
                    numbers[field] = int(text.strip(), 0)
                except ValueError:
                    raise ValueError(f"{text!r} in {field} is not a number: type one such as "
                                     f"{'0x08048000' if field == 'vaddr/index' else '0x00300067'}") from None
            a, v = numbers["vaddr/index"], numbers["entry"]
            {"SET_PTE": lambda: self.set_pte(a, v), "SET_PGD": lambda: self.set_pgd(a, v),
             "SET_PMD": lambda: self.set_pmd(a, v),
             "touch": lambda: self.touch(a, write=self._w_write.value, user=self._w_user.value),
             "kernel map": lambda: self.map_kernel(a, v >> 12), "new process": lambda: self.new_pgtable(),
             "FLUSH user": self.flush_user, "FLUSH all": self.flush_all}[name]()
        except (ValueError, TypeError) as err:
            self.log.append(f"{name}: not done — {err}")
            self.changes.append([])
            self._refresh()

    def _refresh(self) -> None:
        if self._view is None:
            return
        rows = []
        for line, entries in list(zip(self.log, self.changes))[-10:]:
            sub = "".join(f"<div style='margin-left:2em;color:#0072B2'>{_esc(x)}</div>" for x in entries[:8])
            if len(entries) > 8:
                sub += f"<div style='margin-left:2em'>… and {len(entries) - 8} more</div>"
            rows.append(f"<div>{_esc(line)}</div>{sub}")
        self._w_log.value = (f"<div style='{_FONT}'>" + "".join(rows) + "</div>") if rows else "<i>no hypercalls yet</i>"
        procs = tuple(p.name for p in getattr(self._guest, "processes", []))
        if tuple(self._w_proc.options) != procs:
            self._w_proc.options = procs
        current = getattr(getattr(self._guest, "current", None), "name", None)
        if current in procs and self._w_proc.value != current:
            self._w_proc.value = current


# the page_tables.c entry points a Guest's hypercall reaches, by the hypercall's name
_HCALL_OF = {"guest_set_pte": "SET_PTE", "guest_set_pgd": "SET_PGD", "guest_set_pmd": "SET_PMD",
             "guest_new_pagetable": "NEW_PGTABLE", "guest_pagetable_clear_all": "FLUSH_TLB",
             "guest_pagetable_flush_user": "FLUSH_TLB"}


def _diff(before: dict, after: dict) -> dict:
    """{key: (before, after)} of what differs; "—" on the side where the key is absent (an
    entry the walk did not reach then)."""
    keys = list(after) + [k for k in before if k not in after]
    return {k: (before.get(k, "—"), after.get(k, "—")) for k in keys if before.get(k) != after.get(k)}


# =============================================================================================
# The scrubber: a recorded run, any instant of it
# =============================================================================================
_CHIPS = 12  # entries shown per table page (the changed ones always)


class Scrubber(_Shown):
    """A slider over every event of a :class:`~lguest_book.recorder.Recording`: the pgdir
    cache, the shadow and Guest tables (with the Guest's Accessed/Dirty bits), the reference
    counts and whether the Guest lives, just after that event, with what the event changed
    outlined.  Replays from the recording (``recording.state(k)``): nothing runs again.

    ``go(k)``, ``next()``, ``back()``, ``next_change()`` move; ``state`` is the state shown,
    ``changed`` the keys the event changed (see :mod:`lguest_book.recorder`).
    """

    def __init__(self, recording, position: int = 0):
        from .recorder import Recorder

        if isinstance(recording, Recorder):
            recording = recording.recording
        self.recording = recording
        self._view = None
        self._html_cache: dict[int, str] = {}
        self.go(position)

    # --- moving -------------------------------------------------------------------------------
    def go(self, k: int):
        self.state = self.recording.state(k)  # checks k
        self.position = k
        self.event = self.recording.events[k]
        # event 0 is where the recording starts: nothing "changed" there
        self.changed = self.recording.changed_keys(k) if k else set()
        self._refresh()
        return self.event

    def next(self):
        return self.go(min(self.position + 1, len(self.recording) - 1))

    def back(self):
        return self.go(max(self.position - 1, 0))

    def next_change(self):
        """The next event that changed a table entry (shadow or Guest)."""
        rec = self.recording
        k = next((j for j in range(self.position + 1, len(rec))
                  if any(key[0] in ("s", "g") for key, _, _ in rec.deltas[j])), len(rec) - 1)
        return self.go(k)

    # --- what is shown --------------------------------------------------------------------------
    def counts(self, state=None) -> dict:
        """How many shadow entries, Guest entries and referenced frames the state has."""
        st = self.state if state is None else state
        out = {"shadow": 0, "guest": 0, "frames": 0}
        for key in st:
            if key[0] == "s":
                out["shadow"] += 1
            elif key[0] == "g":
                out["guest"] += 1
            elif key[0] == "ref":
                out["frames"] += 1
        return out

    def changed_counts(self) -> dict:
        out = {"shadow": 0, "guest": 0, "refs": 0, "cache": 0}
        for key in self.changed:
            kind = {"s": "shadow", "g": "guest", "ref": "refs", "slot": "cache", "current": "cache"}.get(key[0])
            if kind:
                out[kind] += 1
        return out

    def summary(self) -> str:
        e = self.event
        c = self.changed_counts()
        what = ", ".join(f"{n} {k}" for k, n in c.items() if n) or "nothing in the tables"
        return (f"Scrubber: event {self.position} of {len(self.recording) - 1} — {e.label}"
                f"{f' ({e.outcome})' if e.outcome else ''}; changed: {what}")

    def html(self, k: int | None = None) -> str:
        if k is not None and k != self.position:
            self.go(k)
        key = self.position
        if key not in self._html_cache:
            if len(self._html_cache) > 256:
                self._html_cache.clear()
            self._html_cache[key] = self._render()
        return self._html_cache[key]

    def _render(self) -> str:
        L = self.recording.layout
        st, changed, e = self.state, self.changed, self.event
        hi = lambda key: key in changed  # noqa: E731
        delta = self.recording.changes(self.position) if self.position else ()
        gone = [(key, old) for key, old, new in delta if new is None and key[0] in ("s", "g")]
        c = self.changed_counts()
        names = {"shadow": ("shadow entry", "shadow entries"), "guest": ("Guest entry", "Guest entries"),
                 "refs": ("reference count", "reference counts"), "cache": ("cache slot", "cache slots")}
        what = ", ".join(f"{n} {names[k][n != 1]}" for k, n in c.items() if n) or "nothing in the tables"
        out = [f"<div style='{_FONT}'>",
               f"<div class='lgb-scrub-text' style='font-size:14px'><b>event {self.position} of "
               f"{len(self.recording) - 1}</b> <span style='color:{_HI}'>[{_esc(e.kind)}]</span> {_esc(e.label)}"
               f"{' — ' + _esc(e.outcome) if e.outcome else ''}</div>",
               f"<div>changed here: {_esc(what)}</div>"]
        dead = st.get(("dead",))
        if dead:
            out.append(f"<div style='color:{_HI};font-weight:bold'>the Guest is dead: {_esc(repr(dead))}</div>")
        # the pgdir cache
        cur = st.get(("current",))
        rows = ["<tr>" + "".join(f"<th style='padding:0 10px 0 0;text-align:left'>{h}</th>" for h in
                                 ("slot", "Guest top level", "shadow top level", "Switcher mapped")) + "</tr>"]
        for n in range(4):
            slot = st.get(("slot", n))
            style = f" style='outline:2px solid {_HI}'" if hi(("slot", n)) or (hi(("current",)) and n == cur) else ""
            mark = " &#9664; current" if n == cur else ""
            if slot is None:
                rows.append(f"<tr{style}><td>{n}{mark}</td><td colspan=3><i>empty</i></td></tr>")
            else:
                gp, frame, sw = slot
                who = self.recording.names.get(gp)
                rows.append(f"<tr{style}><td>{n}{mark}</td><td>{fmt.paddr(gp, L)}{f' ({_esc(who)})' if who else ''}</td>"
                            f"<td>frame {fmt.frame(frame, L)}</td><td>{'yes' if sw else 'no'}</td></tr>")
        rows = [r.replace("<td>", "<td style='padding:0 10px 0 0'>") for r in rows]
        out.append("<div style='margin-top:4px'><b>pgdir cache</b><table style='border-collapse:collapse'>"
                   + "".join(rows) + "</table></div>")
        # tables, by slot
        pages: dict = {}
        for key, value in st.items():
            if key[0] in ("s", "g"):
                pages.setdefault((key[0], key[1]), []).append((key[2], value))
        meta = {("s", k[1]): v for k, v in st.items() if k[0] == "spage"}
        meta.update({("g", k[1]): v for k, v in st.items() if k[0] == "gpage"})
        order = {"pgd": 0, "pmd": 1, "pte": 2}
        kaddr = self.recording.kernel_address
        for tag, title in (("s", "shadow tables (host frames)"), ("g", "the Guest's tables (guest pages; A/D bits)")):
            blocks = []
            mine = sorted((m[1], order[m[0]], m[2], p) for p, m in meta.items() if p[0] == tag)
            for slot, _o, vbase, page in mine:
                level = meta[page][0]
                entries = sorted(pages.get(page, []))
                new = [x for x in entries if hi((tag, page[1], x[0]))]
                rest = [x for x in entries if not hi((tag, page[1], x[0]))]
                kernel = level != "pgd" and vbase >= kaddr
                # the kernel part is the same in every address space: its entries only when they change
                show = sorted(new[:_CHIPS] + ([] if kernel else rest[: max(0, _CHIPS - len(new))]))
                more = len(entries) - len(show)
                more_new = len(new) - min(len(new), _CHIPS)
                name = "PDPT" if (L.pae and level == "pgd") else level.upper()
                where = f"frame {fmt.frame(page[1], L)}" if tag == "s" else f"page {fmt.frame(page[1], L)}"
                chips = "".join(self._chip(L, tag, page[1], i, v, level, hi((tag, page[1], i))) for i, v in show)
                blocks.append(f"<div style='margin:1px 0'><span style='background:{_LEVEL_COLOURS[level]};"
                              f"padding:0 4px'>slot {slot} {name} {where}</span> {len(entries)} present"
                              f"{f', from {fmt.vaddr(vbase)}' if level != 'pgd' else ''}"
                              f"{' (kernel part)' if kernel else ''}{': ' if chips else ''}{chips}"
                              f"{(f' … and {more} more' if chips else ' (not listed: the kernel part is shown only where it changes)') if more > 0 else ''}"
                              f"{f' ({more_new} of them changed here)' if more_new > 0 else ''}</div>")
            out.append(f"<div style='margin-top:4px'><b>{title}</b>{''.join(blocks) or ' <i>none</i>'}</div>")
        if gone:
            chips = ", ".join(f"<s>{'shadow' if k[0] == 's' else 'Guest'} {fmt.ptr(k[1], k[2], L)} = "
                              f"{fmt.entry(old, L)}</s>" for k, old in gone[:_CHIPS])
            more = f" … and {len(gone) - _CHIPS} more" if len(gone) > _CHIPS else ""
            out.append(f"<div style='margin-top:4px;color:{_HI}'><b>gone at this event</b> ({len(gone)}): "
                       f"{chips}{more}</div>")
        # reference counts
        hist: dict[int, int] = {}
        for key, value in st.items():
            if key[0] == "ref":
                hist[value] = hist.get(value, 0) + 1
        refs = ", ".join(f"{n} with count {c}" for c, n in sorted(hist.items()))
        moved = [(key[1], old, new) for key, old, new in delta if key[0] == "ref"]
        moved_txt = ", ".join(f"frame {fmt.frame(f, L)}: {old or 0} → {new or 0}" for f, old, new in moved[:_CHIPS])
        if len(moved) > _CHIPS:
            moved_txt += f" … and {len(moved) - _CHIPS} more"
        out.append(f"<div style='margin-top:4px'><b>reference counts</b>: {sum(hist.values())} frames in use"
                   f"{' (' + refs + ')' if refs else ''}"
                   f"{f'; <span style=color:{_HI}>changed: {moved_txt}</span>' if moved else ''}</div>")
        out.append("</div>")
        return "".join(out)

    @staticmethod
    def _chip(L, tag, page, i, value, level, changed) -> str:
        flags = L.flag_names(value)
        ad = ""
        if tag == "g" and level == "pte":
            ad = (" <b>A</b>" if "A" in flags else " ·") + (" <b>D</b>" if "D" in flags else " ·")
        style = f"border:2px solid {_HI};" if changed else "border:1px solid #bbb;"
        return (f"<span style='{style}padding:0 3px;margin:1px;display:inline-block'>[{fmt.index(i)}] "
                f"{fmt.entry(value, L)}{ad}</span>")

    # --- the view ------------------------------------------------------------------------------
    def _build_view(self) -> None:
        import ipywidgets as W

        n = len(self.recording) - 1
        self._w_slider = W.IntSlider(value=self.position, min=0, max=max(n, 0), description="event",
                                     continuous_update=True, layout=W.Layout(width="95%"))
        self._w_slider.add_class("lgb-scrubber-slider")
        self._w_play = W.Play(value=self.position, min=0, max=max(n, 0), interval=400, description="play")
        W.jslink((self._w_play, "value"), (self._w_slider, "value"))
        self._w_buttons = {name: W.Button(description=name, layout=W.Layout(width="auto"))
                           for name in ("Back", "Next", "Next change")}
        self._w_buttons["Back"].on_click(lambda _: self.back())
        self._w_buttons["Next"].on_click(lambda _: self.next())
        self._w_buttons["Next change"].on_click(lambda _: self.next_change())
        self._w_slider.observe(lambda c: c["new"] != self.position and self.go(c["new"]), "value")
        self._w_out = W.HTML()
        self._w_out.add_class("lgb-scrubber")
        self._view = W.VBox([W.HBox([self._w_play, *self._w_buttons.values()]), self._w_slider, self._w_out],
                            layout=W.Layout(max_width="100%"))

    def _refresh(self) -> None:
        if self._view is None:
            return
        self._w_out.value = self.html()
        if self._w_slider.value != self.position:
            self._w_slider.value = self.position
