"""A structured trace of what the model does, for the chapters, the widgets and the curious.

Tracing is done from the *outside*: while a :class:`Tracer` is active it asks Python
(``sys.settrace``) to report calls into the model's own functions.  No line of the model
mentions tracing, so when no tracer is active the fault path pays nothing for it.

A trace is a list of :class:`Event`:

* ``call``     -- a model function was called; ``args`` holds its arguments by name.
* ``return``   -- it returned ``value``.
* ``decision`` -- an ``if`` in page_tables.py was decided: ``label`` is the test (or the
  comment beside it), ``outcome`` whether it held.
* ``line``     -- (only with ``lines=True``) a line of page_tables.py is about to run.
* ``raise``    -- a function ended with an exception (a host oops).

``depth`` is the call depth below the first traced call, so a trace prints as a tree.
Helpers pick out what a reader usually asks: :meth:`Trace.reads` (guest entries read, by
level), :meth:`Trace.writes` (shadow and guest entries written, with the old value),
:meth:`Trace.allocations`, :meth:`Trace.releases`, :meth:`Trace.kills`.

Example::

    with Tracer() as t:
        page_tables.demand_page(guest.cpu, 0x08048000, 2)
    print(t.trace.render())
"""

from __future__ import annotations

import ast
import inspect as _pyinspect
import sys
import threading
from dataclasses import dataclass, field

from . import fmt as _fmtmod
from . import host as _host
from . import lguest as _lguest
from . import page_tables as _pt

# The host and Launcher primitives worth seeing in a trace.
_HOST_METHODS = (
    _host.Host.get_zeroed_page,
    _host.Host.free_page,
    _host.Host.get_page,
    _host.Host.put_page,
    _host.Host.store,
    _host.Launcher.get_user_pages_fast,
)
_LGUEST_FUNCS = ("kill_guest", "lgread", "lgwrite", "get_user_u32", "put_user_u32")


@dataclass
class Event:
    kind: str  # call | return | decision | line | raise
    func: str
    depth: int
    args: dict = field(default_factory=dict)
    value: object = None
    lineno: int = 0
    label: str = ""
    outcome: bool | None = None
    old: object = None  # for writes: the value before

    def __str__(self) -> str:
        pad = "  " * self.depth
        if self.kind == "call":
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args.items() if k not in ("cpu", "lg", "host", "self", "mm"))
            return f"{pad}{self.func}({shown})"
        if self.kind == "return":
            return f"{pad}  -> {_fmt(self.value)}"
        if self.kind == "decision":
            return f"{pad}  [{'yes' if self.outcome else 'no '}] {self.label}"
        if self.kind == "line":
            return f"{pad}  line {self.lineno}"
        return f"{pad}  !! {self.value}"


def _fmt(value) -> str:
    """An argument or result as a trace prints it: the numbers a :class:`Tracer` recorded are
    already typed (:mod:`lguest_book.fmt`: addresses, entries, frames and indices in hex of
    the layout's width); any other int is a count, in decimal."""
    if isinstance(value, bool) or value is None or isinstance(value, (_fmtmod.Hex, _fmtmod.Ptr)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return repr(value)


# --- what each argument and result of a traced function is ---------------------------------
# Kinds: "vaddr" (32-bit virtual address), "paddr" (guest- or host-physical address), "entry"
# (a page-table entry, or flags as they sit in one), "frame", "index" (into a table page),
# "ptr" ((frame, index)), "ptr|entry" (whichever the value is), "bits" (an error code's flag bits), anything else a count (decimal).
_ARG_KINDS = {
    "vaddr": "vaddr", "uaddr": "vaddr", "start": "vaddr",
    "gpgdir": "paddr", "pgtable": "paddr", "pmdp": "paddr", "addr": "paddr",
    "gpgd": "entry", "gentry": "entry", "gpte": "entry", "gpmd": "entry", "pte": "entry",
    "pgd_flags": "entry", "pmd_flags": "entry", "value": "entry",
    "spgd": "ptr|entry", "spmd": "ptr|entry", "ptr": "ptr",  # a pointer, or (spte_addr) the entry
    "virtpfn": "frame", "frame": "frame",
    "errcode": "bits",
}
# per function: arguments whose meaning differs from the table (a slot or a CPU is a count)
_ARG_OVERRIDES = {
    "spgd_addr": {"i": "count"},
    "flush_user_mappings": {"idx": "count"},
    "__guest_set_pte": {"idx": "count"},
    "guest_set_pgd": {"idx": "index"},
    "guest_set_pmd": {"idx": "index"},
    "remove_switcher_percpu_map": {"i": "count"},
    "put_user_u32": {"value": "count"},
}
_RETURN_KINDS = {
    "spgd_addr": "ptr", "spmd_addr": "ptr", "spte_addr": "ptr", "find_spte": "ptr",
    "gpgd_addr": "paddr", "gpmd_addr": "paddr", "gpte_addr": "paddr", "guest_pa": "paddr",
    "get_pfn": "frame", "gpte_to_spte": "entry", "lgread": "entry", "get_zeroed_page": "frame",
    "demand_page": ("bool", "paddr"), "__guest_pa": ("bool", "paddr"),
    "get_user_u32": ("count", "vaddr"), "get_user_pages_fast": ("count", "frame"),
}


def _shape(kind, value, pae: bool):
    """``value`` as a number of ``kind`` (see _ARG_KINDS), printing the fmt rule's way."""
    if isinstance(kind, tuple):
        if isinstance(value, tuple) and len(value) == len(kind):
            return tuple(_shape(k, v, pae) for k, v in zip(kind, value))
        return value
    if kind == "ptr|entry":
        kind = "ptr" if isinstance(value, tuple) else "entry"
    if kind == "ptr":
        if isinstance(value, tuple) and len(value) == 2 and all(type(v) is int for v in value):
            return _fmtmod.as_ptr(value, pae=pae)
        return value
    if value.__class__ is not int or kind not in _SHAPERS:
        return value
    if kind == "frame" and value < 0:
        return value
    return _SHAPERS[kind](pae)(value)


_SHAPERS = {
    "vaddr": lambda pae: _fmtmod.Vaddr,
    "paddr": lambda pae: _fmtmod.Hex16 if pae else _fmtmod.Hex8,
    "entry": lambda pae: _fmtmod.Hex16 if pae else _fmtmod.Hex8,
    "frame": lambda pae: _fmtmod.Frame8 if pae else _fmtmod.Frame5,
    "index": lambda pae: _fmtmod.Index,
    "bits": lambda pae: _Bits,
}


class _Bits(_fmtmod.Hex):
    """Flag bits (an error code): ``0x`` and as few digits as it takes."""

    __slots__ = ()
    digits = 1


def _layout_of(args: dict):
    for name in ("cpu", "lg", "host", "self", "mm"):
        obj = args.get(name)
        if obj is None:
            continue
        for path in (("lg", "x86"), ("x86",), ("layout",), ("host", "layout")):
            target = obj
            for attr in path:
                target = getattr(target, attr, None)
                if target is None:
                    break
            if target is not None and hasattr(target, "pae"):
                return bool(target.pae)
    return None


class Trace(list):
    """The events of one traced run, with views for common questions."""

    def render(self, decisions: bool = True) -> str:
        return "\n".join(str(e) for e in self if decisions or e.kind != "decision")

    def calls(self, name: str | None = None) -> list[Event]:
        return [e for e in self if e.kind == "call" and (name is None or e.func == name)]

    def results(self, name: str) -> list:
        return [e.value for e in self if e.kind == "return" and e.func == name]

    def decisions(self, func: str | None = None) -> list[Event]:
        return [e for e in self if e.kind == "decision" and (func is None or e.func == func)]

    def within(self, name: str) -> "Trace":
        """The events inside calls of ``name`` (its call and return included), in order."""
        out, inside = Trace(), None
        for e in self:
            if inside is None and e.kind == "call" and e.func == name:
                inside = e.depth
            if inside is not None:
                out.append(e)
                if e.depth == inside and e.func == name and e.kind in ("return", "raise"):
                    inside = None
        return out

    def reads(self) -> list[tuple[str, int, int]]:
        """Guest entries read: (C type read, guest-physical address, value)."""
        out, pending = [], []
        for e in self:
            if e.kind == "call" and e.func == "lgread":
                pending.append(e)
            elif e.kind == "return" and e.func == "lgread" and pending:
                call = pending.pop()
                out.append((call.args["type_name"], call.args["addr"], e.value))
        return out

    def writes(self) -> list[tuple[str, object, int, int]]:
        """Entries written: ("shadow", (frame, index), old, new) or ("guest", paddr, old, new)."""
        out = []
        for e in self:
            if e.kind == "call" and e.func == "store":
                out.append(("shadow", e.args["ptr"], e.old, e.args["value"]))
            elif e.kind == "call" and e.func == "lgwrite":
                out.append(("guest", e.args["addr"], e.old, e.args["value"]))
        return out

    def allocations(self) -> list[int]:
        """Frames handed out by get_zeroed_page (0 for a failed allocation)."""
        return self.results("get_zeroed_page")

    def releases(self) -> list[int]:
        """Frames whose reference was dropped (put_page and free_page)."""
        return [e.args["frame"] for e in self if e.kind == "call" and e.func in ("put_page", "free_page")]

    def kills(self) -> list[str]:
        return [e.args["reason"] for e in self if e.kind == "call" and e.func == "kill_guest"]


# --- which lines of page_tables.py are decisions ------------------------------------------
def _is_argument_check(node: ast.If) -> bool:
    """An ``if`` whose body only calls the model's private argument checks (``_bad``,
    ``_need_cpu``...), or raises a Python error, guards against API misuse; it is not one of
    the C's decisions (the C's own failures go through ``BUG()``/``BUG_ON()`` calls)."""
    for stmt in node.body:
        if isinstance(stmt, ast.Raise):
            continue
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            return False
        func = stmt.value.func
        if not (isinstance(func, ast.Name) and func.id.startswith("_")):
            return False
    return True


def _decision_table(module) -> dict:
    """{code object name: {test line: (first test line, last test line, body lines, label)}}"""
    source = _pyinspect.getsource(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    table: dict[int, tuple] = {}
    private = set()
    for func in ast.walk(tree):  # the model's own helpers (_bad, _need_cpu...) are not the C's
        if isinstance(func, ast.FunctionDef) and func.name.startswith("_") and not func.name.startswith("__"):
            private.update(id(n) for n in ast.walk(func))
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            if _is_argument_check(node) or id(node) in private:
                continue
            first, last = node.test.lineno, node.test.end_lineno
            body = (node.body[0].lineno, node.body[-1].end_lineno)
            text = lines[last - 1]
            comment = text.split("#", 1)[1].strip() if "#" in text else ""
            label = comment or ast.get_source_segment(source, node.test).replace("\n", " ")
            for ln in range(first, last + 1):
                table[ln] = (first, last, body, " ".join(label.split()))
    return table


_DECISIONS = _decision_table(_pt)
_PT_FILE = _pt.__file__


def _watched_codes(host_calls: bool) -> dict:
    """{code object: name} of the functions a trace (or a count) reports: the port's C
    functions, lguest's helpers, and with ``host_calls`` the host primitives."""
    port = vars(_pt)  # the twins themselves, not the checked views users get as pt.NAME
    codes = {port[name].__code__: name for name in _pt.C_FUNCTIONS}
    codes.update((getattr(_lguest, name).__code__, name) for name in _LGUEST_FUNCS)
    if host_calls:
        codes.update((method.__code__, method.__name__) for method in _HOST_METHODS)
    return codes


class Tracer:
    """Context manager that records a :class:`Trace` of the model's calls and decisions.

    :param lines: also record every line of page_tables.py executed (for steppers).
    :param host_calls: include the host primitives (allocation, references, stores).

    Arguments and results are recorded as :mod:`lguest_book.fmt` numbers (still ints): a
    virtual address, entry, frame, index or ``(frame, index)`` pointer prints in hex of the
    traced Guest's layout (the layout of the first call recorded), a count in decimal.
    """

    def __init__(self, lines: bool = False, host_calls: bool = True):
        self.trace = Trace()
        self.lines = lines
        self._codes = _watched_codes(host_calls)
        self._depth = 0
        self._base = None
        self._pending: dict[int, tuple] = {}  # frame id -> decision awaiting its outcome
        self._previous = None
        self._thread = None
        self._pae = None  # the traced Guest's layout, learnt from the first call's arguments

    # sys.settrace protocol
    def _global(self, frame, event, arg):
        if event != "call":
            return None
        name = self._codes.get(frame.f_code)
        if name is None:
            return None
        raw = {k: frame.f_locals[k] for k in frame.f_code.co_varnames[: frame.f_code.co_argcount]}
        if self._pae is None:
            self._pae = _layout_of(raw)
        pae = bool(self._pae)
        overrides = _ARG_OVERRIDES.get(name, {})
        args = {k: _shape(overrides.get(k) or _ARG_KINDS.get(k), v, pae) for k, v in raw.items()}
        event_ = Event("call", name, self._depth, args)
        if name == "store":
            try:
                event_.old = _shape("entry", raw["self"].deref(raw["ptr"]), pae)
            except Exception:  # noqa: BLE001 - the store itself will oops; record no old value
                event_.old = None
        elif name == "lgwrite":
            lg = raw["cpu"].lg
            event_.old = _shape("entry", lg.launcher.read_int((lg.mem_base + raw["addr"]) & 0xFFFFFFFF, lg.entry_bytes), pae)
        self.trace.append(event_)
        self._depth += 1
        return self._local

    def _local(self, frame, event, arg):
        name = self._codes[frame.f_code]
        if event == "line":
            if frame.f_code.co_filename == _PT_FILE:
                self._line(frame, name)
        elif event == "return":
            self._settle(frame, name, None)
            self._depth -= 1
            if self._exc.pop(id(frame), None) is not None and arg is None:
                self.trace.append(Event("raise", name, self._depth, value=self._last_exc))
            else:
                value = _shape(_RETURN_KINDS.get(name), arg, bool(self._pae))
                self.trace.append(Event("return", name, self._depth, value=value))
        elif event == "exception":
            self._exc[id(frame)] = True
            self._last_exc = arg[1]
        return self._local

    def _line(self, frame, name: str) -> None:
        lineno = frame.f_lineno
        self._settle(frame, name, lineno)
        info = _DECISIONS.get(lineno)
        if info is not None and id(frame) not in self._pending:
            self._pending[id(frame)] = info
        if self.lines:
            self.trace.append(Event("line", name, self._depth, lineno=lineno))

    def _settle(self, frame, name: str, lineno: int | None) -> None:
        info = self._pending.get(id(frame))
        if info is None:
            return
        first, last, (body_first, body_last), label = info
        if lineno is not None and first <= lineno <= last:
            return  # still evaluating a test that spans several lines
        del self._pending[id(frame)]
        outcome = lineno is not None and body_first <= lineno <= body_last
        self.trace.append(Event("decision", name, self._depth, lineno=first, label=label, outcome=outcome))
        if lineno is not None:
            again = _DECISIONS.get(lineno)
            if again is not None:
                self._pending[id(frame)] = again

    def __enter__(self) -> "Tracer":
        self._exc: dict[int, bool] = {}
        self._last_exc = None
        self._previous = sys.gettrace()
        self._thread = threading.get_ident()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(self._previous)
        return None


class CallCounter:
    """Count calls of the model's functions (the same ones a :class:`Tracer` names), and
    nothing else: no arguments, no decisions.  For experiments that run thousands of
    faults, where a full trace would cost more than the work it records.

    ``counts[name]`` is how many times ``name`` was called inside the ``with`` block.
    Like the tracer it watches from outside (``sys.setprofile``)."""

    def __init__(self, host_calls: bool = True):
        from collections import Counter

        self.counts: Counter = Counter()
        self._codes = _watched_codes(host_calls)
        self._previous = None

    def _profile(self, frame, event, arg):
        if event == "call":
            name = self._codes.get(frame.f_code)
            if name is not None:
                self.counts[name] += 1

    def __enter__(self) -> "CallCounter":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._previous)
        return None


def trace_call(func, *args, lines: bool = False, **kwargs):
    """Run ``func(*args, **kwargs)`` under a :class:`Tracer`; returns (result, Trace)."""
    with Tracer(lines=lines) as tracer:
        result = func(*args, **kwargs)
    return result, tracer.trace
