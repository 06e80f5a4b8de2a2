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
Accessed on every level that has the bit, and Dirty on the PTE for a write.  There is no TLB
in this model: every access walks.  Large pages (PSE) in a directory entry map 4 MiB
(2 MiB under PAE); lguest never makes them in shadow tables.
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
    L = host.layout
    access = (FAULT_WRITE if write else 0) | (FAULT_USER if user else 0)
    tables = host.tables
    pfn_mask = L.PTE_PFN_MASK
    top = tables.get(cr3) or host.table(cr3)
    if L.pae:
        pdpte = top[(vaddr >> 30) & 3]
        if not pdpte & _PAGE_PRESENT:
            return -1, access
        frame = (pdpte & pfn_mask) >> 12
        pmd_page = tables.get(frame) or host.table(frame)
        index = (vaddr >> 21) & 511
        dir_entry = pmd_page[index]
        large_mask = 0x1FFFFF
    else:
        pmd_page = top
        index = vaddr >> 22
        dir_entry = top[index]
        large_mask = 0x3FFFFF
    if not dir_entry & _PAGE_PRESENT:
        return -1, access
    if dir_entry & _PAGE_PSE:
        rights = dir_entry
        if (user and not rights & _PAGE_USER) or (write and not rights & _PAGE_RW):
            return -1, access | FAULT_PRESENT
        new = dir_entry | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
        if new != dir_entry:
            pmd_page[index] = new
        base = dir_entry & L.PHYSICAL_PMD_PAGE_MASK
        return base | (vaddr & large_mask), 0
    frame = (dir_entry & pfn_mask) >> 12
    pte_page = tables.get(frame) or host.table(frame)
    pte_index = (vaddr >> 12) & (L.PTRS_PER_PTE - 1)
    pte = pte_page[pte_index]
    if not pte & _PAGE_PRESENT:
        return -1, access
    rights = dir_entry & pte
    if (user and not rights & _PAGE_USER) or (write and not rights & _PAGE_RW):
        return -1, access | FAULT_PRESENT
    if not dir_entry & _PAGE_ACCESSED:
        pmd_page[index] = dir_entry | _PAGE_ACCESSED
    new = pte | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
    if new != pte:
        pte_page[pte_index] = new
    return (pte & pfn_mask) | (vaddr & 0xFFF), 0
