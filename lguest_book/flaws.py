"""Where page_tables.c breaks its own promises, each shown by a run of the model.

The hypervisor promises that a guest cannot leak host pages, cannot reach memory it does not
own, cannot change the Switcher's mapping, and cannot crash the host.  The C keeps those
promises almost everywhere.  Here are the places it does not, found by the project's
property tests and checked against the C line by line.  The model reproduces each one
faithfully, because a textbook that silently fixed them would be teaching a different
program.

Each :class:`Flaw` has a ``demo(pae)`` that builds the situation with the model and returns
what a reader can observe (a dict; its frames and entries print in hex of the layout's width,
its counts in decimal: see :mod:`lguest_book.fmt`).  ``tests/test_flaws.py`` asserts every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import fmt
from . import hypercalls as hc
from . import inspect as li
from . import page_tables as pt
from .guest import Guest
from .x86 import PAGE_SIZE, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER


@dataclass(frozen=True)
class Flaw:
    key: str
    title: str
    where: str
    promise: str
    explanation: str
    demo: Callable[[bool], dict]


def _user_guest(pae: bool, **kwargs) -> tuple[Guest, object]:
    g = Guest(pae=pae, **kwargs)
    proc = g.new_process("victim")
    g.switch_to(proc)
    return g, proc


# --- 1. guest_set_pgd's bound test ---------------------------------------------------------
def _demo_set_pgd_bound(pae: bool) -> dict:
    """Place a guest page's shadow PTE in entry 0 of the frame that follows a top-level
    page, fill that guest page with fake "entries" naming a Switcher frame, then ask for
    top-level entry PTRS_PER_PGD."""
    if pae:
        g, proc = _user_guest(True)
        before = g.host.page_count(g.host.lg_switcher_pages[0])
        g.hypercall(hc.LHCALL_SET_PGD, proc.gpgdir, 4)
        return {
            "killed": g.dead,
            "entry_touched": "entry 4 of the same PDPT page, which is always zero",
            "switcher_refs_before": before,
            "switcher_refs_after": g.host.page_count(g.host.lg_switcher_pages[0]),
        }
    # Non-PAE: the Switcher at the top of the last 4 MiB leaves room below it in the same
    # slot, and every new_pgdir() picks slot 0, so the Switcher's PTE page is allocated right
    # after the top-level page.
    g = Guest(pae=False, switcher_addr=0xFFFFD000, prandom=[0] * 64, kernel_address=0xC0000000)
    host = g.host
    slot = g.cpu.cpu_pgd
    top = g.lg.pgdirs[slot].pgdir
    # The kernel maps guest page D at 0xFFC00000 (entry 0 of the last slot's PTE page).
    data = g.alloc_page()
    target = host.lg_switcher_pages[1]
    fake = (target << 12) | _PAGE_PRESENT
    g.write_phys(data << 12, b"".join(fake.to_bytes(4, "little") for _ in range(3)))
    g.map(0xFFC00000, data, writable=True, user=False)
    g.touch(0xFFC00000)
    next_frame = top + 1
    shadow_pte_frame = li.walk_shadow(g, 0xFFC00000)[0].value >> 12
    before = host.page_count(target)
    g.hypercall(hc.LHCALL_SET_PGD, g.current.gpgdir, 1024)
    after = host.page_count(target)
    return {
        "killed": g.dead,
        "frame_after_top_level": fmt.as_frame(next_frame, g.x86),
        "last_slot_pte_page": fmt.as_frame(shadow_pte_frame, g.x86),
        "fake_entries": 3,
        "victim_frame": fmt.as_frame(target, g.x86),
        "victim_refs_before": before,
        "victim_refs_after": after,
        "anomalies": list(host.anomalies),
    }


# --- 2. __guest_set_pte releases, then returns ---------------------------------------------
def _demo_double_release(pae: bool) -> dict:
    g, proc = _user_guest(pae)
    vaddr = 0x08048000
    g.map(vaddr, 0x300)
    g.touch(vaddr)
    frame = g.lg.launcher.frames[0x300]
    refs_mapped = g.host.page_count(frame)
    bad = (g.lg.device_limit + 5) << 12 | _PAGE_PRESENT | _PAGE_ACCESSED  # beyond devices
    g.set_pte(vaddr, bad)
    refs_after_kill = g.host.page_count(frame)
    stale = li.walk_shadow(g, vaddr)[-1].value
    g.shutdown()
    return {
        "killed": g.dead,
        "refs_while_mapped": refs_mapped,
        "refs_after_kill": refs_after_kill,
        "stale_shadow_entry": fmt.as_entry(stale, g.x86),
        "refs_after_teardown": g.host.page_count(frame),
        "freed_while_launcher_maps_it": g.host.is_free(frame) and g.lg.launcher.frames[0x300] == frame,
    }


# --- 3. the Switcher slot of a cached, not current, top level -----------------------------------
def _demo_switcher_oops(pae: bool) -> dict:
    g = Guest(pae=pae, prandom=[1, 2, 3, 0] * 8)
    a = g.new_process("a")
    b = g.new_process("b")
    g.switch_to(a)
    g.switch_to(b)
    index = g.x86.pgd_index(g.host.switcher_addr)
    g.hypercall(hc.LHCALL_SET_PGD, a.gpgdir, index)
    slot_a = pt.find_pgdir(g.lg, a.gpgdir)
    flag = g.lg.pgdirs[slot_a].switcher_mapped
    mapped = li.walk_shadow(g, g.host.switcher_addr, slot_a)[-1].present
    g.switch_to(a)
    result = g.touch(0xC0000000)
    return {
        "switcher_mapped_flag": flag,
        "switcher_really_mapped": mapped,
        "touch": result.outcome,
        "killed": g.dead,
        "oopses": list(g.host.oopses),
    }


# --- 4. writable shadow, clean guest PTE -----------------------------------------------------------
def _demo_writable_not_dirty(pae: bool) -> dict:
    g, proc = _user_guest(pae)
    g.map(0x08048000, 0x300)
    g.touch(0x08048000)  # the shadow top (and mid) levels now exist for this region
    pte = g.map(0x08049000, 0x301, writable=True, accessed=True, dirty=False)
    spte = li.walk_shadow(g, 0x08049000)[-1].value
    access = g.touch(0x08049000, write=True, user=True)
    return {
        "guest_pte": fmt.as_entry(pte, g.x86),
        "shadow_pte": fmt.as_entry(spte, g.x86),
        "shadow_writable": bool(spte & _PAGE_RW),
        "write_faults": access.faults,
        "guest_pte_after_write": fmt.as_entry(g.guest_pte(0x08049000), g.x86),
        "guest_sees_dirty": bool(g.guest_pte(0x08049000) & _PAGE_DIRTY),
    }


# --- 5. a non-present PTE pins its page --------------------------------------------------------------
def _demo_pinned_not_present(pae: bool) -> dict:
    g, proc = _user_guest(pae)
    g.map(0x08048000, 0x300)
    g.touch(0x08048000)
    before = dict(g.host.refcount)
    pins = 0
    for n in range(5):  # five SET_PTEs of a non-present entry with Accessed set
        g.set_pte(0x08049000, (0x301 << 12) | _PAGE_ACCESSED)
        pins += 1
    frame = g.lg.launcher.frames[0x301]
    refs = g.host.page_count(frame)
    g.shutdown()
    return {
        "set_ptes": pins,
        "frame": fmt.as_frame(frame, g.x86),
        "refs_before": before.get(frame, 0),
        "refs_while_running": refs,
        "refs_after_teardown": g.host.page_count(frame),
        "expected_after_teardown": 1,
    }


# --- 6. guest_set_stack pins what it refused ---------------------------------------------------------
def _demo_stack_pages(pae: bool) -> dict:
    g = Guest(pae=pae, stack_pages=0)
    for n in range(64):  # map 64 kernel pages at a fresh place, not yet shadowed
        g.map(0xC2000000 + n * PAGE_SIZE, 0x300 + n, writable=True, user=False, dirty=False)
    top = 0xC2000000 + 64 * PAGE_SIZE
    g.hypercall(hc.LHCALL_SET_STACK, 0x69, top, 64)
    pinned = sum(1 for n in range(64) if pt.page_writable(g.cpu, 0xC2000000 + n * PAGE_SIZE))
    return {
        "killed": g.dead,
        "pages_asked": 64,
        "pages_pinned_anyway": pinned,
        "worst_case_iterations": 2**32 - 1,
        "model_stops_after": pt.STACK_PIN_CYCLE,
    }


# --- 7. bit 7 of a 4 KiB PTE is PAT, read as PSE ---------------------------------------------------
def _demo_pat_is_pse(pae: bool) -> dict:
    out = {}
    for label, io in (("ram", False), ("device", True)):
        g, proc = _user_guest(pae)
        frame = g.lg.pfn_limit + 1 if io else 0x300
        pte = frame << 12 | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
        g.set_pte(0x08048000, pte)
        plain = g.touch(0x08048000, user=True)
        h, proc = _user_guest(pae)
        h.set_pte(0x08048000, pte | 0x80)
        with_pat = h.touch(0x08048000, user=True)
        out[f"{label}_without_bit7"] = plain.outcome
        out[f"{label}_with_bit7"] = with_pat.outcome
        out[f"{label}_with_bit7_killed"] = h.dead
    return out


# --- 8. kernel_address inside a top-level entry ------------------------------------------------------
def _demo_unaligned_kernel_address(pae: bool) -> dict:
    """PAE with the 3G_OPT split: kernel_address 0xB0000000 is inside top-level entry 2.  Without
    PAE the same split is on a 4 MiB boundary, and the user flush is exact."""
    ka = 0xB0000000
    g = Guest(pae=pae, seed=1, kernel_address=ka)
    proc = g.new_process("q")
    g.switch_to(proc)
    v = 0x90000000 if pae else 0xAFC00000
    g.map(v, 0x300)
    g.touch(v, user=True)
    g.write_entry(li.walk_guest(g, v)[-1].where, 0)  # the Guest clears its PTE, then flushes
    g.flush_user()
    left = li.walk_shadow(g, v)[-1].present
    access = g.touch(v, user=True)
    return {
        "kernel_address": fmt.as_vaddr(ka),
        "pgd_index": fmt.as_index(g.x86.pgd_index(ka)),
        "on_boundary": ka % g.x86.PGDIR_SIZE == 0,
        "user_vaddr": fmt.as_vaddr(v),
        "guest_pte_after": fmt.as_entry(g.guest_pte(v), g.x86),
        "shadow_left_after_flush": left,
        "access_after_flush": access.outcome,
        "faults": access.faults,
    }


# --- 9. NX never reaches a shadow PTE -----------------------------------------------------------------
def _demo_nx_dropped(pae: bool) -> dict:
    """On a host that supports NX: the Guest's NX bit, through both ways a shadow PTE is made,
    against the Host's own per-CPU Switcher entry."""
    from .x86 import _PAGE_NX_BIT

    g = Guest(pae=pae, seed=1, host_nx=True)
    proc = g.new_process("p")
    g.switch_to(proc)
    nx = _PAGE_NX_BIT if pae else 0
    fault_pte = g.map(0x08048000, 0x300, flags=nx, accessed=False)
    g.touch(0x08048000, user=True)                     # made by demand_page
    g.map(0x08049000, 0x301, flags=nx, accessed=True)  # made by __guest_set_pte's shortcut
    regs = li.walk_shadow(g, g.host.switcher_addr + PAGE_SIZE)[-1].value
    return {
        "host_supports_nx": g.x86.host_nx,
        "guest_pte_nx": bool(fault_pte & nx) if nx else None,
        "guest_pte_after_fault_nx": bool(g.guest_pte(0x08048000) & nx) if nx else None,
        "shadow_from_fault_nx": bool(li.walk_shadow(g, 0x08048000)[-1].value & nx) if nx else None,
        "shadow_from_shortcut_nx": bool(li.walk_shadow(g, 0x08049000)[-1].value & nx) if nx else None,
        "host_regs_page_nx": bool(regs & nx) if nx else None,
    }


FLAWS = (
    Flaw(
        "set_pgd_bound",
        "guest_set_pgd lets idx == PTRS_PER_PGD through",
        "guest_set_pgd (H:400)",
        "a guest cannot reach memory it does not own",
        "The test is idx > PTRS_PER_PGD, so idx == PTRS_PER_PGD passes and release_pgd() is given "
        "the entry one past the end of the top-level page.  Without PAE that is the first entry "
        "of whatever frame follows: if it holds a present entry, its page is treated as a table "
        "of entries, each one 'released' (put_page on whatever frame it names) and the page "
        "itself freed.  If the guest controls that page's contents, it decrements the reference "
        "counts of host frames of its choosing.  With PAE the stray entry is the fifth of the "
        "PDPT page, always zero: harmless.",
        _demo_set_pgd_bound,
    ),
    Flaw(
        "double_release",
        "__guest_set_pte releases an entry, then leaves it in place",
        "__guest_set_pte (H:420)",
        "a guest cannot leak or free host pages",
        "When the new PTE has Accessed or Dirty set but check_gpte() kills the guest, the function "
        "returns after release_pte() has already dropped the old entry's page reference, and the "
        "old entry stays.  Teardown releases it again: the page's count falls below the Launcher's "
        "own mapping, and the page is freed while the Launcher still maps it.",
        _demo_double_release,
    ),
    Flaw(
        "switcher_oops",
        "a SET_PGD on a cached top level's Switcher slot crashes the host",
        "guest_set_pgd (H:400) with map_switcher_in_guest (H:480)",
        "a guest cannot crash the host or change the Switcher's mapping",
        "guest_set_pgd() releases the entry in the named top level, then calls "
        "allocate_switcher_mapping() for cpus[0]'s *current* top level.  If the named one is cached "
        "but not current, its Switcher mapping is gone while switcher_mapped stays true.  When "
        "the guest switches back, nothing re-creates it, and before the guest runs "
        "remove_switcher_percpu_map() gets NULL from find_spte() and dereferences it: an oops.",
        _demo_switcher_oops,
    ),
    Flaw(
        "writable_not_dirty",
        "the Accessed shortcut installs writable shadow PTEs for clean guest PTEs",
        "__guest_set_pte (H:420) via gpte_to_spte (H:340)",
        "a shadow PTE is writable only if the guest PTE is writable and dirty",
        "The comment says an Accessed guest PTE gets a read-only shadow entry, but the code passes "
        "the Dirty bit only as get_pfn()'s write flag: gpte_to_spte() copies the flags whole, RW "
        "included.  The guest's first write then never faults, and the Dirty bit in its own PTE is "
        "never set: the guest cannot tell the page changed.  (get_pfn() also pinned the page for "
        "reading only, so in the real kernel the writable mapping could point at a page shared "
        "copy-on-write, even the zero page; the model's Launcher has no shared pages.)",
        _demo_writable_not_dirty,
    ),
    Flaw(
        "pinned_not_present",
        "a non-present PTE with Accessed or Dirty set pins a page forever",
        "__guest_set_pte (H:420)",
        "a guest cannot leak host pages",
        "__guest_set_pte() never tests _PAGE_PRESENT.  gpte_to_spte() takes a page reference "
        "through get_pfn() and builds a shadow entry that is not present; release_pte() only "
        "releases present entries, so the reference is never given back, not even at teardown.",
        _demo_pinned_not_present,
    ),
    Flaw(
        "stack_pages",
        "guest_set_stack refuses a stack size, then pins it anyway",
        "guest_set_stack (interrupts_and_traps.c) with pin_stack_pages (H:360)",
        "the host stays responsive",
        "More than two stack pages kills the guest, but stack_pages is recorded and "
        "pin_stack_pages() runs regardless, so a guest asking for 2**32 - 1 pages keeps the host CPU "
        "busy for four billion pin_page() calls.  The model stops after 2**20 of them, when the "
        "addresses have wrapped once and nothing more can change.",
        _demo_stack_pages,
    ),
    Flaw(
        "pat_is_pse",
        "bit 7 of a 4 KiB PTE is read as PSE: the PAT bit kills, and I/O pages lose their exit",
        "check_gpte and gpte_in_iomem (H:330)",
        "a guest's legitimate mappings work (it only harms itself)",
        "In a PTE, bit 7 is PAT (a memory-type index bit), not PSE; _PAGE_PSE has bit 7's value, so "
        "check_gpte() kills the guest for any PTE that uses PAT, and gpte_in_iomem() says 'not I/O' "
        "for a device page with the bit, which then fails check_gpte() on its frame as well: the "
        "access that the Launcher would have emulated kills the guest instead.  The host is not "
        "harmed.",
        _demo_pat_is_pse,
    ),
    Flaw(
        "unaligned_kernel_address",
        "a user flush misses the user part of the top-level entry that holds kernel_address",
        "flush_user_mappings (H:445), used by guest_pagetable_flush_user and new_pgdir",
        "a guest's TLB flush drops every user translation (the guest's own bookkeeping)",
        "flush_user_mappings() releases whole top-level entries below pgd_index(kernel_address).  "
        "Under PAE an entry covers 1 GiB, and a kernel at 0xB0000000 (the 3G_OPT split) starts "
        "inside entry 2, so user mappings from 0x80000000 to 0xAFFFFFFF survive the flush, and a "
        "reused slot keeps them.  page_table_guest_data_init() only checks kernel_address against "
        "the Switcher.  The stale entries name the guest's own pages, so the host is not harmed.",
        _demo_unaligned_kernel_address,
    ),
    Flaw(
        "nx_dropped",
        "under PAE the Guest's NX bit never reaches the shadow PTE, even on a host with NX",
        "gpte_to_spte (H:340)",
        "a guest's own page protections are kept (only the guest is harmed)",
        "gpte_to_spte() keeps the flags in an unsigned long, 32 bits, so NX (bit 63) and the "
        "other high bits of a PAE entry are cut off before pfn_pte() sees them.  On a host without "
        "NX pfn_pte() would strip it anyway; on a host with NX the Guest's non-executable pages "
        "become executable in the shadow, while the Host's own entries (the per-CPU register "
        "page, __PAGE_KERNEL) keep NX.  Without PAE there is no NX bit.",
        _demo_nx_dropped,
    ),
)


def flaw(key: str) -> Flaw:
    for f in FLAWS:
        if f.key == key:
            return f
    raise KeyError(f"no flaw called {key!r}; known: {', '.join(f.key for f in FLAWS)}")


__all__ = ["Flaw", "FLAWS", "flaw"]
