"""drivers/lguest/page_tables.c (Linux 4.7), ported function by function.

Read this file beside the C: the functions come in the same order, carry the same names, make
the same checks in the same order and reach the same outcomes, quirks included.  Each
docstring names the narrative marker (H:3xx...) of the C's literate comments.

How the C maps onto Python:

* ``#ifdef CONFIG_X86_PAE`` becomes ``if L.pae`` where ``L`` is the machine's layout
  (:mod:`lguest_book.x86`).
* A pointer to a page-table entry is a ``(frame, index)`` pair; ``host.deref(p)`` is ``*p``
  and ``host.store(p, v)`` is ``set_pte(p, v)`` (or ``set_pmd``/``set_pgd``/``*p = v``).
  ``None`` is the NULL pointer.  ``lg.pgdirs[i].pgdir`` is a frame number, 0 for NULL.
* Out-parameters become return values: ``demand_page`` returns ``(fixed, iomem)``,
  ``__guest_pa`` returns ``(ok, paddr)``, ``new_pgdir`` returns ``(slot, blank_pgdir)``.
* Where the C reaches for global kernel state (the page allocator, ``mem_map``,
  ``switcher_addr``, ``lg_switcher_pages``, the current process), the Python takes it from
  the guest's host: ``release_pte``/``release_pmd``/``release_pgd`` get the host as a first
  argument, ``get_pfn`` the Launcher's address space.
* ``unsigned long`` is 32 bits: results are truncated where the C would truncate them.
* ``BUG_ON`` and NULL dereferences raise :class:`~lguest_book.host.KernelOops`; the entry
  points of :mod:`lguest_book.hypercalls` turn an oops into a dead Launcher.

* ``pgd_flags``/``pgd_pfn``/``pmd_flags``/``pmd_pfn`` are drivers/lguest/lg.h's own macros
  (:mod:`lguest_book.lguest`): the low 12 bits, and every bit above them, whatever the PSE bit
  says.  They hide the kernel's PSE-aware versions (the Layout methods of
  :mod:`lguest_book.x86`), exactly as lg.h does for page_tables.c.  On the fault path
  (demand_page and the functions it calls) ``pgd_flags``/``pgd_pfn`` are spelled out, as the
  compiler inlines the macros (``e & 0xFFF``, ``e >> PAGE_SHIFT``, the macro named in a
  comment).  ``pmd_flags``/``pmd_pfn`` stay calls of the module's globals: the referees'
  tests swap in the kernel's PSE-aware versions and must see every use of them.
* Flag tests.  The C writes ``pte_flags(e) & _PAGE_RW``.  ``pte_flags()`` only clears the
  frame-number bits, which never overlap a flag below bit 12, so where a single low flag is
  tested the Python tests the entry directly (``e & _PAGE_RW``): the same answer, one call
  fewer on the fault path.  Where all the flag bits matter on the fault path
  (``gpte_to_spte``'s copy) ``pte_flags(e)`` is spelled out as ``e & L.PTE_FLAGS_MASK``, the
  macro named in a comment; elsewhere the helpers are called.  Likewise ``pte_pfn(e)`` is
  ``(e & L.PTE_PFN_MASK) >> PAGE_SHIFT`` where it is spelled out.
* ``& ULONG_MASK`` stands where the C's unsigned long arithmetic can carry past 32 bits.  Where
  it provably cannot (a page address that ends in 12 zero bits plus an offset below
  ``PAGE_SIZE``; a 32-bit entry masked to its frame bits) the mask is left out and a comment
  says why: the value is the same.

Arguments are not checked here, as the C does not check them: its callers are the rest of
lguest.  A *user* who calls a function by hand is checked at the boundary
(:mod:`lguest_book.boundary`): ``pt.demand_page`` read as an attribute of this module is a
checked view, which applies the function's row of ``boundary.PORT_RULES`` (a rule per
parameter; ``PAE_ONLY`` for the functions that exist only under ``CONFIG_X86_PAE``) and then
runs the twin below.  A bad argument is a one-line ``TypeError``/``ValueError`` naming it.
The functions here call one another by their global names, which are the twins themselves,
and the layers above call them through ``boundary.port`` (this module's own namespace), so
the Guest's path (fault -> hypercalls -> page_tables) runs no check at all; an exercise that
swaps a function in (``setattr`` on this module) is seen by every caller.

``pin_stack_pages`` (from interrupts_and_traps.c) sits at the end, because page_tables.c
calls it and it calls ``pin_page``.
"""

from __future__ import annotations

from .host import BUG, BUG_ON, Host, Launcher
from .lguest import (
    LGUEST_DATA_KERNEL_ADDRESS,
    LGUEST_DATA_RESERVE_MEM,
    PGDIR_SLOTS,
    Lguest,
    c_hex,
    c_ptr,
    LgCpu,
    get_user_u32,
    kill_guest,
    lgread,
    pgd_flags,
    pgd_pfn,
    pmd_flags,
    pmd_pfn,
    lgwrite,
    put_user_u32,
)
from .x86 import (
    PAE,
    PAGE_KERNEL_RX,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    ULONG_MASK,
    __PAGE_KERNEL,
    __PAGE_KERNEL_RO,
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_TABLE,
    _PAGE_USER,
)

ENOMEM = 12


# ===========================================================================================
# H:320  The helpers: pointers into the shadow tables, addresses in the Guest's tables.
# ===========================================================================================
def spgd_addr(cpu: LgCpu, i: int, vaddr: int) -> tuple[int, int]:
    """Pointer to the shadow top-level entry for ``vaddr`` in cached top level ``i``."""
    lg = cpu.lg
    L = lg.x86
    index = (vaddr >> L.PGDIR_SHIFT) & (L.PTRS_PER_PGD - 1)  # pgd_index(vaddr)
    return (lg.pgdirs[i].pgdir, index)


def spmd_addr(cpu: LgCpu, spgd: int, vaddr: int) -> tuple[int, int]:
    """PAE only: pointer to the shadow mid-level entry below the (present) entry ``spgd``."""
    index = (vaddr >> 21) & 511  # pmd_index(vaddr): PAE's PMD_SHIFT is 21, PTRS_PER_PMD 512
    if not spgd & _PAGE_PRESENT:  # BUG_ON(!(pgd_flags(spgd) & _PAGE_PRESENT))
        BUG("spmd_addr")
    return (spgd >> PAGE_SHIFT, index)  # pgd_pfn(spgd) (lg.h)


def spte_addr(cpu: LgCpu, spgd: int, vaddr: int) -> tuple[int, int]:
    """Pointer to the shadow PTE for ``vaddr`` below the (present) top-level entry ``spgd``."""
    L = cpu.lg.x86
    if L.pae:  # PAE: there is a mid level
        pmd = spmd_addr(cpu, spgd, vaddr)
        spmd = cpu.lg.host.deref(pmd)
        page = pmd_pfn(spmd)
        if not (pmd_flags(spmd) & _PAGE_PRESENT):  # BUG_ON: the mid-level entry must be present
            BUG("spte_addr")
    else:
        page = spgd >> PAGE_SHIFT  # pgd_pfn(spgd) (lg.h)
        if not spgd & _PAGE_PRESENT:  # BUG_ON: the top-level entry must be present
            BUG("spte_addr")
    return (page, (vaddr >> PAGE_SHIFT) & (L.PTRS_PER_PTE - 1))  # pte_index(vaddr)


def gpgd_addr(cpu: LgCpu, vaddr: int) -> int:
    """Guest-physical address of the Guest's top-level entry for ``vaddr`` (current table)."""
    lg = cpu.lg
    index = vaddr >> lg.x86.PGDIR_SHIFT
    return (lg.pgdirs[cpu.cpu_pgd].gpgdir + index * lg.entry_bytes) & ULONG_MASK


def gpmd_addr(gpgd: int, vaddr: int) -> int:
    """PAE only: guest-physical address of the Guest's mid-level entry below ``gpgd``."""
    gpage = ((gpgd >> PAGE_SHIFT) << PAGE_SHIFT) & ULONG_MASK  # pgd_pfn(gpgd) << PAGE_SHIFT (lg.h)
    if not gpgd & _PAGE_PRESENT:  # BUG_ON(!(pgd_flags(gpgd) & _PAGE_PRESENT))
        BUG("gpmd_addr")
    # pmd_index(vaddr): PAE's PMD_SHIFT is 21, PTRS_PER_PMD 512; a PAE entry is 8 bytes.  The
    # sum fits an unsigned long (gpage ends in 12 zero bits, the offset is below PAGE_SIZE).
    return gpage + ((vaddr >> 21) & 511) * 8


def gpte_addr(cpu: LgCpu, gentry: int, vaddr: int) -> int:
    """Guest-physical address of the Guest's PTE for ``vaddr``.

    ``gentry`` is the Guest mid-level entry under PAE and the top-level entry without it
    (the C has two versions of this function, one per layout).
    """
    L = cpu.lg.x86
    if L.pae:  # PAE: there is a mid level
        gpage = (pmd_pfn(gentry) << PAGE_SHIFT) & ULONG_MASK
        if not (pmd_flags(gentry) & _PAGE_PRESENT):  # BUG_ON: the entry must be present
            BUG("gpte_addr")
    else:
        gpage = gentry & L.PTE_PFN_MASK  # pgd_pfn(gpgd) << PAGE_SHIFT (a 32-bit entry: no carry out)
        if not gentry & _PAGE_PRESENT:  # BUG_ON: the entry must be present
            BUG("gpte_addr")
    # pte_index(vaddr) * sizeof(pte_t) is below PAGE_SIZE and gpage ends in 12 zero bits: the
    # sum fits an unsigned long.
    return gpage + ((vaddr >> PAGE_SHIFT) & (L.PTRS_PER_PTE - 1)) * L.entry_bytes


# ===========================================================================================
# H:350  get_pfn: from a page of the Launcher's memory to a host frame, with a reference.
# ===========================================================================================
def get_pfn(mm: Launcher, virtpfn: int, write: int) -> int:
    """Pin the Launcher page ``virtpfn``; returns its host frame, or 0xffffffff (-1UL)."""
    count, page = mm.get_user_pages_fast((virtpfn << PAGE_SHIFT) & ULONG_MASK, 1, write)
    if count == 1:  # get_user_pages_fast pinned the page
        return page
    return ULONG_MASK


# ===========================================================================================
# H:340  gpte_to_spte: a Guest PTE made into a shadow PTE.
# ===========================================================================================
def gpte_to_spte(cpu: LgCpu, gpte: int, write: int) -> int:
    """Keep the Guest's flags (less Global), swap its page number for the host frame."""
    lg = cpu.lg
    L = lg.x86
    # QUIRK: the C keeps the flags in an "unsigned long", 32 bits: under PAE the high flag
    # bits of the Guest's PTE (NX, and the bits available to software) are dropped here.
    # (Found by referee 1, the compiled C.)
    flags = gpte & L.PTE_FLAGS_MASK & ~_PAGE_GLOBAL & ULONG_MASK  # pte_flags(gpte)
    base = lg.mem_base >> PAGE_SHIFT  # mem_base / PAGE_SIZE
    pfn = get_pfn(lg.launcher, (base + ((gpte & L.PTE_PFN_MASK) >> PAGE_SHIFT)) & ULONG_MASK, write)
    if pfn == ULONG_MASK:  # get_pfn failed
        kill_guest(cpu, f"failed to get page {L.pte_pfn(gpte)}")
        # No flags, so teardown will not try to release this entry.
        flags = 0
    # pfn_pte(pfn, __pgprot(flags)), written out: massage_pgprot() would only clear NX, which
    # 32-bit flags never hold, and the result is as wide as phys_addr_t, so no wider than pte_t.
    return ((pfn << PAGE_SHIFT) & L.phys_mask) | flags


def release_pte(host: Host, pte: int) -> None:
    """H:460: give back the page reference get_pfn() took, if the entry is present."""
    if pte & _PAGE_PRESENT:  # only a present entry holds a reference
        host.put_page((pte & host.layout.PTE_PFN_MASK) >> PAGE_SHIFT)  # pte_page(pte)


def gpte_in_iomem(cpu: LgCpu, gpte: int) -> bool:
    """Is this Guest PTE pointing into device memory (between pfn_limit and device_limit)?"""
    if gpte & _PAGE_PSE:  # large pages are never I/O memory here
        return False
    lg = cpu.lg
    pfn = (gpte & lg.x86.PTE_PFN_MASK) >> PAGE_SHIFT  # pte_pfn(gpte)
    return lg.pfn_limit <= pfn < lg.device_limit


def check_gpte(cpu: LgCpu, gpte: int) -> bool:
    """A Guest PTE with the PSE (PAT) bit, or beyond guest memory, kills the guest."""
    lg = cpu.lg
    if (gpte & _PAGE_PSE) or (
        (gpte & lg.x86.PTE_PFN_MASK) >> PAGE_SHIFT >= lg.pfn_limit  # pte_pfn(gpte)
    ):  # large page, or beyond guest memory
        kill_guest(cpu, "bad page table entry")
        return False
    return True


def check_gpgd(cpu: LgCpu, gpgd: int) -> bool:
    """A Guest top-level entry may only carry CHECK_GPGD_MASK flags and point into its memory."""
    lg = cpu.lg
    if (gpgd & 0xFFF & ~lg.x86.CHECK_GPGD_MASK) or (  # pgd_flags(gpgd) (lg.h)
        gpgd >> PAGE_SHIFT >= lg.pfn_limit  # pgd_pfn(gpgd) (lg.h)
    ):  # flags outside CHECK_GPGD_MASK, or beyond guest memory
        kill_guest(cpu, "bad page directory entry")
        return False
    return True


def check_gpmd(cpu: LgCpu, gpmd: int) -> bool:
    """PAE only: a Guest mid-level entry may only carry _PAGE_TABLE flags."""
    if (pmd_flags(gpmd) & ~_PAGE_TABLE) or (
        pmd_pfn(gpmd) >= cpu.lg.pfn_limit
    ):  # flags outside _PAGE_TABLE, or beyond guest memory
        kill_guest(cpu, "bad page middle directory entry")
        return False
    return True


# ===========================================================================================
# H:331  find_spte: walk the current shadow table, allocating missing levels if asked.
# ===========================================================================================
def find_spte(cpu: LgCpu, vaddr: int, allocate: bool, pgd_flags: int, pmd_flags: int):
    """Pointer to the shadow PTE for ``vaddr``, or None.

    With ``allocate``, a missing level gets a fresh zeroed page whose entry takes
    ``pgd_flags``/``pmd_flags`` (copied from the Guest's entries by the caller).
    """
    lg = cpu.lg
    host = lg.host
    L = lg.x86
    spgd = spgd_addr(cpu, cpu.cpu_pgd, vaddr)
    pgd = host.deref(spgd)
    if not pgd & _PAGE_PRESENT:  # no shadow top-level entry yet
        if not allocate:  # the caller only wanted to look
            return None
        ptepage = host.get_zeroed_page()
        if not ptepage:  # the allocation failed
            kill_guest(cpu, "out of memory allocating pte page")
            return None
        pgd = (ptepage << PAGE_SHIFT) | pgd_flags
        host.store(spgd, pgd)  # set_pgd
    if L.pae:  # PAE: there is a mid level
        spmd = spmd_addr(cpu, pgd, vaddr)
        if not (host.deref(spmd) & _PAGE_PRESENT):  # pmd_flags(*spmd): the parameter hides lg.h's macro here
            if not allocate:  # the caller only wanted to look
                return None
            ptepage = host.get_zeroed_page()
            if not ptepage:  # the allocation failed
                kill_guest(cpu, "out of memory allocating pmd page")
                return None
            host.store(spmd, (ptepage << PAGE_SHIFT) | pmd_flags)  # set_pmd
    return spte_addr(cpu, pgd, vaddr)


# ===========================================================================================
# H:330  (i) demand_page: the Guest faulted; map the page if its own tables allow it.
# ===========================================================================================
def demand_page(cpu: LgCpu, vaddr: int, errcode: int) -> tuple[bool, int]:
    """Returns ``(fixed, iomem)``: ``fixed`` if the shadow now maps ``vaddr``; else the fault
    is the Guest's own, unless ``iomem`` is non-zero: then it touched device memory at that
    guest-physical address and the Launcher must emulate the access."""
    lg = cpu.lg
    L = lg.x86

    if vaddr >= lg.host.switcher_addr:  # the Switcher is never demand-paged
        return False, 0

    # The top level: made up while the guest runs linear, else read from the Guest.
    if cpu.linear_pages:  # still running on the made-up linear mapping
        gpgd = L.CHECK_GPGD_MASK
    else:
        gpgd = lgread(cpu, gpgd_addr(cpu, vaddr), "pgd_t")
        if not gpgd & _PAGE_PRESENT:  # not present: the Guest's fault
            return False, 0
        if not check_gpgd(cpu, gpgd):  # weird flags or outside its memory: killed
            return False, 0

    # The mid level exists only for PAE; without it this dummy value stands in.
    gpmd = _PAGE_TABLE
    if L.pae:  # PAE: there is a mid level
        if not cpu.linear_pages:  # real Guest tables to read
            gpmd = lgread(cpu, gpmd_addr(gpgd, vaddr), "pmd_t")
            if not (pmd_flags(gpmd) & _PAGE_PRESENT):  # mid level not present
                return False, 0
            if not check_gpmd(cpu, gpmd):  # weird mid-level entry: killed
                return False, 0
        gpte_ptr = gpte_addr(cpu, gpmd, vaddr)
    else:
        gpte_ptr = gpte_addr(cpu, gpgd, vaddr)

    if cpu.linear_pages:  # linear: invent a writable PTE for the same page
        gpte = (vaddr & PAGE_MASK) | _PAGE_RW | _PAGE_PRESENT
    else:
        gpte = lgread(cpu, gpte_ptr, "pte_t")

    if not gpte & _PAGE_PRESENT:  # not mapped by the Guest
        return False, 0
    if (errcode & 2) and not gpte & _PAGE_RW:  # write to a read-only page
        return False, 0
    if (errcode & 4) and not gpte & _PAGE_USER:  # user touches a kernel page
        return False, 0
    if gpte_in_iomem(cpu, gpte):  # device memory: the Launcher emulates the access
        return False, (gpte & L.PTE_PFN_MASK & ULONG_MASK) | (vaddr & ~PAGE_MASK)
    if not check_gpte(cpu, gpte):  # PSE, or beyond guest memory: killed
        return False, 0

    # What the hardware would have done to the Guest's PTE: accessed, and dirty on a write.
    gpte |= _PAGE_ACCESSED  # pte_mkyoung()
    if errcode & 2:  # a write fault
        gpte |= _PAGE_DIRTY  # pte_mkdirty()

    spte = find_spte(cpu, vaddr, True, gpgd & 0xFFF, pmd_flags(gpmd))  # gpgd & 0xFFF: pgd_flags(gpgd) (lg.h)
    if spte is None:  # no shadow PTE
        return False, 0

    host = lg.host
    release_pte(host, host.deref(spte))  # an old entry (say, read-only) gives back its page

    # Only a dirty Guest PTE earns a writable shadow PTE; a read maps it read-only so the
    # first write faults again and we can mark the Guest's PTE dirty then.
    if gpte & _PAGE_DIRTY:  # pte_dirty()
        host.store(spte, gpte_to_spte(cpu, gpte, 1))
    else:
        host.store(spte, gpte_to_spte(cpu, gpte & ~_PAGE_RW, 0))  # pte_wrprotect()

    if not cpu.linear_pages:  # write back the accessed/dirty bits
        lgwrite(cpu, gpte_ptr, "pte_t", gpte)
    return True, 0


# ===========================================================================================
# H:360  (ii) Making sure the Guest stack is mapped.
# ===========================================================================================
def page_writable(cpu: LgCpu, vaddr: int) -> bool:
    """Does the current shadow table map ``vaddr`` present and writable?"""
    if vaddr >= cpu.lg.host.switcher_addr:  # no stack in the Switcher
        return False
    spte = find_spte(cpu, vaddr, False, 0, 0)
    if spte is None:  # no shadow PTE
        return False
    # "unsigned long flags": the high half of a PAE entry's flags is dropped here.
    flags = cpu.lg.x86.pte_flags(cpu.lg.host.deref(spte)) & ULONG_MASK
    return (flags & (_PAGE_PRESENT | _PAGE_RW)) == (_PAGE_PRESENT | _PAGE_RW)


def pin_page(cpu: LgCpu, vaddr: int) -> None:
    """Map a stack page now (as a write fault would) unless it already is; else kill."""
    if not page_writable(cpu, vaddr) and (
        not demand_page(cpu, vaddr, 2)[0]
    ):  # not mapped writable, and a write fault cannot map it
        kill_guest(cpu, f"bad stack page {c_hex(vaddr)}")


# ===========================================================================================
# H:450  Releasing shadow pages: every PTE page below an entry, then the page itself.
# ===========================================================================================
def release_pmd(host: Host, spmd: tuple[int, int]) -> None:
    """PAE only: release the PTE page a present shadow mid-level entry points to."""
    L = host.layout
    pmd = host.deref(spmd)
    if pmd_flags(pmd) & _PAGE_PRESENT:  # a present mid-level entry: release its PTE page
        ptepage = pmd_pfn(pmd)
        entries = host.table(ptepage)
        for i in range(L.PTRS_PER_PTE):
            release_pte(host, entries[i])
        host.free_page(ptepage)
        host.store(spmd, 0)  # so it is never released twice


def release_pgd(host: Host, spgd: tuple[int, int]) -> None:
    """Release what a present shadow top-level entry points to, then clear the entry."""
    L = host.layout
    pgd = host.deref(spgd)
    if pgd_flags(pgd) & _PAGE_PRESENT:  # a present top-level entry: release what it points to
        page = pgd_pfn(pgd)
        if L.pae:  # PAE: there is a mid level
            for i in range(L.PTRS_PER_PMD):
                release_pmd(host, (page, i))
        else:
            entries = host.table(page)
            for i in range(L.PTRS_PER_PTE):
                release_pte(host, entries[i])
        host.free_page(page)
        host.store(spgd, 0)


def flush_user_mappings(lg: Lguest, idx: int) -> None:
    """H:445: release every top-level entry of slot ``idx`` below the Guest's kernel address."""
    host = lg.host
    for i in range(lg.x86.pgd_index(lg.kernel_address)):
        release_pgd(host, host.entry_ptr(lg.pgdirs[idx].pgdir, i))


def guest_pagetable_flush_user(cpu: LgCpu) -> None:
    """H:440 (v): the Guest asked us to drop the user part of its current top level."""
    flush_user_mappings(cpu.lg, cpu.cpu_pgd)


# ===========================================================================================
# Walking the Guest's own tables to a guest-physical address.
# ===========================================================================================
def __guest_pa(cpu: LgCpu, vaddr: int) -> tuple[bool, int]:
    """Returns ``(ok, paddr)``; ``paddr`` is 0xffffffff when the walk fails."""
    L = cpu.lg.x86
    if cpu.linear_pages:  # not set up yet: identity
        return True, vaddr
    gpgd = lgread(cpu, gpgd_addr(cpu, vaddr), "pgd_t")
    if not (pgd_flags(gpgd) & _PAGE_PRESENT):  # top level not present
        return False, ULONG_MASK
    if L.pae:  # PAE: there is a mid level
        gpmd = lgread(cpu, gpmd_addr(gpgd, vaddr), "pmd_t")
        if not (pmd_flags(gpmd) & _PAGE_PRESENT):  # mid level not present
            return False, ULONG_MASK
        gpte = lgread(cpu, gpte_addr(cpu, gpmd, vaddr), "pte_t")
    else:
        gpte = lgread(cpu, gpte_addr(cpu, gpgd, vaddr), "pte_t")
    if not (L.pte_flags(gpte) & _PAGE_PRESENT):  # PTE not present
        return False, ULONG_MASK
    return True, ((L.pte_pfn(gpte) * PAGE_SIZE) | (vaddr & ~PAGE_MASK)) & ULONG_MASK


def guest_pa(cpu: LgCpu, vaddr: int) -> int:
    """Like __guest_pa, but a bad address kills the guest (and 0xffffffff comes back)."""
    ok, paddr = __guest_pa(cpu, vaddr)
    if not ok:  # the Guest's tables do not map it
        kill_guest(cpu, f"Bad address {c_hex(vaddr)}")
    return paddr


# ===========================================================================================
# The cache of shadow top levels.
# ===========================================================================================
def find_pgdir(lg: Lguest, pgtable: int) -> int:
    """The slot shadowing Guest top level ``pgtable``, or 4 (ARRAY_SIZE) if none does."""
    pgdirs = lg.pgdirs
    for i in range(PGDIR_SLOTS):
        if pgdirs[i].pgdir and pgdirs[i].gpgdir == pgtable:  # this slot shadows that top level
            break
    else:
        i = PGDIR_SLOTS
    return i


# H:435
def new_pgdir(cpu: LgCpu, gpgdir: int) -> tuple[int, bool]:
    """Pick a slot at random for ``gpgdir``; returns ``(slot, blank_pgdir)``.

    A slot never used gets a fresh page (and ``blank_pgdir``: no kernel mappings yet, so the
    caller must pin the stack).  If that allocation fails the current slot is reused.  Either
    way the user part of the chosen slot is flushed; its kernel part is kept.
    """
    lg = cpu.lg
    blank_pgdir = False
    next = lg.prandom_u32() % PGDIR_SLOTS
    if not lg.pgdirs[next].pgdir:  # the slot has no page (never used, or the allocation failed)
        lg.pgdirs[next].pgdir = lg.host.get_zeroed_page()
        if not lg.pgdirs[next].pgdir:  # get_zeroed_page() failed: still no page
            next = cpu.cpu_pgd  # allocation failed: keep using the one we have
        else:
            blank_pgdir = True
    lg.pgdirs[next].gpgdir = gpgdir
    flush_user_mappings(lg, next)
    lg.pgdirs[next].last_host_cpu = -1
    return next, blank_pgdir


# H:501
def allocate_switcher_mapping(cpu: LgCpu) -> bool:
    """Make sure the current shadow table has PTE pages for every Switcher page, and map
    the shared Switcher code page (read-only, executable, kernel only) if it is not."""
    lg = cpu.lg
    host = lg.host
    L = lg.x86
    for i in range(host.TOTAL_SWITCHER_PAGES):
        pte = find_spte(cpu, host.switcher_addr + i * PAGE_SIZE, True, L.CHECK_GPGD_MASK, _PAGE_TABLE)
        if pte is None:  # could not make the PTE page
            return False
        if i == 0 and (
            not (L.pte_flags(host.deref(pte)) & _PAGE_PRESENT)
        ):  # the Switcher's code page is not mapped yet
            host.get_page(host.lg_switcher_pages[0])
            host.store(pte, L.mk_pte(host.lg_switcher_pages[0], PAGE_KERNEL_RX))
    lg.pgdirs[cpu.cpu_pgd].switcher_mapped = True
    return True


# H:470
def release_all_pagetables(lg: Lguest) -> None:
    """Release every entry of every cached shadow table, kernel part and Switcher included.
    The top-level pages themselves stay allocated."""
    host = lg.host
    for pgdir in lg.pgdirs:
        if not pgdir.pgdir:  # an unused slot
            continue
        for j in range(lg.x86.PTRS_PER_PGD):
            release_pgd(host, host.entry_ptr(pgdir.pgdir, j))
        pgdir.switcher_mapped = False
        pgdir.last_host_cpu = -1


def guest_pagetable_clear_all(cpu: LgCpu) -> None:
    """Throw everything away (a kernel mapping changed), then re-pin the stack and the
    Switcher.  The Guest is "trapped in amber" while it all faults back in."""
    release_all_pagetables(cpu.lg)
    pin_stack_pages(cpu)
    if not allocate_switcher_mapping(cpu):  # the Switcher could not be mapped
        kill_guest(cpu, "Cannot populate switcher mapping")


# ===========================================================================================
# H:430  (iv) Switching page tables.
# ===========================================================================================
def guest_new_pagetable(cpu: LgCpu, pgtable: int) -> None:
    """The Guest loaded ``pgtable`` into cr3: find or make its shadow and make it current."""
    lg = cpu.lg
    repin = False
    if cpu.linear_pages:  # still running on the made-up linear mapping
        # The first switch: the linear mapping was made up, so throw it all away.
        release_all_pagetables(lg)
        cpu.linear_pages = False
        newpgdir = PGDIR_SLOTS  # force a new pgdir
    else:
        newpgdir = find_pgdir(lg, pgtable)
    if newpgdir == PGDIR_SLOTS:  # not cached: take a slot
        newpgdir, repin = new_pgdir(cpu, pgtable)
    cpu.cpu_pgd = newpgdir
    if repin:  # a blank top level: stack and Switcher must be mapped again
        pin_stack_pages(cpu)
    if not lg.pgdirs[cpu.cpu_pgd].switcher_mapped:  # the Switcher is not mapped in this slot
        if not allocate_switcher_mapping(cpu):  # the Switcher could not be mapped
            kill_guest(cpu, "Cannot populate switcher mapping")


# ===========================================================================================
# H:420/H:410/H:400  (iii) The Guest changed an entry.
# ===========================================================================================
def __guest_set_pte(cpu: LgCpu, idx: int, vaddr: int, gpte: int) -> None:
    """Update slot ``idx``'s shadow PTE for ``vaddr`` after the Guest set it to ``gpte``.

    Normally the shadow entry is simply dropped (a later fault brings it back).  If the
    Guest already set Accessed or Dirty, the new entry goes in at once.
    """
    lg = cpu.lg
    host = lg.host
    L = lg.x86
    spgd = spgd_addr(cpu, idx, vaddr)
    if pgd_flags(host.deref(spgd)) & _PAGE_PRESENT:  # a shadow top-level entry exists
        if L.pae:  # PAE: there is a mid level
            spmd = spmd_addr(cpu, host.deref(spgd), vaddr)
            if not (pmd_flags(host.deref(spmd)) & _PAGE_PRESENT):  # no shadow mid-level entry
                return
        spte = spte_addr(cpu, host.deref(spgd), vaddr)
        release_pte(host, host.deref(spte))
        if (L.pte_flags(gpte) & (_PAGE_DIRTY | _PAGE_ACCESSED)) and (
            not gpte_in_iomem(cpu, gpte)
        ):  # Accessed or Dirty already set (and not device memory): map it now
            if not check_gpte(cpu, gpte):  # bad PTE: killed
                # QUIRK: the old entry was released above but is left in place, so teardown
                # will release its page a second time.
                return
            host.store(spte, gpte_to_spte(cpu, gpte, L.pte_flags(gpte) & _PAGE_DIRTY))
        else:
            host.store(spte, 0)


def guest_set_pte(cpu: LgCpu, gpgdir: int, vaddr: int, gpte: int) -> None:
    """The Guest set the PTE for ``vaddr`` in its top level ``gpgdir`` to ``gpte``."""
    lg = cpu.lg
    if vaddr >= lg.host.switcher_addr:  # inside the Switcher
        kill_guest(cpu, "attempt to set pte into Switcher pages")
        return
    if vaddr >= lg.kernel_address:  # a kernel address: every top level
        # Kernel mappings are shared by every top level: update them all.
        for i in range(PGDIR_SLOTS):
            if lg.pgdirs[i].pgdir:
                __guest_set_pte(cpu, i, vaddr, gpte)
    else:
        pgdir = find_pgdir(lg, gpgdir)
        if pgdir != PGDIR_SLOTS:
            __guest_set_pte(cpu, pgdir, vaddr, gpte)


def guest_set_pgd(lg: Lguest, gpgdir: int, idx: int) -> None:
    """The Guest changed top-level entry ``idx`` of ``gpgdir``: drop our copy of it.

    QUIRK: the bound test is ``idx > PTRS_PER_PGD``, so ``idx == PTRS_PER_PGD`` passes and
    releases the entry one past the end of the top-level page (under non-PAE, the first
    entry of the next physical frame).
    """
    cpu0 = lg.cpus[0]
    if idx > lg.x86.PTRS_PER_PGD:  # index past the end (note: > not >=)
        kill_guest(cpu0, f"Attempt to set pgd {idx}/{lg.x86.PTRS_PER_PGD}")
        return
    pgdir = find_pgdir(lg, gpgdir)
    if pgdir < PGDIR_SLOTS:  # we shadow that top level
        release_pgd(lg.host, lg.host.entry_ptr(lg.pgdirs[pgdir].pgdir, idx))
        # That may have been the Switcher's entry: map it again (in cpu 0's *current* slot).
        if not allocate_switcher_mapping(cpu0):  # the Switcher could not be mapped
            kill_guest(cpu0, "Cannot populate switcher mapping")
        lg.pgdirs[pgdir].last_host_cpu = -1


def guest_set_pmd(lg: Lguest, pmdp: int, idx: int) -> None:
    """PAE only: a mid-level entry changed; simply throw everything away."""
    guest_pagetable_clear_all(lg.cpus[0])


# ===========================================================================================
# H:500/H:508  (vii) Setting up, and tearing down.
# ===========================================================================================
def init_guest_pagetable(lg: Lguest) -> int:
    """A new guest: one shadow top level, linear mode, Switcher mapped.  0 or -ENOMEM."""
    cpu = lg.cpus[0]
    cpu.cpu_pgd, allocated = new_pgdir(cpu, 0)
    if not allocated:  # no page for the first top level
        return -ENOMEM
    cpu.linear_pages = True
    if not allocate_switcher_mapping(cpu):  # the Switcher could not be mapped
        release_all_pagetables(lg)
        return -ENOMEM
    return 0


def page_table_guest_data_init(cpu: LgCpu) -> None:
    """LHCALL_LGUEST_INIT: read kernel_address from lguest_data, write reserve_mem back."""
    lg = cpu.lg
    top = (~lg.host.switcher_addr + 1) & ULONG_MASK  # 4 GiB - switcher_addr, in 32 bits
    # get_user() zeroes its destination when the read faults.
    err, lg.kernel_address = get_user_u32(lg, lg.lguest_data + LGUEST_DATA_KERNEL_ADDRESS)
    if err or (
        put_user_u32(lg, top, lg.lguest_data + LGUEST_DATA_RESERVE_MEM)
    ):  # lguest_data is not readable and writable
        kill_guest(cpu, f"bad guest page {c_ptr(lg.lguest_data)}")
        return
    # flush_user_mappings() loops up to pgd_index(kernel_address): keep it below the Switcher.
    if lg.kernel_address >= lg.host.switcher_addr:  # kernel address inside the Switcher
        kill_guest(cpu, f"bad kernel address {c_hex(lg.kernel_address)}")


def free_guest_pagetable(lg: Lguest) -> None:
    """The guest is gone: release every shadow page, then the top-level pages."""
    release_all_pagetables(lg)
    for pgdir in lg.pgdirs:
        lg.host.free_page(pgdir.pgdir)


# ===========================================================================================
# H:481/H:480  (vi) Mapping the Switcher when the Guest is about to run.
# ===========================================================================================
def remove_switcher_percpu_map(cpu: LgCpu, i: int) -> None:
    """Unmap host CPU ``i``'s two Switcher pages from the current shadow table."""
    host = cpu.lg.host
    base = host.switcher_addr + PAGE_SIZE + i * PAGE_SIZE * 2
    pte = find_spte(cpu, base, False, 0, 0)
    release_pte(host, host.deref(pte))  # a NULL pte oopses here, as in the C
    host.store(pte, 0)
    pte = find_spte(cpu, base + PAGE_SIZE, False, 0, 0)
    release_pte(host, host.deref(pte))
    host.store(pte, 0)


def map_switcher_in_guest(cpu: LgCpu, pages=None) -> None:
    """Just before running: map this host CPU's register page (the guest's regs page,
    writable) and its read-only state page, unless they are mapped already.

    ``pages`` is the C's ``struct lguest_pages *`` argument, which the function never uses.
    """
    lg = cpu.lg
    host = lg.host
    L = lg.x86
    pgdir = lg.pgdirs[cpu.cpu_pgd]
    BUG_ON(not pgdir.switcher_mapped, "map_switcher_in_guest")
    this_cpu = host.current_cpu
    if pgdir.last_host_cpu == this_cpu:  # already mapped for this host CPU
        return
    if pgdir.last_host_cpu == -1:  # unknown: clear every CPU's pages
        for i in range(host.nr_cpus):
            remove_switcher_percpu_map(cpu, i)
    else:
        remove_switcher_percpu_map(cpu, pgdir.last_host_cpu)
    base = host.switcher_addr + PAGE_SIZE + this_cpu * 2 * PAGE_SIZE  # sizeof(lguest_pages)
    pte = find_spte(cpu, base, False, 0, 0)
    regs_page = cpu.regs_page
    host.get_page(regs_page)
    host.store(pte, L.mk_pte(regs_page, __PAGE_KERNEL & ~_PAGE_GLOBAL))
    pte = find_spte(cpu, base + PAGE_SIZE, False, 0, 0)
    percpu_switcher_page = host.lg_switcher_pages[1 + this_cpu * 2 + 1]
    host.get_page(percpu_switcher_page)
    host.store(pte, L.mk_pte(percpu_switcher_page, __PAGE_KERNEL_RO & ~_PAGE_GLOBAL))
    pgdir.last_host_cpu = this_cpu


# ===========================================================================================
# From interrupts_and_traps.c: pin every page of the Guest's kernel stack.
# ===========================================================================================
STACK_PIN_CYCLE = 1 << 20  # esp1 - 1 - i * PAGE_SIZE repeats after this many pages


def pin_stack_pages(cpu: LgCpu) -> None:
    """Pin each stack page: ``esp1`` is the top, so page i holds ``esp1 - 1 - i * PAGE_SIZE``.

    guest_set_stack() kills a guest asking for more than two pages but records the number
    anyway, so the C may loop up to 2**32 times here.  The addresses repeat after 2**20
    pages, and a second pass changes nothing (each page is then writable, or demand_page
    refuses it again), so the model stops after one full cycle: same outcome, no hang.
    """
    for i in range(min(cpu.lg.stack_pages, STACK_PIN_CYCLE)):
        pin_page(cpu, (cpu.esp1 - 1 - i * PAGE_SIZE) & ULONG_MASK)


# The C function names, in the order page_tables.c defines them (pin_stack_pages last, as it
# comes from interrupts_and_traps.c).  The book and the referees use this list.
C_FUNCTIONS = (
    "spgd_addr", "spmd_addr", "spte_addr", "gpgd_addr", "gpmd_addr", "gpte_addr",
    "get_pfn", "gpte_to_spte", "release_pte", "gpte_in_iomem", "check_gpte", "check_gpgd",
    "check_gpmd", "find_spte", "demand_page", "page_writable", "pin_page", "release_pmd",
    "release_pgd", "flush_user_mappings", "guest_pagetable_flush_user", "__guest_pa",
    "guest_pa", "find_pgdir", "new_pgdir", "allocate_switcher_mapping",
    "release_all_pagetables", "guest_pagetable_clear_all", "guest_new_pagetable",
    "__guest_set_pte", "guest_set_pte", "guest_set_pgd", "guest_set_pmd",
    "init_guest_pagetable", "page_table_guest_data_init", "free_guest_pagetable",
    "remove_switcher_percpu_map", "map_switcher_in_guest", "pin_stack_pages",
)

# Where each function sits in the literate narrative of the C (the markers of its comments;
# functions without a marker of their own are listed under the part that explains them).
MARKERS = {
    "spgd_addr": "H:320", "spmd_addr": "H:320", "spte_addr": "H:320", "gpgd_addr": "H:320",
    "gpmd_addr": "H:320", "gpte_addr": "H:320", "get_pfn": "H:350", "gpte_to_spte": "H:340",
    "release_pte": "H:460", "gpte_in_iomem": "H:330", "check_gpte": "H:330", "check_gpgd": "H:330",
    "check_gpmd": "H:330", "find_spte": "H:331", "demand_page": "H:330", "page_writable": "H:360",
    "pin_page": "H:360", "release_pmd": "H:450", "release_pgd": "H:450",
    "flush_user_mappings": "H:445", "guest_pagetable_flush_user": "H:440", "__guest_pa": "H:500",
    "guest_pa": "H:500", "find_pgdir": "H:430", "new_pgdir": "H:435",
    "allocate_switcher_mapping": "H:501", "release_all_pagetables": "H:470",
    "guest_pagetable_clear_all": "H:470", "guest_new_pagetable": "H:430",
    "__guest_set_pte": "H:420", "guest_set_pte": "H:410", "guest_set_pgd": "H:400",
    "guest_set_pmd": "H:400", "init_guest_pagetable": "H:500", "page_table_guest_data_init": "H:508",
    "free_guest_pagetable": "H:500", "remove_switcher_percpu_map": "H:481",
    "map_switcher_in_guest": "H:480", "pin_stack_pages": "H:360",
}
