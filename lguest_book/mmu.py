"""The x86 MMU: what the CPU does with the *shadow* tables when the Guest touches memory.

A walk starts at the frame in cr3 (the current shadow top level), reads one entry per level,
and either yields a host physical address or a page fault with an x86 error code:

* bit 0 (P): the page was present but the access was not allowed (0: not present);
* bit 1 (W): the access was a write;
* bit 2 (U): the access came from user mode (ring 3).  The Guest kernel runs in ring 1,
  which the MMU counts as supervisor mode.

The host runs with CR0.WP set, so a supervisor write to a read-only page faults too: that is
what lets lguest see the Guest's first write to a page.  Rights are the AND of every level
(under PAE the top-level PDPTEs carry no rights).  Like a real walk, a successful one sets
Accessed on every level that has the bit, and Dirty on the PTE for a write.  Large pages
(PSE) in a directory entry map 4 MiB (2 MiB under PAE); lguest never makes them in shadow
tables.

**The TLB.**  :meth:`Guest.touch <lguest_book.guest.Guest.touch>` keeps each successful walk
in ``host.tlb`` (keyed by the top level, the address and the kind of access) and answers the
same access from there while nothing a walk reads can have changed: the host empties the TLB
whenever the content of a frame held as entries changes (a store to a shadow entry, the
Launcher writing an entry, a frame handed out again, a frame turned into bytes).  That is
exact, not an approximation: a walk that succeeded has already set every Accessed (and, for a
write, Dirty) bit it would set, so walking again would change nothing and find the same
address.  Unlike a real TLB it never serves a stale translation: lguest's own flushes are not
needed for correctness here, and a missing flush in the C cannot be seen through it.  The
functions below always walk.
"""

from __future__ import annotations

from .host import Host
from .x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER

FAULT_PRESENT = 1
FAULT_WRITE = 2
FAULT_USER = 4


def walk(host: Host, cr3: int, vaddr: int, write: bool, user: bool) -> tuple[int, int]:
    """Translate ``vaddr`` through the tables rooted at frame ``cr3``.

    Returns ``(host_physical_address, 0)``, or ``(-1, errcode)`` for a page fault (an error
    code can be 0: a kernel-mode read of a page that is not present).
    """
    return (walk_pae if host.layout.pae else walk_2level)(host, cr3, vaddr, write, user)


def _fault(write: bool, user: bool, present: int) -> tuple[int, int]:
    return -1, (FAULT_WRITE if write else 0) | (FAULT_USER if user else 0) | present


def walk_2level(host: Host, cr3: int, vaddr: int, write: bool, user: bool) -> tuple[int, int]:
    """The non-PAE walk: page directory (cr3), then page table."""
    tables = host.tables
    top = tables.get(cr3) or host.table(cr3)
    index = vaddr >> 22
    pde = top[index]
    if not pde & _PAGE_PRESENT:
        return _fault(write, user, 0)
    if pde & _PAGE_PSE:  # a 4 MiB page
        return _large(top, index, pde, vaddr, write, user, 0xFFC00000, 0x3FFFFF)
    frame = (pde & 0xFFFFF000) >> 12
    ptes = tables.get(frame) or host.table(frame)
    pte_index = (vaddr >> 12) & 1023
    pte = ptes[pte_index]
    if not pte & _PAGE_PRESENT:
        return _fault(write, user, 0)
    rights = pde & pte
    if (user and not rights & _PAGE_USER) or (write and not rights & _PAGE_RW):
        return _fault(write, user, FAULT_PRESENT)
    if not pde & _PAGE_ACCESSED:
        top[index] = pde | _PAGE_ACCESSED
    new = pte | (_PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED)
    if new != pte:
        ptes[pte_index] = new
    return (pte & 0xFFFFF000) | (vaddr & 0xFFF), 0


def walk_pae(host: Host, cr3: int, vaddr: int, write: bool, user: bool) -> tuple[int, int]:
    """The PAE walk: the four PDPTEs (at the start of the cr3 page), PMD page, PTE page.
    PDPTEs carry no access rights and get no Accessed bit."""
    tables = host.tables
    top = tables.get(cr3) or host.table(cr3)
    pdpte = top[vaddr >> 30]
    if not pdpte & _PAGE_PRESENT:
        return _fault(write, user, 0)
    frame = (pdpte & _PAE_PFN_MASK) >> 12
    pmds = tables.get(frame) or host.table(frame)
    index = (vaddr >> 21) & 511
    pmd = pmds[index]
    if not pmd & _PAGE_PRESENT:
        return _fault(write, user, 0)
    if pmd & _PAGE_PSE:  # a 2 MiB page
        return _large(pmds, index, pmd, vaddr, write, user, 0xFFFFFE00000, 0x1FFFFF)
    frame = (pmd & _PAE_PFN_MASK) >> 12
    ptes = tables.get(frame) or host.table(frame)
    pte_index = (vaddr >> 12) & 511
    pte = ptes[pte_index]
    if not pte & _PAGE_PRESENT:
        return _fault(write, user, 0)
    rights = pmd & pte
    if (user and not rights & _PAGE_USER) or (write and not rights & _PAGE_RW):
        return _fault(write, user, FAULT_PRESENT)
    if not pmd & _PAGE_ACCESSED:
        pmds[index] = pmd | _PAGE_ACCESSED
    new = pte | (_PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED)
    if new != pte:
        ptes[pte_index] = new
    return (pte & _PAE_PFN_MASK) | (vaddr & 0xFFF), 0


def _large(page, index, entry, vaddr, write, user, frame_mask, offset_mask):
    if (user and not entry & _PAGE_USER) or (write and not entry & _PAGE_RW):
        return _fault(write, user, FAULT_PRESENT)
    new = entry | (_PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED)
    if new != entry:
        page[index] = new
    return (entry & frame_mask) | (vaddr & offset_mask), 0


_PAE_PFN_MASK = 0x00000FFFFFFFF000
