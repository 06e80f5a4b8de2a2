"""x86 paging as a 32-bit Linux 4.7 kernel sees it: both layouts, the flag bits, entry helpers.

lguest insists that Host and Guest are built with the same CONFIG_X86_PAE setting, so a
layout is a property of the whole machine.  This module offers the two as objects:

* ``NONPAE`` -- two levels: 1024 four-byte PGD entries (4 MiB each), 1024 four-byte PTEs.
* ``PAE``    -- three levels: 4 eight-byte PGD entries (1 GiB each), 512 PMD entries
  (2 MiB each), 512 PTEs; physical addresses are 44 bits wide.

Each layout carries the kernel's helpers as methods with the kernel's names
(``pgd_flags``, ``pte_pfn``, ``pfn_pte``...) so the port in :mod:`lguest_book.page_tables`
reads like the C.  Flag values are the real x86 bit values.

Arithmetic follows the C on a 32-bit machine: ``unsigned long`` is 32 bits (``ulong`` below),
a non-PAE entry is 32 bits, a PAE entry 64 bits.

The modelled host CPU supports global pages (PGE) but, by default, not NX.  So
``__supported_pte_mask`` keeps every bit except NX, and ``pfn_pte`` strips NX from present
protections (under PAE; the non-PAE build has no NX bit at all).  ``layout_for(True,
host_nx=True)`` (``Guest(pae=True, host_nx=True)``) models a host that supports NX instead.
"""

from __future__ import annotations

from . import fmt as _fmt

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = 0xFFFFF000  # ~(PAGE_SIZE - 1) as a 32-bit unsigned long
ULONG_MASK = 0xFFFFFFFF  # unsigned long is 32 bits on this machine


def ulong(value: int) -> int:
    """Truncate to a 32-bit ``unsigned long``, as the C does on assignment."""
    return value & ULONG_MASK


# --- The flag bits (arch/x86/include/asm/pgtable_types.h) -------------------------------
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080  # a large page in a PGD/PMD entry ...
_PAGE_PAT = 0x080  # ... and the PAT bit in a PTE: the same bit
_PAGE_GLOBAL = 0x100
_PAGE_SOFTW1 = 0x200
_PAGE_SOFTW2 = 0x400
_PAGE_SOFTW3 = 0x800
_PAGE_NX_BIT = 1 << 63  # only exists with PAE (64-bit entries)

_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x067

# Kernel protections (4.7: __PAGE_KERNEL_EXEC still includes _PAGE_GLOBAL).
__PAGE_KERNEL_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL
__PAGE_KERNEL = __PAGE_KERNEL_EXEC | _PAGE_NX_BIT
__PAGE_KERNEL_RO = __PAGE_KERNEL & ~_PAGE_RW
__PAGE_KERNEL_RX = __PAGE_KERNEL_EXEC & ~_PAGE_RW
PAGE_KERNEL_RX = __PAGE_KERNEL_RX

# Names for the flag bits, lowest first, for decoding entries.
FLAG_NAMES = (
    (_PAGE_PRESENT, "P"),
    (_PAGE_RW, "RW"),
    (_PAGE_USER, "U"),
    (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"),
    (_PAGE_ACCESSED, "A"),
    (_PAGE_DIRTY, "D"),
    (_PAGE_PSE, "PSE"),
    (_PAGE_GLOBAL, "G"),
    (_PAGE_SOFTW1, "SW1"),
    (_PAGE_SOFTW2, "SW2"),
    (_PAGE_SOFTW3, "SW3"),
    (_PAGE_NX_BIT, "NX"),
)


def _flags_accessor(name: str, mask: int):
    """``entry & mask``, as a function named ``name`` (a Layout's pte_flags or pgd_flags)."""

    def flags(entry: int) -> int:
        return entry & mask  # pte_val(x) & PTE_FLAGS_MASK

    flags.__name__ = flags.__qualname__ = name
    return flags


class Layout:
    """One x86 paging layout (PAE or not), with the kernel's entry helpers as methods.

    The helpers take and return plain integers: an entry *is* its value here, the way
    ``pte_val()`` sees it.
    """

    __slots__ = (
        "pae", "name", "levels", "entry_bytes", "entry_mask", "PTRS_PER_PGD", "PTRS_PER_PMD",
        "PTRS_PER_PTE", "ENTRIES_PER_PAGE", "PGDIR_SHIFT", "PMD_SHIFT", "PGDIR_SIZE", "PMD_SIZE",
        "PHYSICAL_MASK_SHIFT", "PTE_PFN_MASK", "PTE_FLAGS_MASK", "PHYSICAL_PMD_PAGE_MASK",
        "_PAGE_NX", "supported_pte_mask", "CHECK_GPGD_MASK", "phys_mask", "pte_flags", "pgd_flags", "host_nx",
    )

    def __init__(self, pae: bool, host_nx: bool = False):
        self.pae = pae
        self.name = "PAE" if pae else "non-PAE"
        self.levels = 3 if pae else 2
        self.entry_bytes = 8 if pae else 4
        self.entry_mask = (1 << (8 * self.entry_bytes)) - 1
        self.PTRS_PER_PGD = 4 if pae else 1024
        self.PTRS_PER_PMD = 512 if pae else 1
        self.PTRS_PER_PTE = 512 if pae else 1024
        self.ENTRIES_PER_PAGE = PAGE_SIZE // self.entry_bytes
        self.PGDIR_SHIFT = 30 if pae else 22
        self.PMD_SHIFT = 21 if pae else 22  # folded into the PGD without PAE
        self.PGDIR_SIZE = 1 << self.PGDIR_SHIFT
        self.PMD_SIZE = 1 << self.PMD_SHIFT
        self.PHYSICAL_MASK_SHIFT = 44 if pae else 32
        physical_mask = (1 << self.PHYSICAL_MASK_SHIFT) - 1
        # PHYSICAL_PAGE_MASK: (signed long)PAGE_MASK sign-extends before the AND.
        self.PTE_PFN_MASK = physical_mask & ~(PAGE_SIZE - 1)
        self.PTE_FLAGS_MASK = self.entry_mask & ~self.PTE_PFN_MASK
        # pmd_pfn_mask() for a large-page PMD: the frame is PMD_SIZE aligned.
        self.PHYSICAL_PMD_PAGE_MASK = physical_mask & ~(self.PMD_SIZE - 1)
        self._PAGE_NX = _PAGE_NX_BIT if pae else 0
        # The host CPU: global pages yes; NX only if asked for (a host that supports NX, which
        # only a PAE build can use: the non-PAE entry has no NX bit).
        self.host_nx = bool(host_nx and pae)
        self.supported_pte_mask = self.entry_mask if self.host_nx else self.entry_mask & ~self._PAGE_NX
        # page_tables.c: what a Guest PGD entry may contain.
        self.CHECK_GPGD_MASK = _PAGE_PRESENT if pae else _PAGE_TABLE
        self.phys_mask = physical_mask  # phys_addr_t: 32 bits without PAE, 64 (44 used) with
        # pte_flags(pte) and pgd_flags(pgd) are "entry & PTE_FLAGS_MASK": a plain function that
        # holds the mask (an instance attribute, so a call binds no self).  Measured on CPython
        # 3.11, this is cheaper than the int's own bound AND (PTE_FLAGS_MASK.__and__), whose
        # method-wrapper costs ~45 ns a call against ~32 ns.
        self.pte_flags = _flags_accessor("pte_flags", self.PTE_FLAGS_MASK)
        self.pgd_flags = _flags_accessor("pgd_flags", self.PTE_FLAGS_MASK)

    def __repr__(self) -> str:
        return f"<x86 layout {self.name}>"

    # --- index helpers -----------------------------------------------------------------
    def pgd_index(self, vaddr: int) -> int:
        return (vaddr >> self.PGDIR_SHIFT) & (self.PTRS_PER_PGD - 1)

    def pmd_index(self, vaddr: int) -> int:
        return (vaddr >> self.PMD_SHIFT) & (self.PTRS_PER_PMD - 1)

    def pte_index(self, vaddr: int) -> int:
        return (vaddr >> PAGE_SHIFT) & (self.PTRS_PER_PTE - 1)

    # --- flags and frame numbers ---------------------------------------------------------
    # A frame number is an unsigned long, so it is truncated to 32 bits.
    # (pte_flags and pgd_flags are set in __init__: entry & PTE_FLAGS_MASK.)
    def pte_pfn(self, pte: int) -> int:
        return ((pte & self.PTE_PFN_MASK) >> PAGE_SHIFT) & ULONG_MASK

    # The kernel's pgd_flags/pgd_pfn/pmd_flags/pmd_pfn (pgtable_types.h, pgtable.h), used by the
    # Guest kernel and the readers' walks (pgd_flags is set in __init__).  page_tables.c does not
    # see these: drivers/lguest/lg.h replaces them with plain bit arithmetic
    # (lguest_book.lguest.pgd_flags and the others).
    def pgd_pfn(self, pgd: int) -> int:
        return ((pgd & self.PTE_PFN_MASK) >> PAGE_SHIFT) & ULONG_MASK

    def pmd_pfn_mask(self, pmd: int) -> int:
        return self.PHYSICAL_PMD_PAGE_MASK if pmd & _PAGE_PSE else self.PTE_PFN_MASK

    def pmd_flags(self, pmd: int) -> int:  # pmd & pmd_flags_mask(pmd)
        mask = self.PHYSICAL_PMD_PAGE_MASK if pmd & _PAGE_PSE else self.PTE_PFN_MASK
        return pmd & self.entry_mask & ~mask

    def pmd_pfn(self, pmd: int) -> int:  # (pmd & pmd_pfn_mask(pmd)) >> PAGE_SHIFT
        mask = self.PHYSICAL_PMD_PAGE_MASK if pmd & _PAGE_PSE else self.PTE_PFN_MASK
        return ((pmd & mask) >> PAGE_SHIFT) & ULONG_MASK

    # --- making and changing entries -----------------------------------------------------
    def massage_pgprot(self, prot: int) -> int:
        """A present protection keeps only the bits the host CPU supports (so no NX)."""
        if prot & _PAGE_PRESENT:
            prot &= self.supported_pte_mask
        return prot

    def pfn_pte(self, pfn: int, prot: int) -> int:
        # (phys_addr_t)pfn << PAGE_SHIFT: 32 bits wide without PAE, 64 with; then
        # massage_pgprot(prot), written out here because this is on the fault path.
        if prot & _PAGE_PRESENT:
            prot &= self.supported_pte_mask
        return (((pfn << PAGE_SHIFT) & self.phys_mask) | prot) & self.entry_mask

    def mk_pte(self, pfn: int, prot: int) -> int:
        """mk_pte(page, prot): pages are named by their frame number in this model."""
        return self.pfn_pte(pfn, prot)

    @staticmethod
    def pte_mkyoung(pte: int) -> int:
        return pte | _PAGE_ACCESSED

    @staticmethod
    def pte_mkdirty(pte: int) -> int:
        # _PAGE_SOFT_DIRTY is 0 on 32-bit x86, so only the hardware dirty bit is set.
        return pte | _PAGE_DIRTY

    @staticmethod
    def pte_wrprotect(pte: int) -> int:
        return pte & ~_PAGE_RW

    def pte_dirty(self, pte: int) -> int:
        return self.pte_flags(pte) & _PAGE_DIRTY

    # --- decoding, for people ------------------------------------------------------------
    def flag_names(self, entry: int) -> list[str]:
        """Names of the flag bits set in ``entry`` (frame bits excluded)."""
        flags = self.pte_flags(entry)
        names = [name for bit, name in FLAG_NAMES if flags & bit]
        other = flags & ~sum(bit for bit, _ in FLAG_NAMES)
        if other:
            names.append(f"bits {other:#x}")
        return names

    def describe(self, entry: int) -> str:
        """A one-line human reading of an entry: ``pfn 0x01234 P|RW|A`` (the frame as wide as
        the layout's frame numbers)."""
        if not entry:
            return "empty"
        flags = "|".join(self.flag_names(entry)) or "no flags"
        return f"pfn {_fmt.frame(self.pte_pfn(entry), self)} {flags}"

    def split(self, vaddr: int) -> dict:
        """The index fields of a virtual address for this layout (ints that print in hex, as
        :mod:`lguest_book.fmt` prints indices; the offset in a page is three hex digits too)."""
        fields = {"pgd": _fmt.Index(self.pgd_index(vaddr))}
        if self.pae:
            fields["pmd"] = _fmt.Index(self.pmd_index(vaddr))
        fields["pte"] = _fmt.Index(self.pte_index(vaddr))
        fields["offset"] = _fmt.Index(vaddr & (PAGE_SIZE - 1))
        return fields


NONPAE = Layout(pae=False)
PAE = Layout(pae=True)
PAE_NX_HOST = Layout(pae=True, host_nx=True)  # the PAE layout on a host CPU that supports NX


def layout_for(pae: bool, host_nx: bool = False) -> Layout:
    """The layout; ``host_nx=True`` picks a host CPU that supports NX (matters only with PAE)."""
    if not isinstance(pae, bool):
        raise TypeError(f"pae must be True or False, not {pae!r}")
    if pae and host_nx:
        return PAE_NX_HOST
    return PAE if pae else NONPAE
