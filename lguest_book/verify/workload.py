"""Operations a Guest can perform, for the referees: a small vocabulary shared by the scripted
workloads, the seeded random sequences of ``lguest-book verify`` and the hypothesis
strategies of the tests.

An operation is a tuple whose first item names it:

    ("map", vaddr, gpfn, writable, user, dirty)   the Guest maps a page and tells the host
    ("set_pte", vaddr, pte)                       any PTE value, notified with SET_PTE
    ("set_pgd", index, value)                     any top-level value, notified with SET_PGD
    ("set_pmd", vaddr, value)                     PAE: any mid-level value, notified with SET_PMD
    ("touch", vaddr, write, user)                 an access, faulting into the host as needed
    ("new_process",) / ("switch", n)              a new address space / switch to one
    ("flush", everything)                         FLUSH_TLB(0 or 1)
    ("cpu", n)                                    the host moves the Guest to CPU n
    ("poke", paddr, value)                        the Guest writes memory without telling anyone
    ("hypercall", call, a1, a2, a3, a4)           any hypercall with any arguments
    ("fail_alloc", count, after)                  the host's allocator fails
    ("set_pte_any", vaddr, pte)                   like set_pte, at any address (the Switcher's
                                                  top-level slot included)
    ("write_entry", paddr, value)                 the Guest stores one entry at an exact address
    ("guest_pa", vaddr)                           the host asks for vaddr's guest-physical
                                                  address (guest_pa, as instruction emulation does)

A :class:`Workload` is a named list of operations with the Guest's configuration (memory,
host CPUs, Switcher address, kernel address) and what happens before the Guest boots.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .. import hypercalls as hc
from ..guest import Guest

MEM_PAGES = 1024
KERNEL = 0xC0000000
NR_CPUS = 3
INTERESTING = (0, 0x1000, 0x08048000, 0x3FFFF000, 0xBFFFF000, KERNEL, KERNEL + 0x5000,
               0xFFBFF000, 0xFFC00000, 0xFFDFF000, 0xFFE00000, 0xFFE01000, 0xFFFFF000)


def apply(g: Guest, op: tuple) -> None:
    kind = op[0]
    L = g.x86
    if kind == "map":
        _, vaddr, gpfn, writable, user, dirty = op
        if vaddr < 0xFFC00000:
            g.map(vaddr & ~0xFFF, gpfn, writable=writable, user=user, dirty=dirty)
    elif kind == "set_pte":
        if op[1] < 0xFFC00000:
            g.set_pte(op[1], op[2])
    elif kind == "set_pgd":
        g.set_pgd(op[1] % L.PTRS_PER_PGD, op[2])
    elif kind == "set_pmd":
        if L.pae:
            g.set_pmd(op[1], op[2])
    elif kind == "touch":
        g.touch(op[1], write=op[2], user=op[3])
    elif kind == "new_process":
        if g._next_free < g.lg.pfn_limit - 16:
            g.procs.append(g.new_process())
    elif kind == "switch":
        g.switch_to(g.procs[op[1] % len(g.procs)])
    elif kind == "flush":
        g.flush_all() if op[1] else g.flush_user()
    elif kind == "cpu":
        g.host.current_cpu = op[1] % g.host.nr_cpus
    elif kind == "poke":
        g.write_entry(op[1] & ~(L.entry_bytes - 1) % (g.lg.pfn_limit * 4096), op[2] & L.entry_mask)
    elif kind == "hypercall":
        _, call, a1, a2, a3, a4 = op
        g.hypercall(call, a1, a2, a3, a4)
    elif kind == "fail_alloc":
        g.host.fail_allocations(op[1], after=op[2])
    elif kind == "set_pte_any":
        g.set_pte(op[1] & ~0xFFF, op[2] & L.entry_mask)
    elif kind == "write_entry":
        g.write_entry(op[1], op[2] & L.entry_mask)
    elif kind == "guest_pa":
        hc.guest_pa_door(g.cpu, op[1])
    else:
        raise ValueError(f"unknown operation {op!r}")


def random_ops(rng: random.Random, pae: bool, count: int, hostile: bool = True) -> list[tuple]:
    """A seeded random sequence, hostile or notifying."""
    def vaddr():
        r = rng.random()
        if r < 0.3:
            return rng.choice(INTERESTING)
        if r < 0.6:
            return 0x08000000 + rng.randrange(64) * 4096
        if r < 0.8:
            return KERNEL + rng.randrange(64) * 4096
        return rng.getrandbits(32)

    def entry():
        frame = rng.choice((rng.randrange(MEM_PAGES), rng.randrange(MEM_PAGES, MEM_PAGES + 300), rng.getrandbits(20)))
        value = frame << 12 | rng.getrandbits(12)
        if pae and rng.random() < 0.2:
            value |= rng.getrandbits(20) << 44
        if pae and rng.random() < 0.1:  # a frame above 4 GiB (bits 32..43 of the address)
            value |= rng.getrandbits(12) << 32
        return value & ((1 << 64) - 1 if pae else 0xFFFFFFFF)

    kinds = ["map", "map", "set_pte", "set_pgd", "touch", "touch", "touch", "new_process", "switch", "flush", "cpu"]
    if pae:
        kinds.append("set_pmd")
    if hostile:
        kinds += ["poke", "hypercall", "hypercall", "fail_alloc", "guest_pa"]
    ops = []
    for _ in range(count):
        k = rng.choice(kinds)
        if k == "map":
            ops.append((k, vaddr(), rng.randrange(0x210, MEM_PAGES), rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5))
        elif k == "set_pte":
            ops.append((k, vaddr() % 0xFFC00000, entry()))
        elif k == "set_pgd":
            ops.append((k, rng.randrange(4 if pae else 1024), entry()))
        elif k == "set_pmd":
            ops.append((k, vaddr(), entry()))
        elif k == "touch":
            ops.append((k, vaddr(), rng.random() < 0.5, rng.random() < 0.5))
        elif k in ("new_process",):
            ops.append((k,))
        elif k == "switch":
            ops.append((k, rng.randrange(8)))
        elif k == "flush":
            ops.append((k, rng.random() < 0.5))
        elif k == "cpu":
            ops.append((k, rng.randrange(NR_CPUS)))
        elif k == "poke":
            ops.append((k, rng.randrange(MEM_PAGES * 4096 - 8), entry()))
        elif k == "hypercall":
            call = rng.choice((1, 4, 5, 7, 13, 14, 15, 99))
            if call == 7:
                ops.append((k, 7, rng.randrange(256), rng.getrandbits(32), rng.randrange(7), 0))
            else:
                ops.append((k, call, rng.choice((rng.getrandbits(32), rng.randrange(MEM_PAGES * 4096))),
                            rng.choice((rng.getrandbits(32), rng.randrange(1100))), rng.getrandbits(32), rng.getrandbits(32)))
        elif k == "fail_alloc":
            ops.append((k, rng.randrange(1, 4), rng.randrange(5)))
        elif k == "guest_pa":  # mostly addresses the Guest maps (a failed walk kills it)
            base = rng.choice((KERNEL + rng.randrange(64) * 4096, 0x08048000 + rng.randrange(8) * 4096, vaddr()))
            ops.append((k, base | rng.randrange(4096)))
    return ops


def scripted(pae: bool) -> dict[str, list[tuple]]:
    """Named scripted workloads: what a real Guest kernel does, and a hostile one."""
    boot_and_run = [("new_process",), ("switch", 1)] + [
        ("map", 0x08048000 + i * 4096, 0x300 + i, True, True, False) for i in range(8)] + [
        ("touch", 0x08048000 + i * 4096, i % 2 == 1, True) for i in range(8)] + [
        ("touch", 0x08048000, True, True), ("touch", KERNEL + 0x5000, False, False)]
    fork_exec = [("new_process",), ("switch", 1), ("map", 0x08048000, 0x300, True, True, True),
                 ("touch", 0x08048000, True, True), ("new_process",), ("switch", 2),
                 ("map", 0x08048000, 0x301, False, True, False), ("touch", 0x08048000, False, True),
                 ("switch", 1), ("touch", 0x08048000, False, True), ("flush", False),
                 ("touch", 0x08048000, True, True)]
    switches = [("new_process",) for _ in range(5)] + [("switch", i % 6) for i in range(14)] + [
        ("touch", KERNEL + 0x1000, False, False)]
    kernel_change = [("touch", KERNEL + 0x2000, False, False), ("map", KERNEL + 0x2000, 0x380, True, False, True),
                     ("touch", KERNEL + 0x2000, True, False), ("flush", True), ("touch", KERNEL + 0x2000, False, False)]
    migrate = [("touch", KERNEL, False, False), ("cpu", 1), ("touch", KERNEL, False, False), ("cpu", 2),
               ("new_process",), ("switch", 1), ("touch", KERNEL, False, False), ("cpu", 0), ("switch", 0),
               ("touch", KERNEL, False, False)]
    hostile = [("set_pte", 0x08048000, 0xFFFFF067), ("touch", 0x08048000, False, True),
               ("set_pgd", 1023 if not pae else 3, 0x1067), ("hypercall", 15, 0x201000, 1024 if not pae else 4, 0, 0),
               ("hypercall", 14, 0x201000, 0xFFC00000, 0x1067, 0), ("poke", 0x201000, 0xFFFFFFFF),
               ("touch", 0x1000, True, True)]
    out_of_memory = [("new_process",), ("fail_alloc", 2, 1), ("switch", 1), ("touch", 0x08048000, True, True)]
    return {"boot and run": boot_and_run, "fork and exec": fork_exec, "context switches": switches,
            "kernel mapping change": kernel_change, "host CPU migration": migrate,
            "hostile guest": hostile, "out of memory": out_of_memory}


# --- workloads for what the random generator rarely makes ------------------------------------------
@dataclass
class Workload:
    """A named scripted workload: ``guest`` are the Guest's keyword arguments (mem_pages,
    nr_cpus, switcher_addr, kernel_address...), ``before_boot`` runs between launch and boot,
    ``ops`` after boot."""

    name: str
    ops: list
    guest: dict = field(default_factory=dict)
    before_boot: list = field(default_factory=list)


V = 0x08048000  # pgd index 0x20 (non-PAE) / 0 (PAE); PAE pmd index 0x40; pte index 0x48
HIGH_PAGE = 0x3F1  # a guest page the small Guest never allocates (page tables come from 0x200 up)


def _pte_index_addr(pae: bool, frame: int, vaddr: int) -> int:
    return (frame << 12) + ((vaddr >> 12) & (511 if pae else 1023)) * (8 if pae else 4)


def special(pae: bool) -> list[Workload]:
    """The named workloads of ``lguest-book verify`` beyond the everyday ones: PSE/PAT bits at
    every level, frames at and beyond the limits, guest-physical addresses above 4 GiB (PAE),
    a Switcher that is not 4 MiB aligned, other kernel addresses, many host CPUs, repeated and
    bad LGUEST_INIT.  Each kills the Guest (if at all) near its end, so what comes before is
    compared on a live Guest."""
    P, RW, U, A, D, PSE = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
    user = P | RW | U | A
    limit = MEM_PAGES  # pfn_limit; device_limit is pfn_limit + 256
    out = []
    # PSE/PAT: a PTE's bit 7 is PAT, a directory entry's is PSE.
    pte_slot = _pte_index_addr(pae, HIGH_PAGE, V)
    out.append(Workload("PAT bit in a PTE", [
        ("new_process",), ("switch", 1), ("map", V, 0x300, True, True, False), ("touch", V, False, True),
        ("set_pte", V + 0x1000, 0x301 << 12 | P | RW | U | PSE),   # no A/D: only the shadow is cleared
        ("guest_pa", V + 0x1123), ("touch", V + 0x1000, False, True)]))
    out.append(Workload("PAT bit in a PTE, notified with Accessed set", [
        ("new_process",), ("switch", 1), ("set_pte", V, 0x301 << 12 | user | PSE), ("touch", V, False, True)]))
    top_pse = [("new_process",), ("switch", 1), ("write_entry", pte_slot, 0x345 << 12 | user),
               ("set_pgd", 0 if pae else 0x20, HIGH_PAGE << 12 | (P | PSE if pae else 0x67 | PSE)),
               ("guest_pa", V + 0x123), ("touch", V, False, True)]
    out.append(Workload("PSE bit in a top-level entry", top_pse))
    if pae:
        out.append(Workload("PSE bit in a PMD, frame not 2 MiB aligned", [
            ("new_process",), ("switch", 1), ("write_entry", pte_slot, 0x345 << 12 | user),
            ("set_pmd", V, HIGH_PAGE << 12 | 0x67 | PSE), ("guest_pa", V + 0x123),
            ("touch", V, False, True)]))
    # Frames at and beyond the limits.
    out.append(Workload("frames at the limits", [
        ("new_process",), ("switch", 1),
        ("map", V, limit - 1, True, True, False), ("touch", V, True, True),          # the last page
        ("map", V + 0x1000, limit, True, True, False), ("touch", V + 0x1000, False, True),   # device
        ("map", V + 0x2000, limit + 255, True, True, False), ("touch", V + 0x2000, True, True),
        ("guest_pa", V + 0x1010), ("guest_pa", V + 0x2010),
        ("set_pte", V + 0x3000, (limit + 256) << 12 | user), ("touch", V + 0x3000, False, True)]))
    huge = (1 << 32) - 1 if pae else (1 << 20) - 1
    out.append(Workload("a huge frame, notified with Accessed set", [
        ("new_process",), ("switch", 1), ("map", V, 0x300, True, True, True), ("touch", V, True, True),
        ("set_pte", V, huge << 12 | user | D)]))
    out.append(Workload("a top-level entry beyond guest memory", [
        ("new_process",), ("switch", 1), ("guest_pa", KERNEL + 0x1000),
        ("set_pgd", 0 if pae else 0x20, limit << 12 | (P if pae else 0x67)), ("guest_pa", V), ("touch", V, False, True)]))
    if pae:
        above = 1 << 20  # frame 2**20: guest-physical 4 GiB
        out.append(Workload("guest-physical addresses above 4 GiB", [
            ("new_process",), ("switch", 1), ("write_entry", pte_slot, (above + 0x345) << 12 | user),
            ("write_entry", pte_slot + 8, (above + 0x300) << 12 | user | D),
            ("set_pmd", V, (above + HIGH_PAGE) << 12 | 0x67),     # a PMD above 4 GiB: gpte_addr truncates
            ("guest_pa", V + 0x123), ("guest_pa", V + 0x1123), ("touch", V, False, True)]))
        out.append(Workload("a PTE above 4 GiB, notified", [
            ("new_process",), ("switch", 1), ("map", V, 0x300, True, True, True), ("touch", V, False, True),
            ("set_pte", V, (above + 5) << 12 | user | D)]))
        out.append(Workload("a PTE above 4 GiB, faulted", [
            ("new_process",), ("switch", 1), ("set_pte", V, (above + 5) << 12 | P | RW | U), ("touch", V, True, True)]))
    # The Switcher not 4 MiB (PAE: 2 MiB) aligned, still in the last top-level slot.
    sw = 0xFFC10000 if not pae else 0xFFE10000
    below = sw - 0xF000
    out.append(Workload("a Switcher that is not 4 MiB aligned", [
        ("touch", KERNEL + 0x5000, False, False), ("set_pte_any", below, 0x380 << 12 | P | RW | A | D),
        ("touch", below, True, False), ("cpu", 1), ("touch", below, False, False), ("new_process",), ("switch", 1),
        ("touch", below, False, False), ("flush", True), ("touch", below, True, False), ("guest_pa", below + 4),
        ("set_pte_any", sw + 0x1000, 0x381 << 12 | P | RW)], guest={"switcher_addr": sw}))
    if pae:  # the Switcher's 7 pages across a 2 MiB boundary: two shadow PTE pages
        sw2 = 0xFFDFE000
        out.append(Workload("a Switcher across a 2 MiB boundary", [
            ("touch", KERNEL + 0x5000, False, False), ("set_pte_any", sw2 - 0x3000, 0x380 << 12 | P | RW | A | D),
            ("touch", sw2 - 0x3000, True, False), ("cpu", 2), ("new_process",), ("switch", 1),
            ("touch", sw2 - 0x3000, False, False), ("set_pmd", 0xFFE00000, 0), ("cpu", 1), ("touch", KERNEL, False, False),
            ("set_pgd", 3, 0), ("cpu", 0), ("touch", KERNEL + 0x1000, False, False)], guest={"switcher_addr": sw2}))
    # Other kernel addresses.
    for kaddr in (0x80000000, 0xB0000000):
        out.append(Workload(f"kernel address {kaddr:#x}", [
            ("touch", kaddr + 0x5000, False, False), ("new_process",), ("switch", 1),
            ("map", V, 0x300, True, True, False), ("touch", V, True, True), ("map", kaddr - 0x1000, 0x301, True, True, True),
            ("touch", kaddr - 0x1000, True, True), ("map", kaddr + 0x2000, 0x380, True, False, True),
            ("touch", kaddr + 0x2000, True, False), ("flush", False), ("touch", kaddr + 0x2000, False, False),
            ("touch", kaddr - 0x1000, False, True), ("new_process",), ("switch", 2), ("touch", kaddr + 0x3000, False, False),
            ("switch", 1), ("flush", True), ("touch", V, False, True), ("guest_pa", kaddr + 0x3004)],
            guest={"kernel_address": kaddr}))
    out.append(Workload("kernel address inside the Switcher", [("touch", 0x1000, False, False)],
                        guest={"kernel_address": 0xFFC00000 if not pae else 0xFFE00000}))
    # Many host CPUs.
    cpus = [op for i in (3, 7, 0, 5, 7, 1, 6, 2, 4, 3) for op in (("cpu", i), ("touch", KERNEL + i * 0x1000, False, False))]
    out.append(Workload("eight host CPUs", [("new_process",), ("switch", 1)] + cpus + [
        ("new_process",), ("switch", 2), ("cpu", 6), ("touch", KERNEL, True, False), ("switch", 0), ("cpu", 2),
        ("touch", KERNEL, False, False), ("flush", True), ("cpu", 5), ("touch", KERNEL, False, False)],
        guest={"nr_cpus": 8}))
    # Kill messages that print zero: the kernel's %#lx gives "0x0".
    out.append(Workload("guest_pa of address 0", [("new_process",), ("switch", 1), ("guest_pa", 0)]))
    out.append(Workload("a kernel stack at address 0", [("hypercall", 7, 0x69, 1, 1, 0)]))
    # LGUEST_INIT again, or first at a bad address, or something else first.
    out.append(Workload("LGUEST_INIT twice", [("touch", KERNEL, False, False), ("hypercall", 1, 0x200000, 0, 0, 0),
                                              ("touch", KERNEL + 0x1000, False, False)]))
    out.append(Workload("LGUEST_INIT at a bad address", [("touch", KERNEL, False, False)],
                        before_boot=[("hypercall", 1, limit * 4096 - 4, 0, 0, 0)]))
    out.append(Workload("a hypercall before LGUEST_INIT", [("touch", KERNEL, False, False)],
                        before_boot=[("hypercall", 0xFFFFFFFF, 0, 0, 0, 0)]))
    return out


ALLOCATION_WORKLOAD = [("new_process",), ("switch", 1), ("map", V, 0x300, True, True, False), ("touch", V, True, True),
                       ("cpu", 1), ("touch", KERNEL + 0x2000, False, False), ("new_process",), ("switch", 2),
                       ("flush", True), ("touch", V, False, True), ("switch", 1), ("touch", V, False, True)]


def allocation_points(pae: bool, ops: list = ALLOCATION_WORKLOAD) -> int:
    """How many times the host's allocator is asked for a page from the end of launch to the end
    of boot, ``ops`` and shutdown (a model-only dry run: only the count is used)."""
    g = Guest(pae=pae, mem_pages=MEM_PAGES, nr_cpus=NR_CPUS, boot=False)
    budget = 1 << 30
    g.host.fail_allocations(1, after=budget)  # counts down once per allocation asked for
    g.procs = []
    g.boot()
    g.procs.append(g.swapper)
    for op in ops:
        apply(g, op)
    g.shutdown()
    return budget - g.host._fail_after


def allocation_failures(pae: bool, ops: list = ALLOCATION_WORKLOAD) -> list[Workload]:
    """One workload per allocation point: the n-th allocation after launch fails, in turn."""
    return [Workload(f"allocation #{n} fails", list(ops), before_boot=[("fail_alloc", 1, n)])
            for n in range(allocation_points(pae, ops))]
