"""The boundary: where a *user's* arguments are checked, so the port itself need not check them.

page_tables.py holds only what page_tables.c does.  The C trusts its callers (the rest of
lguest), and so do the Python twins: a function of page_tables.py never checks that it got an
``LgCpu`` or a 32-bit address.  But a reader at a notebook can call any of them by hand, with
anything, and deserves a one-line error that names the bad argument, not a ``TypeError`` from
deep inside (or, worse, a silent answer to a question the C can never be asked).

So the checks live here, at the layer a user calls, and nowhere on the path the Guest takes:

* **One table**, :data:`PORT_RULES`: for every C function, a rule per parameter (same names as
  the twin's parameters, in order), and :data:`PAE_ONLY`, the functions that exist only under
  ``CONFIG_X86_PAE``.
* **A checked view of the port.**  ``from lguest_book import page_tables as pt`` gives the port
  module, and ``pt.demand_page`` (any C function reached as an *attribute* of the module) is
  the checked view: the rules run, then the twin itself.  The view wraps the twin
  (``functools.wraps``), so ``help()``, ``inspect.signature`` and ``inspect.getsource`` show
  the twin.  A function an exercise swapped in (``exercises.swap``) is handed out as it is.
* **The model's own callers use the raw twins**: inside page_tables.py the functions call one
  another by their global names (never through the view), and the layers above reach the
  port through :data:`port`, which reads the very same module namespace (so a swap is seen by
  every caller, at call time).  The fault path (Guest -> hypercalls -> page_tables) therefore
  runs no check at all.
* **Views and the Guest** check their own arguments at their top, with the same rules
  (:func:`check_u32`, :func:`check_slot`, :func:`check_count`; the Guest with
  ``host._check_int``), as cheaply as the hot path allows (``Guest.touch`` tests ``vaddr``
  inline and calls a check only when it fails).

Rules raise ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, out of range),
each one line naming the argument: ``vaddr must be an int, not str`` or
``vaddr=-1 is not a 32-bit unsigned value``.
"""

from __future__ import annotations

import functools
import inspect as _pyinspect
import types
from typing import Callable

from . import page_tables as _pt
from .host import Host, Launcher
from .lguest import PGDIR_SLOTS, Lguest, LgCpu
from .x86 import PAE, ULONG_MASK

ERRCODE_BITS = 0x1F  # x86 page-fault error code: present, write, user, reserved, fetch

__all__ = [
    "PORT_RULES", "PAE_ONLY", "port", "check_port_args", "check_u32", "check_slot", "check_count",
]


# =============================================================================================
# Rules: rule(name, value, first) raises, or returns nothing.  ``first`` is the function's
# first argument (already checked), from which a rule finds the layout and the host.
# =============================================================================================

def _is_int(value) -> bool:
    """An int, or one of fmt's ints that print in hex (what inspect hands out), but not a bool."""
    return isinstance(value, int) and value.__class__ is not bool

def _kind(name: str, value, what: str):
    raise TypeError(f"{name} must be {what}, not {type(value).__name__}")


def _range(name: str, value, what: str, decimal: bool = False):
    """Raise the error for ``value``: not an int at all, or an int out of range (shown in hex,
    or in decimal for a small count such as a slot or a CPU number)."""
    if not _is_int(value):
        _kind(name, value, "an int")
    shown = str(int(value)) if decimal or value < 0 else f"{int(value):#x}"  # a negative is no address
    raise ValueError(f"{name}={shown} is not {what}")


def _layout(first):
    """The paging layout a function's first argument lives in."""
    cls = first.__class__
    if cls is LgCpu:
        return first.lg.x86
    if cls is Lguest:
        return first.x86
    if cls is Host:
        return first.layout
    if cls is Launcher:
        return first.host.layout
    return PAE  # gpmd_addr(gpgd, vaddr): PAE only, its first argument is an entry


def _instance(cls, what: str) -> Callable:
    def rule(name, value, first):
        if value.__class__ is not cls:
            raise TypeError(f"{name} must be {what}, not {type(value).__name__}")

    rule.__doc__ = what
    return rule


CPU = _instance(LgCpu, "an LgCpu (guest.cpu)")
LG = _instance(Lguest, "an Lguest (guest.lg)")
HOST = _instance(Host, "a Host (guest.host)")
LAUNCHER = _instance(Launcher, "a Launcher (guest.lg.launcher)")


def rule_u32(name, value, first=None):
    """A 32-bit ``unsigned long``: addresses, indices and counts the C passes in registers."""
    if not _is_int(value) or not 0 <= value <= ULONG_MASK:
        _range(name, value, "a 32-bit unsigned value")


def SLOT(name, value, first):
    """A slot of the pgdir cache."""
    if not _is_int(value) or not 0 <= value < PGDIR_SLOTS:
        _range(name, value, f"a pgdir slot (0..{PGDIR_SLOTS - 1})", decimal=True)


def ENTRY(name, value, first):
    """A page-table entry of the layout (32 bits, or 64 under PAE)."""
    L = _layout(first)
    if not _is_int(value) or not 0 <= value <= L.entry_mask:
        _range(name, value, f"a {L.entry_bytes * 8}-bit {L.name} entry")


def ERRCODE(name, value, first):
    """An x86 page-fault error code."""
    if not _is_int(value) or not 0 <= value <= ERRCODE_BITS:
        _range(name, value, f"an x86 page-fault error code (bits {ERRCODE_BITS:#x})")


def INT(name, value, first):
    """Any int the C takes as a truth value or a flag word (``int write``, ``bool allocate``)."""
    if not isinstance(value, int):
        _kind(name, value, "an int")


def HOST_CPU(name, value, first):
    """A host CPU number (``first`` is the LgCpu)."""
    nr = first.lg.host.nr_cpus
    if not _is_int(value) or not 0 <= value < nr:
        _range(name, value, f"a host CPU number (0..{nr - 1})", decimal=True)


def PTR(name, value, first):
    """A pointer to an entry: the model's ``(frame, index)`` pair (``host.entry_ptr``)."""
    L = _layout(first)
    if (
        not isinstance(value, tuple) or len(value) != 2
        or any(not _is_int(v) for v in value)
    ):
        _kind(name, value, "a pointer (frame, index), as host.entry_ptr() makes")
    frame, index = value
    if not 0 <= index < L.ENTRIES_PER_PAGE or frame < 0:
        raise ValueError(f"{name}=({frame:#x}, {index:#x}) is not a pointer to an entry of a {L.name} page")


def ANY(name, value, first):
    """An argument the C never uses."""


U32 = rule_u32


# --- for the views and the Guest: the same rules, called directly ----------------------------
def check_u32(name: str, value) -> None:
    """``value`` must be a 32-bit unsigned int (an address, or a guest-physical address)."""
    if not _is_int(value) or not 0 <= value <= ULONG_MASK:
        _range(name, value, "a 32-bit unsigned value")


def check_slot(name: str, value) -> None:
    """``value`` must be a pgdir slot, or None (the current one)."""
    if value is not None:
        SLOT(name, value, None)


def check_count(name: str, value, limit: int) -> None:
    """``value`` must be an int from 0 to ``limit``."""
    if not _is_int(value) or not 0 <= value <= limit:
        _range(name, value, f"a count from 0 to {limit}", decimal=True)

#: Every C function: a rule per parameter, by the twin's parameter names, in order.
PORT_RULES: dict[str, dict[str, Callable]] = {
    "spgd_addr": dict(cpu=CPU, i=SLOT, vaddr=U32),
    "spmd_addr": dict(cpu=CPU, spgd=ENTRY, vaddr=U32),
    "spte_addr": dict(cpu=CPU, spgd=ENTRY, vaddr=U32),
    "gpgd_addr": dict(cpu=CPU, vaddr=U32),
    "gpmd_addr": dict(gpgd=ENTRY, vaddr=U32),
    "gpte_addr": dict(cpu=CPU, gentry=ENTRY, vaddr=U32),
    "get_pfn": dict(mm=LAUNCHER, virtpfn=U32, write=INT),
    "gpte_to_spte": dict(cpu=CPU, gpte=ENTRY, write=INT),
    "release_pte": dict(host=HOST, pte=ENTRY),
    "gpte_in_iomem": dict(cpu=CPU, gpte=ENTRY),
    "check_gpte": dict(cpu=CPU, gpte=ENTRY),
    "check_gpgd": dict(cpu=CPU, gpgd=ENTRY),
    "check_gpmd": dict(cpu=CPU, gpmd=ENTRY),
    "find_spte": dict(cpu=CPU, vaddr=U32, allocate=INT, pgd_flags=ENTRY, pmd_flags=ENTRY),
    "demand_page": dict(cpu=CPU, vaddr=U32, errcode=ERRCODE),
    "page_writable": dict(cpu=CPU, vaddr=U32),
    "pin_page": dict(cpu=CPU, vaddr=U32),
    "release_pmd": dict(host=HOST, spmd=PTR),
    "release_pgd": dict(host=HOST, spgd=PTR),
    "flush_user_mappings": dict(lg=LG, idx=SLOT),
    "guest_pagetable_flush_user": dict(cpu=CPU),
    "__guest_pa": dict(cpu=CPU, vaddr=U32),
    "guest_pa": dict(cpu=CPU, vaddr=U32),
    "find_pgdir": dict(lg=LG, pgtable=U32),
    "new_pgdir": dict(cpu=CPU, gpgdir=U32),
    "allocate_switcher_mapping": dict(cpu=CPU),
    "release_all_pagetables": dict(lg=LG),
    "guest_pagetable_clear_all": dict(cpu=CPU),
    "guest_new_pagetable": dict(cpu=CPU, pgtable=U32),
    "__guest_set_pte": dict(cpu=CPU, idx=SLOT, vaddr=U32, gpte=ENTRY),
    "guest_set_pte": dict(cpu=CPU, gpgdir=U32, vaddr=U32, gpte=ENTRY),
    "guest_set_pgd": dict(lg=LG, gpgdir=U32, idx=U32),
    "guest_set_pmd": dict(lg=LG, pmdp=U32, idx=U32),
    "init_guest_pagetable": dict(lg=LG),
    "page_table_guest_data_init": dict(cpu=CPU),
    "free_guest_pagetable": dict(lg=LG),
    "remove_switcher_percpu_map": dict(cpu=CPU, i=HOST_CPU),
    "map_switcher_in_guest": dict(cpu=CPU, pages=ANY),
    "pin_stack_pages": dict(cpu=CPU),
}

#: The functions that exist only under CONFIG_X86_PAE (gpmd_addr has no guest to ask: it is
#: PAE arithmetic whatever the caller's layout).
PAE_ONLY = frozenset({"spmd_addr", "check_gpmd", "release_pmd", "guest_set_pmd"})


# =============================================================================================
# Applying rules to a call
# =============================================================================================
def _binder(func: Callable, rules: dict[str, Callable], pae_only: str | None = None) -> Callable:
    """A function ``check(args, kwargs)`` that applies ``rules`` to the call ``func(*args, **kwargs)``."""
    sig = _pyinspect.signature(func)
    names = tuple(sig.parameters)
    missing = [n for n in names if n not in rules]
    if missing or len(rules) != len(names):
        raise AssertionError(f"{func.__name__}: rules for {sorted(rules)} but parameters {list(names)}")
    ordered = tuple(rules[n] for n in names)
    count = len(names)

    def check(args: tuple, kwargs: dict) -> None:
        if kwargs or len(args) != count:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(f"{func.__name__}(): {err}") from None
            bound.apply_defaults()
            args = tuple(bound.arguments.values())
        first = args[0] if args else None
        for rule, name, value in zip(ordered, names, args):
            rule(name, value, first)
        if pae_only is not None and not _layout(first).pae:
            raise ValueError(f"{pae_only}() exists only under PAE, and this guest is non-PAE (pae=False)")

    return check


def check_port_args(name: str, *args, **kwargs) -> None:
    """Check a call of C function ``name`` as the checked view would (for tests and tools)."""
    _CHECKS[name](args, kwargs)


# =============================================================================================
# The checked view of page_tables
# =============================================================================================
_RAW = {name: vars(_pt)[name] for name in _pt.C_FUNCTIONS}  # the model's own twins
_CHECKS = {name: _binder(_RAW[name], PORT_RULES[name], name if name in PAE_ONLY else None) for name in _pt.C_FUNCTIONS}


def _view(name: str) -> Callable:
    raw = _RAW[name]
    check = _CHECKS[name]

    @functools.wraps(raw)
    def checked_view(*args, **kwargs):
        check(args, kwargs)
        return raw(*args, **kwargs)

    checked_view.__checked__ = True
    return checked_view


_VIEWS = {name: _view(name) for name in _pt.C_FUNCTIONS}


class CheckedPort(types.ModuleType):
    """page_tables as users see it: a C function read as an attribute is its checked view
    (unless an exercise swapped another function in); everything else is as it is."""

    def __getattribute__(self, name):
        value = types.ModuleType.__getattribute__(self, name)
        view = _VIEWS.get(name)
        if view is not None and value is _RAW[name]:
            return view
        return value

    def __setattr__(self, name, value):
        # pt.f = pt.g (or restoring a saved pt.f) must store the twin, not its view.
        if getattr(value, "__checked__", False):
            value = value.__wrapped__
        types.ModuleType.__setattr__(self, name, value)


class _Namespace:
    """An object whose attributes are the names of a module's namespace (the same dict)."""

    def __init__(self, namespace: dict):
        self.__dict__ = namespace


#: The raw port, for the model's own callers: ``port.demand_page`` is page_tables.py's
#: ``demand_page`` itself (or what an exercise swapped in), looked up at call time.
port = _Namespace(vars(_pt))

_pt.__class__ = CheckedPort
