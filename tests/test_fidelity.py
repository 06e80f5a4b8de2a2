"""Regressions for two places where the model departed from page_tables.c (issue 16), with the
expected values worked out from the C and the kernel's own definitions, never from the model.

1. Kill messages are made by the kernel's kasprintf(), i.e. lib/vsprintf.c (Linux 4.7), not
   glibc.  The rules used below, from vsprintf.c:
   * number(): with '#' (SPECIAL) base 16 always gets "0x" -- also for zero -- and the prefix
     counts in the field width; base 8 gets "0" only for a non-zero value.
   * number(): a signed conversion of a negative value gets '-'; '%i'/'%d' take an int,
     '%li' a long (32 bits here), '%u' an unsigned int, '%lu' an unsigned long.
   * pointer(): a plain '%p' is zero-padded to 2 * sizeof(void *) = 8 hex digits; NULL is
     "(null)" right-aligned in that width (string() pads on the left).
2. drivers/lguest/lg.h defines pmd_flags(x) as pmd_val(x) & ~PAGE_MASK and pmd_pfn(x) as
   pmd_val(x) >> PAGE_SHIFT (likewise pgd_*), whatever the PSE bit says.
"""

import pytest

from lguest_book import lguest as lgm
from lguest_book import page_tables as pt
from lguest_book.guest import Guest
from lguest_book.lguest import kasprintf

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])
V = 0x08048000  # PAE: pgd index 0, pmd index 0x40, pte index 0x48


# --- 1. the kernel's printf ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt, args, text", [
    ("%#lx", (0,), "0x0"),                       # SPECIAL base 16: prefix even for zero (glibc: "0")
    ("%#lx", (0xC0000000,), "0xc0000000"),
    ("%lx", (0,), "0"),                          # no '#': no prefix
    ("%#x", (0xABC,), "0xabc"),
    ("%#X", (0xABC,), "0XABC"),                  # 'X' | locase: upper-case prefix too
    ("%#o", (0,), "0"),                          # base 8: "0" prefix only when non-zero
    ("%#o", (8,), "010"),
    ("%#010lx", (0x1F,), "0x0000001f"),          # the prefix counts in the field width
    ("%08lx", (0xABC,), "00000abc"),
    ("%5u|%-5u|", (7, 7), "    7|7    |"),
    ("%u", (0xFFFFFFFF,), "4294967295"),
    ("%lu", (0x12345,), "74565"),
    ("%i", (0x80000000,), "-2147483648"),        # an int register printed signed
    ("%li", (0xFFFFFFFF,), "-1"),                # long is 32 bits
    ("%d", (-5,), "-5"),
    ("%+d", (5,), "+5"),
    ("%#llx", (0,), "0x0"),
    ("%llx", (1 << 63,), "8000000000000000"),
    ("%p", (0,), "  (null)"),                    # NULL: "(null)" padded to 8
    ("%p", (0x1234,), "00001234"),               # zero-padded to 8 hex digits
    ("%p", (0xC0000000,), "c0000000"),
    ("%s: %c%%", ("x", 0x41), "x: A%"),
])
def test_kasprintf_follows_lib_vsprintf(fmt, args, text):
    assert kasprintf(fmt, *args) == text


@LAYOUTS
def test_pin_page_of_address_zero_kills_with_0x0(pae):
    # SET_STACK(seg, esp=1, pages=1): pin_stack_pages pins esp1 - 1 - 0 = 0, which the
    # Guest does not map: kill_guest(cpu, "bad stack page %#lx", 0) -> "bad stack page 0x0".
    g = Guest(pae=pae, seed=1)
    g.hypercall(7, 0x11 | 1, 1, 1)  # LHCALL_SET_STACK: a ring-1 segment, esp 1, one page
    assert g.dead == "bad stack page 0x0"


@LAYOUTS
def test_guest_pa_of_an_unmapped_zero_kills_with_0x0(pae):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    assert pt.__guest_pa(g.cpu, 0) == (False, 0xFFFFFFFF)   # the C's -1UL
    assert pt.guest_pa(g.cpu, 0) == 0xFFFFFFFF
    assert g.dead == "Bad address 0x0"                       # "Bad address %#lx", 0


@LAYOUTS
def test_lgread_lgwrite_messages_use_the_kernels_hex(pae):
    # A guest of 0 pages: lguest_address_ok(0, len) fails (0 + len > 0 * PAGE_SIZE), so
    # __lgread/__lgwrite kill with "bad read/write address %#lx len %u" of addr 0.
    size = 8 if pae else 4
    g = Guest(pae=pae, seed=1)
    g.lg.pfn_limit = 0
    assert lgm.lgread(g.cpu, 0, "pte_t") == 0
    assert g.dead == f"bad read address 0x0 len {size}"
    h = Guest(pae=pae, seed=1)
    h.lg.pfn_limit = 0
    lgm.lgwrite(h.cpu, 0, "pte_t", 1)
    assert h.dead == f"bad write address 0x0 len {size}"


@LAYOUTS
def test_hypercall_kill_messages(pae):
    g = Guest(pae=pae, seed=1, boot=False)
    g.hypercall(0xFFFFFFFF)                                   # "hypercall %li before INIT"
    assert g.dead == "hypercall -1 before INIT"
    g = Guest(pae=pae, seed=1, boot=False)
    g.hypercall(1, 0xFFFFFFF0)                                # lguest_data still NULL: "%p"
    assert g.dead == "bad guest page   (null)"
    g = Guest(pae=pae, seed=1)
    g.hypercall(99)                                           # "Bad hypercall %li\n"
    assert g.dead == "Bad hypercall 99\n"
    g = Guest(pae=pae, seed=1)
    n = 4 if pae else 1024
    g.hypercall(15, g.current.gpgdir, n + 1)                  # "Attempt to set pgd %u/%u"
    assert g.dead == f"Attempt to set pgd {n + 1}/{n}"
    g = Guest(pae=pae, seed=1)
    g.hypercall(7, 0, 0xC0001000, 1)                          # seg 0: "bad stack segment %i"
    assert g.dead == "bad stack segment 0"


# --- 2. lg.h's pmd_pfn/pmd_flags/pgd_pfn/pgd_flags ---------------------------------------------------
def test_lg_h_accessors_ignore_pse_and_keep_the_high_bits():
    pse = 0x301 << 12 | 0x80 | 0x67
    assert lgm.pmd_pfn(pse) == 0x301                         # not masked to 2 MiB (0x200)
    assert lgm.pmd_flags(pse) == 0xE7                        # only the low 12 bits
    high = 1 << 63 | 0xABC << 44 | 0x123 << 12 | 0x1
    assert lgm.pgd_flags(high) == 0x1                        # ~PAGE_MASK is 0xfff: NX is no flag here
    assert lgm.pgd_pfn(high) == high >> 12                   # every bit above 11, unmasked


def _pse_pmd_guest():
    """A PAE guest whose PMD for V has PSE set and a frame (0x301) that is not 2 MiB aligned;
    in guest page 0x301, at V's PTE index 0x48, a present PTE for frame 0x345."""
    g = Guest(pae=True, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    pmdp = (p.pmd_pages[0] << 12) + 0x40 * 8
    g.write_entry(pmdp, 0x301 << 12 | 0x80 | 0x67)
    g.write_entry((0x301 << 12) + 0x48 * 8, 0x345 << 12 | 0x1)
    return g


def test_gpte_addr_of_a_pse_pmd_uses_the_whole_frame():
    # gpte_addr (PAE): gpage = pmd_pfn(gpmd) << PAGE_SHIFT = 0x301000 (lg.h), + 0x48 * 8.
    g = _pse_pmd_guest()
    assert pt.gpte_addr(g.cpu, 0x301 << 12 | 0x80 | 0x67, V) == 0x301000 + 0x48 * 8
    # High bits are shifted out of the unsigned long gpage.
    assert pt.gpte_addr(g.cpu, 1 << 63 | 0x301 << 12 | 0x67, V) == 0x301000 + 0x48 * 8


def test___guest_pa_through_a_pse_pmd_reads_the_pte_from_that_frame():
    # The C: gpgd present, gpmd present, gpte read from 0x301000 + 0x48 * 8 = 0x345001,
    # present: paddr = pte_pfn(gpte) * PAGE_SIZE | (vaddr & ~PAGE_MASK) = 0x345123.
    g = _pse_pmd_guest()
    assert pt.__guest_pa(g.cpu, V + 0x123) == (True, 0x345123)
    assert pt.guest_pa(g.cpu, V + 0x123) == 0x345123
    assert g.dead is None                                    # the model used to kill: "Bad address ..."


def test_check_gpgd_pae_high_bits_kill_through_the_frame():
    # lg.h: pgd_flags(NX | frame | P) is 0x1 (allowed); pgd_pfn is >= 2**51, beyond pfn_limit.
    g = Guest(pae=True, seed=1)
    assert not pt.check_gpgd(g.cpu, 1 << 63 | 0x300 << 12 | 0x1)
    assert g.dead == "bad page directory entry"
    g = Guest(pae=True, seed=1)
    assert pt.check_gpgd(g.cpu, 0x300 << 12 | 0x1) and g.dead is None


def test_check_gpmd_kills_a_pse_pmd():
    # lg.h: pmd_flags(0x301 << 12 | PSE | 0x67) = 0xe7; 0xe7 & ~_PAGE_TABLE = 0x80: killed.
    g = Guest(pae=True, seed=1)
    assert not pt.check_gpmd(g.cpu, 0x301 << 12 | 0x80 | 0x67)
    assert g.dead == "bad page middle directory entry"
