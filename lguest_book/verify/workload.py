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
"""

from __future__ import annotations

import random

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
        return value & ((1 << 64) - 1 if pae else 0xFFFFFFFF)

    kinds = ["map", "map", "set_pte", "set_pgd", "touch", "touch", "touch", "new_process", "switch", "flush", "cpu"]
    if pae:
        kinds.append("set_pmd")
    if hostile:
        kinds += ["poke", "hypercall", "hypercall", "fail_alloc"]
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
