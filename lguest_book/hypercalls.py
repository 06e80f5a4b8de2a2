"""The host-side code around page_tables.c, kept small: what lguest_user.c, hypercalls.c,
interrupts_and_traps.c and x86/core.c do that matters to the shadow page tables.

* :func:`launch` -- the Launcher creates a guest: the CPU's register page, then
  ``init_guest_pagetable``.  :func:`teardown` -- the Launcher closes it.
* :func:`do_hcall` -- one hypercall from the Guest: the page-table ones, SET_STACK and
  LGUEST_INIT (any other number kills the guest, as an unknown hypercall does).
* :func:`page_fault` -- the trap handler for a fault the hardware raised: ``demand_page``,
  then device memory or reflection to the Guest.
* :func:`enter_guest` -- what happens just before the Switcher runs the Guest:
  ``map_switcher_in_guest``.

Each entry point catches :class:`~lguest_book.host.KernelOops`: the host kernel oopsed in
the Launcher's context, which kills the Launcher (so the guest dies with the reason) and is
recorded in ``host.oopses``.  A guest can therefore never raise a Python exception here.
"""

from __future__ import annotations

from . import page_tables as pt
from .boundary import port  # the raw twins: the Guest's path runs no argument check
from .host import KernelOops
from .lguest import (
    LGUEST_DATA_CR2,
    LGUEST_DATA_SIZE,
    LgCpu,
    Lguest,
    c_long,
    c_ptr,
    kill_guest,
    lguest_address_ok,
    put_user_u32,
)
from .x86 import PAGE_SIZE, ULONG_MASK

# arch/x86/include/asm/lguest_hcall.h
LHCALL_FLUSH_ASYNC = 0
LHCALL_LGUEST_INIT = 1
LHCALL_SHUTDOWN = 2
LHCALL_NEW_PGTABLE = 4
LHCALL_FLUSH_TLB = 5
LHCALL_LOAD_IDT_ENTRY = 6
LHCALL_SET_STACK = 7
LHCALL_TS = 8
LHCALL_SET_CLOCKEVENT = 9
LHCALL_HALT = 10
LHCALL_SET_PMD = 13
LHCALL_SET_PTE = 14
LHCALL_SET_PGD = 15
LHCALL_LOAD_TLS = 16
LHCALL_LOAD_GDT_ENTRY = 18
LHCALL_SEND_INTERRUPTS = 19

HYPERCALL_NAMES = {
    LHCALL_LGUEST_INIT: "LGUEST_INIT",
    LHCALL_NEW_PGTABLE: "NEW_PGTABLE",
    LHCALL_FLUSH_TLB: "FLUSH_TLB",
    LHCALL_SET_STACK: "SET_STACK",
    LHCALL_SET_PMD: "SET_PMD",
    LHCALL_SET_PTE: "SET_PTE",
    LHCALL_SET_PGD: "SET_PGD",
}

GUEST_PL = 1  # the Guest kernel runs in ring 1
ENOMEM = 12


class LaunchError(OSError):
    """The Launcher could not create the guest (init_guest_pagetable said -ENOMEM)."""


def _oops(cpu: LgCpu, where: str, err: KernelOops) -> None:
    """Record an oops, naming the innermost function of page_tables.c it happened in."""
    tb, inner = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == pt.__file__:
            inner = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    if inner and inner != where:
        where = f"{inner}, called from {where}"
    message = f"{err} (in {where})"
    cpu.lg.host.oopses.append(message)
    kill_guest(cpu, f"Launcher killed by a host oops: {message}")


# --- lguest_user.c ------------------------------------------------------------------------
def launch(lg: Lguest) -> int:
    """Create the guest's CPU 0 and its first shadow table; 0 or -ENOMEM."""
    cpu = lg.cpus[0]
    cpu.regs_page = lg.host.get_zeroed_page()  # lg_cpu_start
    if not cpu.regs_page:
        return -ENOMEM
    err = port.init_guest_pagetable(lg)
    if err:
        lg.host.free_page(cpu.regs_page)
        cpu.regs_page = 0
    return err


def teardown(lg: Lguest) -> None:
    """The Launcher closed the guest: free the shadow tables and the register page."""
    try:
        port.free_guest_pagetable(lg)
    except KernelOops as err:  # even teardown can trip on what the C left behind
        _oops(lg.cpus[0], "free_guest_pagetable", err)
    for cpu in lg.cpus:
        lg.host.free_page(cpu.regs_page)
        cpu.regs_page = 0


# --- hypercalls.c ------------------------------------------------------------------------
def initialize(cpu: LgCpu, call: int, arg1: int) -> None:
    """The first hypercall must be LGUEST_INIT with the guest-physical address of
    lguest_data; it ends in page_table_guest_data_init."""
    lg = cpu.lg
    if call != LHCALL_LGUEST_INIT:
        kill_guest(cpu, f"hypercall {c_long(call)} before INIT")
        return
    if not lguest_address_ok(lg, arg1, LGUEST_DATA_SIZE):  # lguest_arch_init_hypercalls
        kill_guest(cpu, f"bad guest page {c_ptr(lg.lguest_data)}")
    else:
        lg.lguest_data = (lg.mem_base + arg1) & ULONG_MASK
    port.page_table_guest_data_init(cpu)
    # The Launcher's writes above may have been the first to a guest page (copy-on-write),
    # so the C throws every shadow mapping away here.
    port.guest_pagetable_clear_all(cpu)


def guest_set_stack(cpu: LgCpu, seg: int, esp: int, pages: int) -> None:
    """interrupts_and_traps.c: record the Guest's kernel stack and pin it.  Note that a bad
    segment or size kills the guest but the stack is still recorded and pinned."""
    if (seg & 3) != GUEST_PL:
        kill_guest(cpu, f"bad stack segment {c_long(seg)}")
    if pages > 2:
        kill_guest(cpu, f"bad stack pages {pages}")
    cpu.ss1 = seg
    cpu.esp1 = esp
    cpu.lg.stack_pages = pages
    port.pin_stack_pages(cpu)


def do_hcall(cpu: LgCpu, call: int, arg1: int = 0, arg2: int = 0, arg3: int = 0, arg4: int = 0) -> None:
    """Run one hypercall.  Arguments are registers: anything is truncated to 32 bits."""
    lg = cpu.lg
    if lg.dead is not None:  # a dead guest never runs, so it makes no hypercalls
        return
    call, arg1, arg2, arg3, arg4 = (int(a) & ULONG_MASK for a in (call, arg1, arg2, arg3, arg4))
    try:
        if not lg.lguest_data:
            initialize(cpu, call, arg1)
        elif call == LHCALL_LGUEST_INIT:
            kill_guest(cpu, "already have lguest_data")
        elif call == LHCALL_FLUSH_TLB:
            if arg1:
                port.guest_pagetable_clear_all(cpu)
            else:
                port.guest_pagetable_flush_user(cpu)
        elif call == LHCALL_NEW_PGTABLE:
            port.guest_new_pagetable(cpu, arg1)
        elif call == LHCALL_SET_STACK:
            guest_set_stack(cpu, arg1, arg2, arg3)
        elif call == LHCALL_SET_PTE:
            gpte = (arg3 | (arg4 << 32)) if lg.x86.pae else arg3
            port.guest_set_pte(cpu, arg1, arg2, gpte)
        elif call == LHCALL_SET_PGD:
            port.guest_set_pgd(lg, arg1, arg2)
        elif call == LHCALL_SET_PMD and lg.x86.pae:
            port.guest_set_pmd(lg, arg1, arg2)
        elif call in (LHCALL_FLUSH_ASYNC, LHCALL_SEND_INTERRUPTS):
            pass
        else:  # not modelled here, or unknown
            kill_guest(cpu, f"Bad hypercall {c_long(call)}\n")  # the C's message ends in a newline
    except KernelOops as err:
        _oops(cpu, HYPERCALL_NAMES.get(call, str(call)), err)


# --- x86/core.c ----------------------------------------------------------------------------
def page_fault(cpu: LgCpu, cr2: int, errcode: int) -> tuple[str, int]:
    """Handle a page fault the hardware raised while the Guest ran.

    Returns ``("fixed", 0)``, ``("mmio", iomem)`` (the Launcher emulates the access),
    ``("guest", cr2)`` (reflected to the Guest, cr2 written to lguest_data) or
    ``("killed", 0)``.
    """
    try:
        fixed, iomem = port.demand_page(cpu, cr2, errcode)
    except KernelOops as err:
        _oops(cpu, "demand_page", err)
        return "killed", 0
    if cpu.lg.dead is not None:
        return "killed", 0
    if fixed:
        return "fixed", 0
    if iomem:
        return "mmio", iomem
    lg = cpu.lg
    if lg.lguest_data and put_user_u32(lg, cr2, lg.lguest_data + LGUEST_DATA_CR2):
        kill_guest(cpu, "Writing cr2")
        return "killed", 0
    return "guest", cr2


def guest_pa_door(cpu: LgCpu, vaddr: int) -> tuple[bool, int]:
    """Where the rest of lguest asks for the guest-physical address behind a Guest virtual
    address (x86/core.c's instruction emulation reads the Guest's code through ``guest_pa``):
    ``__guest_pa``'s answer, then ``guest_pa`` itself, which kills the Guest if the walk fails.
    Returns ``(ok, paddr)`` (``paddr`` is 0xffffffff when the walk fails); ``(False, 0)``
    for a dead guest or an oops."""
    if cpu.lg.dead is not None:
        return False, 0
    try:
        ok, paddr = pt.__guest_pa(cpu, vaddr)
        pt.guest_pa(cpu, vaddr)
    except KernelOops as err:
        _oops(cpu, "guest_pa", err)
        return False, 0
    return ok, paddr


def enter_guest(cpu: LgCpu) -> bool:
    """Just before the Switcher runs the Guest on ``host.current_cpu``; False if it can't run."""
    if cpu.lg.dead is not None:
        return False
    try:
        port.map_switcher_in_guest(cpu, None)
    except KernelOops as err:
        _oops(cpu, "map_switcher_in_guest", err)
        return False
    return True

