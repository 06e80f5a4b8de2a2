"""Graded exercises: swap a student's function into the model, run the machine on it, and
compare with the reference.

How an exercise works.  Each :class:`Exercise` names a C function of page_tables.c (its
``target``).  The student writes a Python function with the same arguments.  :func:`check`

1. compares the student's function with the reference on direct calls (a table of cases
   built on a fresh Guest): the return value, and what the call did to that Guest's machine
   (whether it was killed and why, the host's page references and pages in use), and
2. *swaps it into the model* (every caller in page_tables.py, hypercalls.py and the Guest then
   reaches the student's code), runs a scripted workload on two identical Guests — one on the
   reference, one on the student's function — and compares everything observable after every
   operation: why the Guest died (if it did), every shadow mapping of every cached top level,
   the Guest's own PTEs, the pgdir cache, and every page reference count.

A wrong, crashing or endlessly looping answer fails with a clear message; a time limit
guards every check (a trace-based deadline, plus an alarm signal in the main thread for code
that blocks outside Python).  The model is always restored, whatever happens.

``check(id, func)`` runs the visible checks (mostly non-PAE, a well-behaved Guest, plus the
one or two cases that catch an exercise's commonest slip);
``check(id, func, hidden=True)`` runs the instructor's: both layouts, an NX host, hostile
Guests and a Launcher that no longer maps a page.  In the
book the hidden call sits in nbgrader's hidden-tests region, which ``nbgrader
generate_assignment`` removes from the student version and ``nbgrader autograde`` restores.
"""

from __future__ import annotations

import functools
import inspect as _pyinspect
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from . import fmt
from . import inspect as li
from . import page_tables as pt
from .guest import Guest
from .lguest import PGDIR_SLOTS

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TIME_LIMIT = 10.0  # seconds for one check (all its cases and workloads)


class TimeLimit(BaseException):
    """The student's code ran past the time limit (an endless loop?).  Like
    KeyboardInterrupt it is not an ``Exception``, so an answer's ``except Exception:``
    cannot swallow it.  (A bare ``except:`` in an endless loop can; nbgrader's own cell
    timeout, set by :mod:`lguest_book.classroom`, is the last guard.)"""


# =============================================================================================
# Swapping functions in and out of the model
# =============================================================================================
_ORIGINALS: dict[str, Callable] = {}


def reference(name: str) -> Callable:
    """The model's own version of C function ``name`` (even while another is swapped in)."""
    if name not in pt.C_FUNCTIONS and name not in _EXTRA_TARGETS:
        raise ValueError(f"{name!r} is not a function of page_tables.c")
    return _ORIGINALS.get(name) or getattr(pt, name)


def swap(name: str, func: Callable) -> None:
    """Make every caller in the model use ``func`` for C function ``name``."""
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    original = reference(name)
    _ORIGINALS.setdefault(name, original)
    setattr(pt, name, func)


def restore(name: str) -> None:
    """Put the model's own ``name`` back."""
    original = _ORIGINALS.pop(name, None)
    if original is not None:
        setattr(pt, name, original)


def restore_all() -> None:
    for name in list(_ORIGINALS):
        restore(name)


@contextmanager
def use(name: str, func: Callable):
    """``with use("gpte_to_spte", mine): ...`` — the model runs on ``mine`` inside the block."""
    swap(name, func)
    try:
        yield
    finally:
        restore(name)


_EXTRA_TARGETS: tuple[str, ...] = ()


# =============================================================================================
# Time limits
# =============================================================================================
_LIMITS: list[Callable] = []  # the line tracer of each active time limit, innermost last


def _line_tracer(deadline: float, message: str) -> Callable:
    def local(frame, event, arg):
        if time.monotonic() > deadline:
            raise TimeLimit(message)
        return local

    def global_(frame, event, arg):
        if time.monotonic() > deadline:
            raise TimeLimit(message)
        if not frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            return local  # student code: check the clock on every line
        return None  # the model itself runs untraced

    return global_


@contextmanager
def time_limit(seconds: float):
    """Stop a student's code running inside the block after ``seconds``.

    Two guards.  In the main thread an alarm signal fires at the deadline, and again every
    tenth of a second after it, so a Python loop or a call blocked outside Python (a sleep)
    is interrupted.  And a function wrapped by :func:`guarded` — what :func:`evaluate` does
    to every answer — checks the clock on each of its own lines while it runs, which also
    works outside the main thread, where there is no alarm.  The model's own code is never
    traced, so a check runs at the model's full speed.  :class:`TimeLimit` is not an
    ``Exception``, so ``except Exception:`` in an answer does not swallow it; a bare
    ``except:`` inside an endless loop can (Python drops a tracer that raises), and there
    nbgrader's cell timeout is the last guard.
    """
    deadline = time.monotonic() + seconds
    message = f"time limit of {seconds:g} s exceeded: does your function loop forever?"
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    previous_handler = None
    if main:
        def on_alarm(signum, frame):
            raise TimeLimit(message)

        previous_handler = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    _LIMITS.append(_line_tracer(deadline, message))
    try:
        yield
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
        _LIMITS.pop()


def guarded(func: Callable) -> Callable:
    """``func``, run under the innermost active :func:`time_limit`'s line tracer."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        if not _LIMITS:
            return func(*args, **kwargs)
        previous = sys.gettrace()
        sys.settrace(_LIMITS[-1])
        try:
            return func(*args, **kwargs)
        finally:
            sys.settrace(previous)

    return run


# =============================================================================================
# Comparing two machines
# =============================================================================================
def snapshot(g: Guest) -> dict:
    """Everything a check compares, read through the public API."""
    lim = li.limits(g)
    cache = li.pgdir_cache(g)
    return {
        "dead": lim["dead"],
        "cache": [(c["allocated"], c["gpgdir"], c["switcher_mapped"], c["last_host_cpu"]) for c in cache],
        "current": li.current_slot(g),
        "shadow": [li.shadow_mappings(g, s) if c["allocated"] else {} for s, c in enumerate(cache)],
        "guest": [fmt.as_entry(g.guest_pte(v), g.x86) for v in _WATCHED],
        "refs": {f: c for f, (c, _) in li.refcounts(g).items()},
    }


_WATCHED = tuple(0x08048000 + i * 0x1000 for i in range(8)) + (0xC0100000, 0xC0101000)


def _describe_difference(a: dict, b: dict) -> str:
    if a["dead"] != b["dead"]:
        return f"the Guest's fate differs: reference {a['dead']!r}, yours {b['dead']!r}"
    for key, what in (("current", "current slot"), ("cache", "pgdir cache")):
        if a[key] != b[key]:
            return f"the {what} differs: reference {a[key]}, yours {b[key]}"
    for slot, (sa, sb) in enumerate(zip(a["shadow"], b["shadow"])):
        if sa != sb:
            for v in sorted(set(sa) | set(sb)):
                if sa.get(v) != sb.get(v):
                    ra, rb = sa.get(v), sb.get(v)
                    # typed by inspect (fmt's entries print in hex); the grader's decoded views are plain ints
                    show = lambda x: "none" if x is None else f"{x:#x}" if type(x) is int else str(x)  # noqa: E731
                    return f"slot {slot}: shadow PTE for {fmt.vaddr(v)} is {show(rb)}, expected {show(ra)}"
    if a["guest"] != b["guest"]:
        for v, x, y in zip(_WATCHED, a["guest"], b["guest"]):
            if x != y:
                return f"the Guest's PTE for {fmt.vaddr(v)} is {y}, expected {x} (accessed/dirty write-back?)"
    if a["refs"] != b["refs"]:
        for f in sorted(set(a["refs"]) | set(b["refs"])):
            if a["refs"].get(f) != b["refs"].get(f):
                return (f"host frame {f} has {b['refs'].get(f, 0)} references, expected "
                        f"{a['refs'].get(f, 0)} (a page pinned or released once too often?)")
    return "the machines differ"


Op = Callable[[Guest], object]


def run_pair(reference_swaps: list[tuple[str, Callable]], student_swaps: list[tuple[str, Callable]],
             workload: list[tuple[str, Op]], *, pae: bool = False, seed: int = 1,
             guest_kwargs: dict | None = None, expect: Callable[[Guest], object] | None = None
             ) -> tuple[int, str | None]:
    """Run ``workload`` on two identical Guests, the first with ``reference_swaps`` installed
    in the model, the second with ``student_swaps``; compare after every operation (with
    ``expect(guest)`` if given, else the full :func:`snapshot`).  Returns (operations run,
    first difference or None)."""
    kwargs = dict(pae=pae, seed=seed, **(guest_kwargs or {}))
    ref, mine = Guest(**kwargs), Guest(**kwargs)
    view = expect or snapshot
    for n, (label, op) in enumerate(workload, start=1):
        for guest, swaps in ((ref, reference_swaps), (mine, student_swaps)):
            for name, f in swaps:
                swap(name, f)
            try:
                op(guest)
            finally:
                for name, _ in swaps:
                    restore(name)
        a, b = view(ref), view(mine)
        if a != b:
            detail = _describe_difference(a, b) if expect is None else f"expected {a}, got {b}"
            return n, f"after step {n} ({label}): {detail}"
    return len(workload), None


def run_differential(name: str, func: Callable, workload: list[tuple[str, Op]], **kwargs) -> tuple[int, str | None]:
    """:func:`run_pair` with the model's own ``name`` against ``func``."""
    return run_pair([], [(name, func)], workload, **kwargs)


# =============================================================================================
# Exercises
# =============================================================================================
@dataclass
class Case:
    label: str
    build: Callable[[], tuple]  # returns the arguments (a fresh Guest built inside)
    # What to compare: "return" (the return value only) or "state": the return value, and
    # what the call did to the machine of its first argument (an LgCpu or an Lguest): the
    # Guest's fate and the host's page references (see :func:`case_value`).
    compare: str = "state"


def _case_machine(args: tuple):
    first = args[0] if args else None
    lg = getattr(first, "lg", None)
    if lg is None and hasattr(first, "pgdirs") and hasattr(first, "host"):
        lg = first
    return lg


def case_value(func: Callable, case: Case, call: Callable | None = None):
    """What a check compares of one case: ``func``'s return value on fresh arguments and
    (``compare="state"``) what the call itself did to the machine of its first argument: a
    Guest it killed (and why), and the change in the host's page references and pages in
    use.  A missing kill_guest(), a page pinned and never released, a shadow page allocated
    just to look, all show here even when the return value is right.  A call that changed
    none of these gives its return value alone; else a dict of the return value and the
    changes.  ``call(func, args)`` runs the function (catching what it raises)."""
    args = case.build()
    lg = _case_machine(args) if case.compare == "state" else None
    if lg is not None:
        refs = lg.host.refcount
        dead, count, pages = lg.dead, sum(refs.values()), len(refs)
    value = (call or _call)(func, args)
    if lg is None:
        return value
    out = {}
    if lg.dead is not None and dead is None:
        out["killed the Guest"] = lg.dead
    refs = lg.host.refcount
    if sum(refs.values()) != count:
        out["page references"] = f"{sum(refs.values()) - count:+d}"
    if len(refs) != pages:
        out["pages in use"] = f"{len(refs) - pages:+d}"
    return {"returns": value, **out} if out else value


@dataclass
class Exercise:
    id: str
    chapter: int
    target: str  # the C function (or policy) the student writes
    marker: str
    title: str
    task: str
    cases: Callable[[bool], list[Case]] = field(repr=False, default=lambda hidden: [])
    workloads: Callable[[bool], list[dict]] = field(repr=False, default=lambda hidden: [])
    reference_impl: Callable | None = field(repr=False, default=None)
    install: Callable[[Callable], list[tuple[str, Callable]]] | None = field(repr=False, default=None)

    @property
    def signature(self) -> str:
        ref = self.reference_impl or reference(self.target)
        return f"def {self.target}{_pyinspect.signature(ref)}".replace("'", "")


EXERCISES: dict[str, Exercise] = {}


def _register(ex: Exercise) -> Exercise:
    EXERCISES[ex.id] = ex
    return ex


@dataclass
class Report:
    exercise: str
    passed: int
    total: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures and self.passed == self.total

    def __str__(self) -> str:
        if self.ok:
            return f"✓ {self.exercise}: {self.passed}/{self.total} checks passed"
        return f"✗ {self.exercise}: {self.passed}/{self.total} checks passed\n  " + "\n  ".join(self.failures)


def _arity(func: Callable) -> int | None:
    try:
        params = _pyinspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL,) for p in params):
        return None
    return sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def evaluate(exercise_id: str, func: Callable, *, hidden: bool = False,
             time_limit_s: float = DEFAULT_TIME_LIMIT) -> Report:
    """Run the checks of ``exercise_id`` against ``func``; never raises for a bad answer."""
    if exercise_id not in EXERCISES:
        raise ValueError(f"exercise_id={exercise_id!r}: known exercises are {sorted(EXERCISES)}")
    ex = EXERCISES[exercise_id]
    failures: list[str] = []
    passed = total = 0
    if not callable(func):
        return Report(ex.id, 0, 1, [f"expected a function, got {type(func).__name__}"])
    ref = ex.reference_impl or reference(ex.target)
    want, got = _arity(ref), _arity(func)
    if want is not None and got is not None and want != got:
        return Report(ex.id, 0, 1, [f"{ex.target} takes {want} arguments; yours takes {got}"])
    func = guarded(func)
    cases = ex.cases(hidden)
    workloads = ex.workloads(hidden)
    try:
        with time_limit(time_limit_s):
            for case in cases:
                total += 1
                expected = case_value(ref, case)
                actual = case_value(func, case)
                if _same(expected, actual):
                    passed += 1
                else:
                    failures.append(f"{case.label}: expected {_show(expected)}, got {_show(actual)}")
            for w in workloads:
                total += 1
                ref_swaps = ex.install(ref) if ex.install else []
                mine_swaps = ex.install(func) if ex.install else [(ex.target, func)]
                try:
                    n, diff = run_pair(ref_swaps, mine_swaps, w["ops"], pae=w.get("pae", False), seed=w.get("seed", 1),
                                       guest_kwargs=w.get("guest_kwargs"), expect=w.get("expect"))
                except TimeLimit:
                    raise
                except Exception as err:  # noqa: BLE001 - the student's code crashed inside the model
                    n, diff = 0, f"your function raised {type(err).__name__}: {err}"
                if diff is None:
                    passed += 1
                else:
                    failures.append(f"workload '{w['label']}' ({n} operations): {diff}")
    except TimeLimit as err:
        failures.append(str(err))
    finally:
        restore_all()
    return Report(ex.id, passed, max(total, 1), failures)


class _Raised:
    def __init__(self, err: BaseException):
        self.err = err

    def __eq__(self, other):
        return isinstance(other, _Raised) and type(other.err) is type(self.err)

    def __repr__(self):
        return f"{type(self.err).__name__}: {self.err}"


def _call(func, args):
    try:
        return func(*args)
    except TimeLimit:
        raise
    except Exception as err:  # noqa: BLE001 - a student's crash is a result to report
        return _Raised(err)


def _same(a, b) -> bool:
    if isinstance(a, _Raised) or isinstance(b, _Raised):
        return isinstance(a, _Raised) and a == b
    return a == b


def _show(x) -> str:
    if isinstance(x, _Raised):
        return f"an exception ({x!r})"
    if isinstance(x, bool) or x is None or isinstance(x, (fmt.Hex, fmt.Ptr)):
        return repr(x)
    if isinstance(x, int):
        return f"{x:#x}"
    if isinstance(x, tuple):
        return "(" + ", ".join(_show(v) for v in x) + ")"
    if isinstance(x, dict):  # a case's value and the machine's state (case_value)
        return "{" + "; ".join(f"{k}: {_show(v) if k == 'returns' else v}" for k, v in x.items()) + "}"
    return repr(x)


def check(exercise_id: str, func: Callable, *, hidden: bool = False,
          time_limit_s: float = DEFAULT_TIME_LIMIT) -> None:
    """Check a student's function; prints the result, raises AssertionError if it fails
    (which is what makes an nbgrader grading cell score zero).  Use :func:`evaluate` to get
    the :class:`Report` instead."""
    report = evaluate(exercise_id, func, hidden=hidden, time_limit_s=time_limit_s)
    if not report.ok:
        raise AssertionError(str(report))
    print(("hidden checks " if hidden else "") + str(report))


def show(exercise_id: str) -> None:
    """Print an exercise's task and the signature to write."""
    ex = EXERCISES[exercise_id]
    print(f"{ex.title} — {ex.target}() ({ex.marker}), chapter {ex.chapter}\n\n{ex.task}\n\n{ex.signature}:")


# =============================================================================================
# The workloads and cases
# =============================================================================================
def user_guest(pae: bool = False, seed: int = 1, **kw) -> tuple[Guest, object]:
    g = Guest(pae=pae, seed=seed, **kw)
    p = g.new_process("student")
    g.switch_to(p)
    return g, p


def _ops_basic() -> list[tuple[str, Op]]:
    """Maps, reads, writes, a refusal, a kernel change, flushes, a switch: the common paths."""
    ops: list[tuple[str, Op]] = []

    def start(g):
        g._exercise_proc = g.new_process("student")
        g.switch_to(g._exercise_proc)
    ops.append(("start a process", start))
    for i in range(4):
        ops.append((f"map page {i}", lambda g, i=i: g.map(0x08048000 + i * 0x1000, 0x300 + i, accessed=False)))
    ops.append(("read page 0", lambda g: g.touch(0x08048000, user=True)))
    ops.append(("write page 0", lambda g: g.touch(0x08048000, write=True, user=True)))
    ops.append(("write page 1", lambda g: g.touch(0x08049000, write=True, user=True)))
    ops.append(("read page 2", lambda g: g.touch(0x0804A000, user=True)))
    ops.append(("read-only page, written", lambda g: (g.map(0x0804B000, 0x303, writable=False), g.touch(0x0804B000, write=True, user=True))))
    ops.append(("kernel read", lambda g: g.touch(0xC0100000)))
    ops.append(("set an accessed PTE", lambda g: g.set_pte(0x0804C000, 0x304 << 12 | 0x27)))
    ops.append(("change a kernel PTE", lambda g: g.map(0xC0101000, 0x380)))
    ops.append(("kernel write", lambda g: g.touch(0xC0101000, write=True)))
    ops.append(("remap a mapped page", lambda g: g.map(0x08048000, 0x310)))
    ops.append(("touch the remapped page", lambda g: g.touch(0x08048000, write=True, user=True)))
    # The last user top-level entry (just below the kernel): a flush must reach it too.
    ops.append(("map and write the top user page", lambda g: (g.map(0xBFFFF000, 0x311), g.touch(0xBFFFF000, write=True, user=True))))
    ops.append(("flush user", lambda g: g.flush_user()))
    ops.append(("touch again", lambda g: [g.touch(0x08048000 + i * 0x1000, user=True) for i in range(3)]))

    def other(g):
        q = g.new_process("other")
        g.switch_to(q)
        g.map(0x08048000, 0x350)
        g.touch(0x08048000, write=True, user=True)
        g.switch_to(g._exercise_proc)
    ops.append(("switch away and back", other))
    ops.append(("flush all", lambda g: g.flush_all()))
    ops.append(("touch after flush", lambda g: [g.touch(0x08048000 + i * 0x1000, write=bool(i % 2), user=True) for i in range(4)]))
    return ops


def _ops_hostile(ending: str = "beyond memory") -> list[tuple[str, Op]]:
    """The start of the common paths, then what a careless or hostile Guest (or Launcher) does;
    ``ending`` picks the way the Guest dies at the end (a killed Guest does nothing more)."""
    ops = _ops_basic()[:6]
    # Device memory, Accessed already set: the shadow PTE is cleared, never mapped.
    ops.append(("an accessed PTE into I/O memory", lambda g: (g.set_pte(0x0804E000, (g.lg.pfn_limit + 3) << 12 | 0x27),
                                                            g.touch(0x0804E000, user=True))))
    # A read-only page of the Launcher: only a write pin fails, and an accessed clean PTE pins for reading.
    ops.append(("a read-only Launcher page, mapped accessed and clean", lambda g: (
        g.lg.launcher.protect(0x320), g.map(0x0804F000, 0x320), g.touch(0x0804F000, user=True))))
    # A not-present PTE with Accessed, Dirty and RW set: __guest_set_pte maps it all the same.
    ops.append(("a not-present dirty writable PTE", lambda g: g.set_pte(0x08047000, 0x321 << 12 | 0x62)))
    # PAE: a page table the shadow has no mid-level entry for, under a present top-level entry.
    ops.append(("a new page table, then a PTE in it", lambda g: (
        g.map(0x08448000, 0x322), g.touch(0x08048000, user=True), g.map(0x08449000, 0x323))))
    ops.append(("an NX PTE (PAE: bit 63)", lambda g: (
        g.set_pte(0x08046000, (0x324 << 12 | 0x67) | ((1 << 63) if g.x86.pae else 0)), g.touch(0x08046000, user=True))))
    ops.append(("touch all", lambda g: [g.touch(0x08046000 + i * 0x1000, user=True) for i in range(6)]))
    if ending == "beyond memory":
        ops.append(("PTE beyond memory", lambda g: (g.set_pte(0x0804D000, 0x7FFFF << 12 | 0x07), g.touch(0x0804D000, user=True))))
    elif ending == "bad PTE over a mapped page":
        # check_gpte() kills the Guest after the old shadow PTE was released: it stays in place.
        ops.append(("an accessed PTE beyond memory over a mapped page", lambda g: (
            g.touch(0x08048000, user=True), g.set_pte(0x08048000, 0x7FFFF << 12 | 0x27))))
    elif ending == "PSE over a mapped page":
        ops.append(("an accessed PSE PTE over a mapped page", lambda g: (
            g.touch(0x08049000, user=True), g.set_pte(0x08049000, 0x301 << 12 | 0xA7))))
    elif ending == "Launcher hole":
        # The Launcher no longer maps a guest page: get_pfn() fails and the Guest is killed.
        ops.append(("a page the Launcher unmapped", lambda g: (
            g.lg.launcher.unmap(0x325), g.map(0x08045000, 0x325), g.touch(0x08045000, user=True))))
    else:
        raise ValueError(ending)
    return ops


def _workloads(hidden: bool) -> list[dict]:
    if not hidden:
        return [{"label": "map, fault, flush, switch (non-PAE)", "ops": _ops_basic()}]
    return [{"label": "the same under PAE", "ops": _ops_basic(), "pae": True, "seed": 5},
            {"label": "a hostile Guest", "ops": _ops_hostile("beyond memory"), "seed": 9},
            {"label": "a hostile PAE Guest", "ops": _ops_hostile("bad PTE over a mapped page"), "pae": True, "seed": 11},
            {"label": "a hostile Guest, a bad PTE over a mapped page", "ops": _ops_hostile("PSE over a mapped page"), "seed": 12},
            {"label": "a hostile PAE Guest on an NX host, a Launcher hole", "ops": _ops_hostile("Launcher hole"), "pae": True,
             "seed": 13, "guest_kwargs": {"host_nx": True}}]


def _two_cpu_ops() -> list[tuple[str, Op]]:
    ops = _ops_basic()[:6]
    for cpu in (1, 0, 1, 1, 0):
        ops.append((f"run on host CPU {cpu}", lambda g, cpu=cpu: (setattr(g.host, "current_cpu", cpu), g.touch(0xC0100000))))
    ops.append(("switch process", lambda g: g.switch_to(g.new_process("x"))))
    ops.append(("run on host CPU 0", lambda g: (setattr(g.host, "current_cpu", 0), g.touch(0xC0100000))))
    return ops


# ch1 --------------------------------------------------------------------------------------
def _cases_gpte_addr(hidden: bool) -> list[Case]:
    out = []
    layouts = (False, True) if hidden else (False,)
    for pae in layouts:
        for vaddr in (0x08048000, 0x0804A123, 0xC0100000, 0x00000000, 0xBFFFF000):
            def build(vaddr=vaddr, pae=pae):
                g, _ = user_guest(pae)
                g.map(0x08048000, 0x300)
                L = g.x86
                entry = li.walk_guest(g, vaddr)[1 if pae else 0].value if li.walk_guest(g, vaddr)[0].present else 0
                return (g.cpu, entry if entry & 1 else (0x123 << 12) | 0x67, vaddr)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} gpte_addr for {fmt.vaddr(vaddr)}", build))
    if hidden:
        # A PAE mid-level entry with NX (bit 63) and a high frame bit: the page's address is an
        # unsigned long, 32 bits, so both are dropped.
        for gentry, vaddr in ((1 << 63 | 0x123 << 12 | 0x67, 0x0804A000), (1 << 32 | 0x124 << 12 | 0x67, 0xBFFFF000)):
            def build(gentry=gentry, vaddr=vaddr):
                g, _ = user_guest(True)
                return (g.cpu, gentry, vaddr)
            out.append(Case(f"PAE gpte_addr({fmt.entry(gentry, pae=True)}, {fmt.vaddr(vaddr)})", build))
    return out


_register(Exercise(
    "ch1-gpte-addr", 1, "gpte_addr", "H:320", "Where is the Guest's PTE?",
    "Write gpte_addr(cpu, gentry, vaddr): the guest-physical address of the Guest's PTE for vaddr, "
    "given the Guest's directory entry above it (the top-level entry without PAE, the mid-level "
    "entry with PAE).  Use cpu.lg.x86 for the layout (L.pae, L.pte_index(vaddr), L.entry_bytes, "
    "L.pgd_pfn(e), L.pmd_pfn(e)).  The address is an unsigned long, 32 bits: with PAE the bits of the entry "
    "above bit 31 (NX, say) are no part of it.  (The C also insists the entry is present; the checks only "
    "pass present entries.)",
    cases=_cases_gpte_addr, workloads=_workloads,
))


# ch2 --------------------------------------------------------------------------------------
def _cases_gpte_to_spte(hidden: bool) -> list[Case]:
    out = []
    for pae in ((False, True) if hidden else (False,)):
        for gpte, write in ((0x300 << 12 | 0x27, 0), (0x300 << 12 | 0x67, 1), (0x301 << 12 | 0x125, 0), (0x302 << 12 | 0x07, 1)):
            def build(gpte=gpte, write=write, pae=pae):
                g, _ = user_guest(pae)
                return (g.cpu, gpte, write)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} gpte_to_spte({fmt.entry(gpte, pae=pae)}, write={write})", build))
    # get_pfn() fails: a page the Launcher no longer maps; a read-only one pinned for writing
    # (for reading it pins).  The Guest is killed and the result has no flags.
    for pae in ((False, True) if hidden else (False,)):
        for how, gpte, write in (("unmapped", 0x305 << 12 | 0x67, 0), ("read-only", 0x306 << 12 | 0x67, 1),
                                 ("read-only", 0x306 << 12 | 0x27, 0))[:None if hidden else 1]:
            def build(how=how, gpte=gpte, write=write, pae=pae):
                g, _ = user_guest(pae)
                if how == "unmapped":
                    g.lg.launcher.unmap(gpte >> 12)
                else:
                    g.lg.launcher.protect(gpte >> 12)
                return (g.cpu, gpte, write)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} gpte_to_spte({fmt.entry(gpte, pae=pae)}, write={write}) "
                            f"on a page the Launcher has {how}", build))
    # PAE on a host with NX: the Guest's NX bit (63) and a software bit (62) are flags the
    # 32-bit unsigned long cannot hold.
    for gpte, write in ((1 << 63 | 0x300 << 12 | 0x25, 0), (3 << 62 | 0x307 << 12 | 0x167, 1))[:None if hidden else 1]:
        def build(gpte=gpte, write=write):
            g, _ = user_guest(True, host_nx=True)
            return (g.cpu, gpte, write)
        out.append(Case(f"PAE (NX host) gpte_to_spte({fmt.entry(gpte, pae=True)}, write={write})", build))
    return out


_register(Exercise(
    "ch2-gpte-to-spte", 2, "gpte_to_spte", "H:340", "Make a shadow PTE",
    "Write gpte_to_spte(cpu, gpte, write): keep the Guest PTE's flags except Global, and replace its "
    "guest frame by the host frame that backs it.  The Launcher maps guest memory at lg.mem_base, so "
    "guest frame n is the Launcher's page mem_base//4096 + n; get_pfn(lg.launcher, that page, write) "
    "pins it and returns the host frame, or 0xffffffff if it cannot.  On failure, kill the Guest with "
    "kill_guest(cpu, f'failed to get page {guest frame}') and use no flags at all (so teardown will not "
    "release the entry).  get_pfn fails for a page the Launcher does not map, and for a read-only one "
    "when write is set.  The C keeps the flags in an unsigned long, 32 bits: under PAE the Guest PTE's "
    "high flag bits (NX, bit 63, and the bits for software) are dropped.  Build the result with "
    "L.pfn_pte(frame, flags).  The checks also compare what your call did: the Guest's fate and the "
    "host's page references.",
    cases=_cases_gpte_to_spte, workloads=_workloads,
))


# ch3 --------------------------------------------------------------------------------------
def _cases_page_writable(hidden: bool) -> list[Case]:
    out = []
    for pae in ((False, True) if hidden else (False,)):
        for vaddr, prepare in ((0x08048000, "write"), (0x08049000, "read"), (0x0804A000, "none"),
                               (0xC0207FFF, "none"), (0xFFC01000, "none"), (0x50000000, "none")):
            def build(vaddr=vaddr, prepare=prepare, pae=pae):
                g, _ = user_guest(pae)
                g.map(0x08048000, 0x300); g.map(0x08049000, 0x301); g.map(0x0804A000, 0x302)
                if prepare != "none":
                    g.touch(vaddr, write=prepare == "write", user=True)
                return (g.cpu, vaddr)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} page_writable({fmt.vaddr(vaddr)}) after a {prepare}", build))
        # __guest_set_pte maps an Accessed/Dirty PTE at once, present or not: the shadow PTE
        # then has RW but not Present.
        def build(pae=pae):
            g, _ = user_guest(pae)
            g.map(0x08048000, 0x300)
            g.touch(0x08048000, user=True)
            g.set_pte(0x0804B000, 0x303 << 12 | 0x62)
            return (g.cpu, 0x0804B000)
        out.append(Case(f"{'PAE' if pae else 'non-PAE'} page_writable(0x0804b000) of a not-present dirty writable PTE", build))
        # The Switcher's pages are in the shadow once the Guest has run, and this CPU's register
        # page there is writable: only the Switcher test answers False for it.
        for offset in ((0x1000,) if not hidden else (0x0000, 0x1000, 0x2000)):
            def build(offset=offset, pae=pae):
                g, _ = user_guest(pae)
                g.map(0x08048000, 0x300)
                g.touch(0x08048000, write=True, user=True)  # the Guest runs: the Switcher is mapped in
                return (g.cpu, g.cpu.lg.host.switcher_addr + offset)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} page_writable(switcher_addr + {fmt.vaddr(offset)}) "
                            "after the Guest ran", build))
    return out


_register(Exercise(
    "ch3-page-writable", 3, "page_writable", "H:360", "Is the stack page writable?",
    "Write page_writable(cpu, vaddr): True only if the current shadow table maps vaddr present and "
    "writable: both bits (a shadow PTE can have RW without Present).  It is the shadow that counts, "
    "not the Guest's own PTE.  Addresses at or above the Switcher (cpu.lg.host.switcher_addr) are "
    "never writable here.  Use find_spte(cpu, vaddr, False, 0, 0) to find the shadow PTE without "
    "allocating (None if there is none; the checks count the host's pages), and "
    "cpu.lg.host.deref(pointer) to read it.",
    cases=_cases_page_writable, workloads=_workloads,
))


# ch4 --------------------------------------------------------------------------------------
_register(Exercise(
    "ch4-guest-set-pte", 4, "__guest_set_pte", "H:420", "Keep one cached top level in step",
    "Write __guest_set_pte(cpu, idx, vaddr, gpte): the Guest set its PTE for vaddr to gpte; fix the "
    "shadow of cached top level idx.  If there is no present shadow top-level entry (and, with PAE, "
    "no present mid-level one) there is nothing to do.  Otherwise release the old shadow PTE with "
    "release_pte(host, entry); then, if the new PTE has Accessed or Dirty set and is not I/O memory "
    "(gpte_in_iomem), check it with check_gpte() and store gpte_to_spte(cpu, gpte, its Dirty bit) at "
    "once; else (I/O memory included) store 0.  If check_gpte() kills the Guest, return at once: keep "
    "the C's flaw and leave the old, already released, entry where it is.  The checks compare every "
    "page reference count.",
    workloads=_workloads,
))


# ch5: LRU instead of random ------------------------------------------------------------------
def _lru_reference(recent: list[int], slots: list) -> int:
    for i, g in enumerate(slots):
        if g is None:
            return i
    order = {g: n for n, g in enumerate(recent)}
    return min(range(len(slots)), key=lambda i: order.get(slots[i], -1))


def _install_lru(policy: Callable) -> list[tuple[str, Callable]]:
    """A new_pgdir that asks ``policy(recent, slots)`` for the slot, and a guest_new_pagetable
    that records every top level the Guest loads (most recent last)."""
    recent: list[int] = []
    original_new_pagetable = reference("guest_new_pagetable")

    def guest_new_pagetable(cpu, pgtable):
        if pgtable in recent:
            recent.remove(pgtable)
        recent.append(pgtable)
        return original_new_pagetable(cpu, pgtable)

    def new_pgdir(cpu, gpgdir):
        lg = cpu.lg
        slots = [p.gpgdir if p.pgdir else None for p in lg.pgdirs]
        choice = policy(list(recent[:-1]), slots)
        if not isinstance(choice, int) or not 0 <= choice < PGDIR_SLOTS:
            raise ValueError(f"your policy returned {choice!r}, not a slot number 0..3")
        blank = False
        if not lg.pgdirs[choice].pgdir:
            lg.pgdirs[choice].pgdir = lg.host.get_zeroed_page()
            if not lg.pgdirs[choice].pgdir:
                choice = cpu.cpu_pgd
            else:
                blank = True
        lg.pgdirs[choice].gpgdir = gpgdir
        pt.flush_user_mappings(lg, choice)
        lg.pgdirs[choice].last_host_cpu = -1
        return choice, blank

    return [("guest_new_pagetable", guest_new_pagetable), ("new_pgdir", new_pgdir)]


def _lru_workloads(hidden: bool) -> list[dict]:
    def rotation(names: int, rounds: int, pae=False, seed=1):
        def setup_ops():
            ops: list[tuple[str, Op]] = []

            def make(g):
                g._procs = [g.new_process(f"p{i}") for i in range(names)]
            ops.append(("create processes", make))
            order = [i % names for i in range(rounds)] if not hidden else [(i * 7 + i // 3) % names for i in range(rounds)]
            for i in order:
                ops.append((f"switch to p{i}", lambda g, i=i: (g.switch_to(g._procs[i]), g.touch(0xC0100000))))
            return ops
        return {"label": f"{names} processes, {rounds} switches{' (PAE)' if pae else ''}",
                "ops": setup_ops(), "pae": pae, "seed": seed, "expect": _lru_view}
    if not hidden:
        return [rotation(3, 8), rotation(5, 12)]
    return [rotation(4, 16, pae=True, seed=3), rotation(6, 20, seed=4)]


def _lru_view(g: Guest) -> tuple:
    return (li.current_slot(g), tuple(c["gpgdir"] if c["allocated"] else None for c in li.pgdir_cache(g)), li.limits(g)["dead"])


_register(Exercise(
    "ch5-lru", 5, "lru_victim", "H:435", "Least recently used instead of random",
    "Write lru_victim(recent, slots): new_pgdir() must pick a slot for a Guest top level that is not "
    "cached.  slots[i] is the Guest top level (gpgdir) slot i shadows, or None if the slot has never "
    "been used; recent lists the top levels the Guest has loaded, least recently used first (the one "
    "being loaded now is not in it).  Return an unused slot if there is one, else the slot whose top "
    "level was used least recently (a top level not in recent counts as oldest).",
    workloads=_lru_workloads, reference_impl=_lru_reference,
    # both runs use the policy machinery: LRU by the reference policy against the student's
    install=_install_lru,
))




# ch6 --------------------------------------------------------------------------------------
_register(Exercise(
    "ch6-flush-user", 6, "flush_user_mappings", "H:445", "Flush the user part",
    "Write flush_user_mappings(lg, idx): release every top-level entry of cached top level idx that "
    "lies below the Guest's kernel address (lg.kernel_address), with release_pgd(lg.host, pointer): "
    "every one, up to and including the last entry below pgd_index(kernel_address), and none of the "
    "kernel's.  A pointer to entry i of a top level is (lg.pgdirs[idx].pgdir, i).  L.pgd_index(vaddr) "
    "gives an address's top-level index.",
    workloads=_workloads,
))


# ch7 --------------------------------------------------------------------------------------
def _switcher_workloads(hidden: bool) -> list[dict]:
    w = [{"label": "a Guest moving between two host CPUs", "ops": _two_cpu_ops(), "guest_kwargs": {"nr_cpus": 2}}]
    if hidden:
        w.append({"label": "three CPUs, PAE", "ops": _two_cpu_ops(), "pae": True, "guest_kwargs": {"nr_cpus": 3}})
    return w


_register(Exercise(
    "ch7-remove-percpu", 7, "remove_switcher_percpu_map", "H:481", "Unmap another CPU's Switcher pages",
    "Write remove_switcher_percpu_map(cpu, i): host CPU i's two Switcher pages sit at "
    "switcher_addr + PAGE_SIZE + i * 2 * PAGE_SIZE and the page after it.  For each, find the shadow "
    "PTE with find_spte(cpu, address, False, 0, 0), release what it maps with release_pte(host, "
    "entry), and store 0 in it (host.store(pointer, 0)).",
    workloads=_switcher_workloads,
))


# ch8 --------------------------------------------------------------------------------------
def _cases_guest_pa(hidden: bool) -> list[Case]:
    out = []
    for pae in ((False, True) if hidden else (False,)):
        for vaddr in (0xC0123456, 0x08048010, 0x08049000, 0x00000000, 0xFFC00000):
            def build(vaddr=vaddr, pae=pae):
                g, _ = user_guest(pae)
                g.map(0x08048000, 0x300)
                return (g.cpu, vaddr)
            out.append(Case(f"{'PAE' if pae else 'non-PAE'} __guest_pa({fmt.vaddr(vaddr)})", build))
        def linear(pae=pae):
            g = Guest(pae=pae, seed=1, boot=False)
            return (g.cpu, 0x00345678)
        out.append(Case(f"{'PAE' if pae else 'non-PAE'} __guest_pa in linear mode", linear))
    if hidden:
        # PAE on an NX host: the PTE's NX bit is no part of the address.
        def nx(vaddr=0x08048123):
            g, _ = user_guest(True, host_nx=True)
            g.map(0x08048000, 0x300, flags=1 << 63)
            return (g.cpu, vaddr)
        out.append(Case("PAE (NX host) __guest_pa(0x08048123) of an NX page", nx))
    return out


_register(Exercise(
    "ch8-guest-pa", 8, "__guest_pa", "H:500", "Guest-virtual to guest-physical",
    "Write __guest_pa(cpu, vaddr) returning (ok, paddr): in linear mode (cpu.linear_pages) the answer "
    "is (True, vaddr).  Otherwise walk the Guest's own tables with lgread(cpu, address, 'pgd_t'/'pmd_t'/"
    "'pte_t'), using gpgd_addr, gpmd_addr (PAE) and gpte_addr; if any level is not present return "
    "(False, 0xffffffff); else the page's address (L.pte_pfn(gpte) * PAGE_SIZE: with PAE the PTE's "
    "high bits, NX say, are no part of it) plus vaddr's offset in the page.",
    cases=_cases_guest_pa, workloads=_workloads,
))
