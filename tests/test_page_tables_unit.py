"""Unit tests of every function of page_tables.c's Python twin, in both layouts.

Expected values are worked out by hand from the C and the x86 formats (the comments say how),
never by calling the function under test.  Layout facts used:
  non-PAE: PGDIR_SHIFT 22, 1024 entries of 4 bytes, CHECK_GPGD_MASK = _PAGE_TABLE (0x67);
  PAE:     PGDIR_SHIFT 30 (4 entries), PMD_SHIFT 21, 512 entries of 8 bytes,
           CHECK_GPGD_MASK = _PAGE_PRESENT.
Flags: P 0x1, RW 0x2, U 0x4, A 0x20, D 0x40, PSE 0x80, G 0x100.
"""

import pytest

from lguest_book import inspect as li
from lguest_book import page_tables as pt
from lguest_book.guest import Guest
from lguest_book.host import KernelOops
from lguest_book.lguest import lgread, lgwrite

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])
V = 0x08048000  # pgd index 0x20 (non-PAE) / 0 (PAE); pmd index 0x40; pte index 0x48


def user_guest(pae, **kw):
    g = Guest(pae=pae, seed=1, **kw)
    p = g.new_process("p")
    g.switch_to(p)
    return g, p


def shadow_pte(g, vaddr=V):
    walk = li.walk_shadow(g, vaddr)
    return walk[-1].value if walk and walk[-1].level == "pte" else None


# --- H:320 the address helpers -----------------------------------------------------------------
@LAYOUTS
def test_spgd_addr_points_into_the_slots_top_level(pae):
    g, _ = user_guest(pae)
    slot = g.cpu.cpu_pgd
    frame = li.pgdir_cache(g)[slot]["frame"]
    assert pt.spgd_addr(g.cpu, slot, V) == (frame, 0 if pae else 0x20)
    assert pt.spgd_addr(g.cpu, slot, 0xC0000000) == (frame, 3 if pae else 0x300)
    with pytest.raises(ValueError, match="i="):
        pt.spgd_addr(g.cpu, 4, V)


def test_spmd_addr_pae_only_and_bugs_on_a_missing_top_entry():
    g, _ = user_guest(True)
    assert pt.spmd_addr(g.cpu, 0x1234 << 12 | 0x1, V) == (0x1234, 0x40)   # (V >> 21) & 511
    with pytest.raises(KernelOops):
        pt.spmd_addr(g.cpu, 0x1234 << 12, V)                               # not present: BUG_ON
    n, _ = user_guest(False)
    with pytest.raises(ValueError, match="PAE"):
        pt.spmd_addr(n.cpu, 0x1234 << 12 | 1, V)


@LAYOUTS
def test_spte_addr_follows_the_entry_and_bugs_when_not_present(pae):
    g, _ = user_guest(pae)
    g.map(V, 0x300)
    g.touch(V, user=True)
    top = g.host.deref(pt.spgd_addr(g.cpu, g.cpu.cpu_pgd, V))
    walk = li.walk_shadow(g, V)
    pte_page = walk[-2].value >> 12 if not pae else (walk[-2].value & 0xFFFFFFFFFF000) >> 12
    assert pt.spte_addr(g.cpu, top, V) == (pte_page, 0x48)                 # (V >> 12) & (N - 1)
    with pytest.raises(KernelOops):
        pt.spte_addr(g.cpu, 0, V)


@LAYOUTS
def test_gpgd_addr_is_the_guest_top_level_plus_index_times_entry_size(pae):
    g, p = user_guest(pae)
    assert pt.gpgd_addr(g.cpu, V) == p.gpgdir + (0 if pae else 0x20 * 4)
    assert pt.gpgd_addr(g.cpu, 0xC0000000) == p.gpgdir + (3 * 8 if pae else 0x300 * 4)


def test_gpmd_addr_pae():
    assert pt.gpmd_addr(0x555 << 12 | 1, V) == 0x555000 + 0x40 * 8
    with pytest.raises(KernelOops):
        pt.gpmd_addr(0x555 << 12, V)


@LAYOUTS
def test_gpte_addr(pae):
    g, _ = user_guest(pae)
    entry = 0x777 << 12 | (0x67 if not pae else 0x67)
    assert pt.gpte_addr(g.cpu, entry, V) == 0x777000 + 0x48 * (8 if pae else 4)
    with pytest.raises(KernelOops):
        pt.gpte_addr(g.cpu, 0x777 << 12, V)


# --- H:350 get_pfn, H:340 gpte_to_spte, H:460 release_pte ----------------------------------------
@LAYOUTS
def test_get_pfn_pins_a_launcher_page_or_returns_minus_one(pae):
    g, _ = user_guest(pae)
    mm = g.lg.launcher
    base = g.lg.mem_base >> 12
    frame = pt.get_pfn(mm, base + 0x300, 0)
    assert li.owner(g, frame) == ("guest", 0x300)
    before = g.host.page_count(frame)
    assert pt.get_pfn(mm, base + 0x300, 1) == frame
    assert g.host.page_count(frame) == before + 1                          # a reference per pin
    assert pt.get_pfn(mm, base + g.lg.pfn_limit, 0) == 0xFFFFFFFF         # past the mapping
    mm.protect(0x301, writable=False)
    assert pt.get_pfn(mm, base + 0x301, 1) == 0xFFFFFFFF                  # write pin of RO page
    assert pt.get_pfn(mm, base + 0x301, 0) != 0xFFFFFFFF


@LAYOUTS
def test_gpte_to_spte_keeps_flags_but_global_and_swaps_the_frame(pae):
    g, _ = user_guest(pae)
    spte = pt.gpte_to_spte(g.cpu, 0x300 << 12 | 0x167, 1)                  # P|RW|U|A|D|G
    frame = spte >> 12 if not pae else (spte & 0xFFFFFFFFFF000) >> 12
    assert li.owner(g, frame) == ("guest", 0x300)
    assert spte & 0xFFF == 0x067                                           # G dropped
    assert g.dead is None


@LAYOUTS
def test_gpte_to_spte_failure_kills_and_leaves_no_flags(pae):
    g, _ = user_guest(pae)
    g.lg.launcher.unmap(0x300)
    spte = pt.gpte_to_spte(g.cpu, 0x300 << 12 | 0x67, 0)
    assert g.dead == "failed to get page 768"                              # %lu of 0x300
    # pfn_pte(-1UL, 0): the frame shifted into place, in 32 bits without PAE, 44 with
    assert spte == (0xFFFFF000 if not pae else 0xFFFFFFFF000)


@LAYOUTS
def test_release_pte_puts_the_page_only_when_present(pae):
    g, _ = user_guest(pae)
    frame = pt.get_pfn(g.lg.launcher, (g.lg.mem_base >> 12) + 0x300, 0)
    count = g.host.page_count(frame)
    pt.release_pte(g.host, frame << 12)                                    # not present
    assert g.host.page_count(frame) == count
    pt.release_pte(g.host, frame << 12 | 1)
    assert g.host.page_count(frame) == count - 1


# --- H:330 the checks -----------------------------------------------------------------------------
@LAYOUTS
def test_gpte_in_iomem(pae):
    g, _ = user_guest(pae, mem_pages=4096, device_pages=256)
    assert not pt.gpte_in_iomem(g.cpu, 0xFFF << 12 | 1)                    # last page of memory
    assert pt.gpte_in_iomem(g.cpu, 0x1000 << 12 | 1)                       # first device page
    assert pt.gpte_in_iomem(g.cpu, 0x10FF << 12 | 1)                       # last device page
    assert not pt.gpte_in_iomem(g.cpu, 0x1100 << 12 | 1)                   # device_limit itself
    assert not pt.gpte_in_iomem(g.cpu, 0x1000 << 12 | 0x81)                # PSE: never I/O


@LAYOUTS
def test_check_gpte(pae):
    g, _ = user_guest(pae)
    assert pt.check_gpte(g.cpu, 0xFFF << 12 | 0x67) and g.dead is None
    assert not pt.check_gpte(g.cpu, 0x300 << 12 | 0x81)                    # PSE
    assert g.dead == "bad page table entry"
    h, _ = user_guest(pae)
    assert not pt.check_gpte(h.cpu, 0x1000 << 12 | 0x1)                    # pfn == pfn_limit
    assert h.dead == "bad page table entry"


@LAYOUTS
def test_check_gpgd(pae):
    ok = 0x300 << 12 | (0x67 if not pae else 0x1)                         # within CHECK_GPGD_MASK
    g, _ = user_guest(pae)
    assert pt.check_gpgd(g.cpu, ok) and g.dead is None
    g, _ = user_guest(pae)
    assert not pt.check_gpgd(g.cpu, ok | (0x100 if not pae else 0x2))      # G / RW not allowed
    assert g.dead == "bad page directory entry"
    g, _ = user_guest(pae)
    assert not pt.check_gpgd(g.cpu, 0x1000 << 12 | 1)                      # beyond guest memory
    assert g.dead == "bad page directory entry"


def test_check_gpmd_pae():
    g, _ = user_guest(True)
    assert pt.check_gpmd(g.cpu, 0x300 << 12 | 0x67)
    assert not pt.check_gpmd(g.cpu, 0x300 << 12 | 0x167)
    assert g.dead == "bad page middle directory entry"
    h, _ = user_guest(True)
    assert not pt.check_gpmd(h.cpu, 0x1000 << 12 | 0x67)
    assert h.dead == "bad page middle directory entry"
    with pytest.raises(ValueError, match="PAE"):
        pt.check_gpmd(Guest(pae=False).cpu, 0x67)


# --- H:331 find_spte ------------------------------------------------------------------------------
@LAYOUTS
def test_find_spte_looks_or_allocates(pae):
    g, _ = user_guest(pae)
    assert pt.find_spte(g.cpu, 0x50000000, False, 0, 0) is None            # nothing there
    ptr = pt.find_spte(g.cpu, 0x50000000, True, 0x67, 0x67)
    assert ptr is not None and ptr[1] == 0                                 # pte index of 0x50000000
    walk = li.walk_shadow(g, 0x50000000)
    if pae:
        assert walk[1].value & 0xFFF == 0x67                              # the pmd got pmd_flags
    else:
        assert walk[0].value & 0xFFF == 0x67                              # the pgd got pgd_flags
    assert walk[-1].value == 0


@LAYOUTS
def test_find_spte_out_of_memory(pae):
    g, _ = user_guest(pae)
    g.host.fail_allocations(1)
    # PAE: the top-level entry for 0x50000000 already exists (PDPT entry 1), so the mid level fails
    pdpt_present = pae and li.walk_shadow(g, 0x50000000)[0].present
    assert pt.find_spte(g.cpu, 0x50000000, True, 1, 0x67) is None
    assert g.dead == ("out of memory allocating pmd page" if pdpt_present else "out of memory allocating pte page")


# --- H:330 demand_page ----------------------------------------------------------------------------
@LAYOUTS
def test_demand_page_read_maps_read_only_and_writes_back_accessed(pae):
    g, _ = user_guest(pae)
    g.set_pte(V, 0x300 << 12 | 0x7)                                        # P|RW|U, clean
    assert pt.demand_page(g.cpu, V, 4) == (True, 0)
    assert g.guest_pte(V) == 0x300 << 12 | 0x27                            # + Accessed
    assert shadow_pte(g) & 0xFFF == 0x25                                   # P|U|A: RW removed
    assert pt.demand_page(g.cpu, V, 6) == (True, 0)
    assert g.guest_pte(V) == 0x300 << 12 | 0x67                            # + Dirty
    assert shadow_pte(g) & 0xFFF == 0x67


@LAYOUTS
def test_demand_page_refusals_leave_the_guest_alive(pae):
    g, _ = user_guest(pae)
    assert pt.demand_page(g.cpu, g.host.switcher_addr, 0) == (False, 0)    # the Switcher
    assert pt.demand_page(g.cpu, 0x50000000, 0) == (False, 0)              # no guest mapping
    g.set_pte(V, 0x300 << 12 | 0x5)                                        # P|U read-only
    assert pt.demand_page(g.cpu, V, 6) == (False, 0)                       # write
    g.set_pte(V, 0x300 << 12 | 0x3)                                        # P|RW kernel
    assert pt.demand_page(g.cpu, V, 4) == (False, 0)                       # user
    g.set_pte(V, 0x300 << 12)                                              # not present
    assert pt.demand_page(g.cpu, V, 0) == (False, 0)
    assert g.dead is None


@LAYOUTS
def test_demand_page_io_memory_returns_its_address(pae):
    g, _ = user_guest(pae)
    g.set_pte(V, 0x1004 << 12 | 0x7)                                       # pfn_limit + 4
    assert pt.demand_page(g.cpu, V + 0x123, 4) == (False, 0x1004123)       # frame | offset
    assert g.dead is None


@LAYOUTS
def test_demand_page_kills_for_bad_entries(pae):
    g, _ = user_guest(pae)
    g.set_pte(V, 0x2000 << 12 | 0x7)                                       # beyond device_limit
    assert pt.demand_page(g.cpu, V, 4) == (False, 0)
    assert g.dead == "bad page table entry"
    g, p = user_guest(pae)
    g.map(V, 0x300)
    top = li.walk_guest(g, V)
    if pae:  # corrupt the mid-level entry: RW|U|A|D|G is outside _PAGE_TABLE
        g.write_entry(top[1].where, top[1].value | 0x100)
        assert pt.demand_page(g.cpu, V, 4) == (False, 0)
        assert g.dead == "bad page middle directory entry"
    else:
        g.write_entry(top[0].where, top[0].value | 0x100)
        assert pt.demand_page(g.cpu, V, 4) == (False, 0)
        assert g.dead == "bad page directory entry"


def test_demand_page_pae_refuses_a_missing_mid_level():
    g, p = user_guest(True)
    g.map(V, 0x300)
    mid = li.walk_guest(g, V)[1]
    g.write_entry(mid.where, 0)
    assert pt.demand_page(g.cpu, V, 4) == (False, 0) and g.dead is None


@LAYOUTS
def test_demand_page_in_linear_mode_maps_the_same_page_number(pae):
    g = Guest(pae=pae, seed=1, boot=False)
    assert pt.demand_page(g.cpu, 0x00345000, 0) == (True, 0)
    spte = shadow_pte(g, 0x00345000)
    frame = spte >> 12 if not pae else (spte & 0xFFFFFFFFFF000) >> 12
    assert li.owner(g, frame) == ("guest", 0x345)
    assert spte & 0xFFF == 0x21                                            # invented P|RW|A: read -> RO


@LAYOUTS
def test_demand_page_out_of_memory_kills(pae):
    g, _ = user_guest(pae)
    g.map(0x50000000, 0x300)
    g.host.fail_allocations(1)
    assert pt.demand_page(g.cpu, 0x50000000, 4) == (False, 0)
    assert g.dead.startswith("out of memory allocating")


@LAYOUTS
def test_demand_page_rejects_nonsense_from_api_users(pae):
    g, _ = user_guest(pae)
    for bad in (dict(vaddr=-1), dict(vaddr=1 << 32), dict(errcode=0x100)):
        args = dict(cpu=g.cpu, vaddr=V, errcode=0) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            pt.demand_page(**args)
    with pytest.raises(TypeError, match="cpu"):
        pt.demand_page(g, V, 0)


# --- H:360 page_writable, pin_page, pin_stack_pages -----------------------------------------------
@LAYOUTS
def test_page_writable_and_pin_page(pae):
    g, _ = user_guest(pae)
    assert not pt.page_writable(g.cpu, g.host.switcher_addr + 0x1000)
    g.map(V, 0x300, accessed=False)
    assert not pt.page_writable(g.cpu, V)                                  # no shadow PTE
    g.touch(V, user=True)
    assert not pt.page_writable(g.cpu, V)                                  # read-only shadow
    pt.pin_page(g.cpu, V)                                                  # a kernel write fault
    assert pt.page_writable(g.cpu, V) and g.guest_pte(V) & 0x40
    pt.pin_page(g.cpu, 0x50000000)
    assert g.dead == "bad stack page 0x50000000"


@LAYOUTS
def test_pin_stack_pages_pins_from_the_top_down(pae):
    g = Guest(pae=pae, seed=1, stack_pages=2)
    g.flush_all()
    esp1 = g.cpu.esp1
    assert all(pt.page_writable(g.cpu, esp1 - 1 - i * 4096) for i in range(2))
    g.cpu.esp1 = 0x50001000                                                # a stack the Guest never mapped
    pt.pin_stack_pages(g.cpu)
    assert g.dead == "bad stack page 0x50000fff"                           # esp1 - 1: the top page first


# --- H:450 release_pmd / release_pgd, H:445 flushing -----------------------------------------------
def test_release_pmd_pae_frees_the_pte_page():
    g, _ = user_guest(True)
    g.map(V, 0x300)
    g.touch(V, user=True)
    walk = li.walk_shadow(g, V)
    pte_page = (walk[1].value & 0xFFFFFFFFFF000) >> 12
    data = (walk[2].value & 0xFFFFFFFFFF000) >> 12
    refs = g.host.page_count(data)
    pt.release_pmd(g.host, walk[1].where)
    assert g.host.deref(walk[1].where) == 0
    assert g.host.is_free(pte_page) and g.host.page_count(data) == refs - 1
    pt.release_pmd(g.host, walk[1].where)                                  # not present: no-op
    with pytest.raises(ValueError):
        pt.release_pmd(Guest(pae=False).host, (1, 0))


@LAYOUTS
def test_release_pgd_releases_everything_below(pae):
    g, _ = user_guest(pae)
    g.map(V, 0x300)
    g.touch(V, user=True)
    spgd = pt.spgd_addr(g.cpu, g.cpu.cpu_pgd, V)
    data = li.compare(g, V, 1)[0]["host_frame"]
    refs = g.host.page_count(data)
    pt.release_pgd(g.host, spgd)
    assert g.host.deref(spgd) == 0 and g.host.page_count(data) == refs - 1
    pt.release_pgd(g.host, spgd)                                           # idempotent


@LAYOUTS
def test_flush_user_mappings_keeps_the_kernel_part(pae):
    g, _ = user_guest(pae)
    g.map(V, 0x300)
    g.touch(V, user=True)
    g.touch(0xC0100000)
    pt.guest_pagetable_flush_user(g.cpu)
    assert shadow_pte(g, V) in (None, 0)
    assert li.walk_shadow(g, 0xC0100000)[-1].present


# --- the pgdir cache ------------------------------------------------------------------------------
@LAYOUTS
def test_find_pgdir(pae):
    g, p = user_guest(pae)
    assert pt.find_pgdir(g.lg, p.gpgdir) == g.cpu.cpu_pgd
    assert pt.find_pgdir(g.lg, 0x7777000) == 4                             # ARRAY_SIZE: not found


@LAYOUTS
def test_new_pgdir_takes_prandom_modulo_four(pae):
    # boot takes two values (the first shadow top level and swapper); then ours
    g = Guest(pae=pae, prandom=[1, 2, 7, 6])
    assert pt.new_pgdir(g.cpu, 0x300000) == (3, True)                     # 7 % 4: an unused slot
    c = li.pgdir_cache(g)[3]
    assert c["gpgdir"] == 0x300000 and c["last_host_cpu"] == -1
    slot, blank = pt.new_pgdir(g.cpu, 0x301000)                            # 6 % 4 = 2: swapper's
    assert (slot, blank) == (2, False)
    assert li.pgdir_cache(g)[2]["gpgdir"] == 0x301000


@LAYOUTS
def test_new_pgdir_allocation_failure_reuses_the_current_slot(pae):
    g = Guest(pae=pae, prandom=[1, 2, 0])
    g.host.fail_allocations(1)
    assert pt.new_pgdir(g.cpu, 0x300000) == (g.cpu.cpu_pgd, False)
    assert g.dead is None


@LAYOUTS
def test_allocate_switcher_mapping(pae):
    g, _ = user_guest(pae)
    code = g.host.lg_switcher_pages[0]
    spte = shadow_pte(g, g.host.switcher_addr)
    frame = spte >> 12 if not pae else (spte & 0xFFFFFFFFFF000) >> 12
    assert frame == code and spte & 0xFFF == 0x161                        # PAGE_KERNEL_RX
    refs = g.host.page_count(code)
    assert pt.allocate_switcher_mapping(g.cpu)                             # already mapped: no new ref
    assert g.host.page_count(code) == refs


@LAYOUTS
def test_release_all_and_clear_all(pae):
    g, _ = user_guest(pae)
    g.map(V, 0x300)
    g.touch(V, user=True)
    pt.release_all_pagetables(g.lg)
    for c in li.pgdir_cache(g):
        if c["allocated"]:
            assert li.shadow_mappings(g, c["slot"]) == {}
            assert not c["switcher_mapped"] and c["last_host_cpu"] == -1
    pt.guest_pagetable_clear_all(g.cpu)
    left = sorted(li.shadow_mappings(g))
    assert left == sorted([(g.cpu.esp1 - 1 - i * 4096) & ~0xFFF for i in range(2)] + [g.host.switcher_addr])


@LAYOUTS
def test_clear_all_kills_when_the_switcher_cannot_be_mapped(pae):
    g = Guest(pae=pae, seed=1, stack_pages=0)
    g.host.fail_allocations(1)
    pt.guest_pagetable_clear_all(g.cpu)
    assert g.dead.startswith("out of memory allocating")                   # find_spte's kill comes first


# --- H:430 guest_new_pagetable --------------------------------------------------------------------
@LAYOUTS
def test_guest_new_pagetable(pae):
    g = Guest(pae=pae, seed=1, boot=False)
    assert g.cpu.linear_pages
    pt.guest_new_pagetable(g.cpu, 0x200000)
    assert not g.cpu.linear_pages
    slot = g.cpu.cpu_pgd
    assert li.pgdir_cache(g)[slot]["gpgdir"] == 0x200000 and li.pgdir_cache(g)[slot]["switcher_mapped"]
    draws = len(g.lg.prandom_u32.drawn)
    pt.guest_new_pagetable(g.cpu, 0x200000)                                # cached: no new_pgdir
    assert g.cpu.cpu_pgd == slot and len(g.lg.prandom_u32.drawn) == draws


# --- H:420/H:410/H:400 the Guest changes entries --------------------------------------------------
@LAYOUTS
def test___guest_set_pte_paths(pae):
    g, _ = user_guest(pae)
    slot = g.cpu.cpu_pgd
    pt.__guest_set_pte(g.cpu, slot, 0x50000000, 0x300 << 12 | 0x27)        # no shadow table there
    assert shadow_pte(g, 0x50000000) in (None, 0)
    g.map(V, 0x300)
    g.touch(V, user=True)
    pt.__guest_set_pte(g.cpu, slot, V + 0x1000, 0x301 << 12 | 0x27)        # accessed: mapped now
    assert shadow_pte(g, V + 0x1000) & 0xFFF == 0x27                       # RW kept (the flaw)
    pt.__guest_set_pte(g.cpu, slot, V + 0x1000, 0x301 << 12 | 0x07)        # clean: dropped
    assert shadow_pte(g, V + 0x1000) == 0
    pt.__guest_set_pte(g.cpu, slot, V + 0x1000, 0x1001 << 12 | 0x27)       # I/O memory: dropped
    assert shadow_pte(g, V + 0x1000) == 0 and g.dead is None
    old = shadow_pte(g, V)
    pt.__guest_set_pte(g.cpu, slot, V, 0x2000 << 12 | 0x27)                # bad: killed, old left
    assert g.dead == "bad page table entry" and shadow_pte(g, V) == old


@LAYOUTS
def test_guest_set_pte_kernel_user_and_switcher(pae):
    g, p = user_guest(pae)
    q = g.new_process("q")
    g.touch(0xC0100000)
    g.switch_to(q)
    g.touch(0xC0100000)
    calls = []
    real = pt.__guest_set_pte
    pt.__guest_set_pte = lambda cpu, idx, vaddr, gpte: (calls.append(idx), real(cpu, idx, vaddr, gpte))
    try:
        pt.guest_set_pte(g.cpu, g.swapper.gpgdir, 0xC0100000, 0x380 << 12 | 0x163)
        assert sorted(calls) == [s["slot"] for s in li.pgdir_cache(g) if s["allocated"]]
        calls.clear()
        pt.guest_set_pte(g.cpu, p.gpgdir, V, 0x300 << 12 | 0x67)
        assert calls == [pt.find_pgdir(g.lg, p.gpgdir)]
        calls.clear()
        pt.guest_set_pte(g.cpu, 0x7777000, V, 0x300 << 12 | 0x67)          # not cached
        assert calls == []
    finally:
        pt.__guest_set_pte = real
    pt.guest_set_pte(g.cpu, p.gpgdir, g.host.switcher_addr, 0)
    assert g.dead == "attempt to set pte into Switcher pages"


@LAYOUTS
def test_guest_set_pgd_bound_quirk_and_release(pae):
    g, p = user_guest(pae)
    n = 4 if pae else 1024
    pt.guest_set_pgd(g.lg, p.gpgdir, n + 1)
    assert g.dead == f"Attempt to set pgd {n + 1}/{n}"
    g, p = user_guest(pae)
    g.map(V, 0x300)
    g.touch(V, user=True)
    pt.guest_set_pgd(g.lg, p.gpgdir, 0 if pae else 0x20)
    assert shadow_pte(g, V) is None and g.dead is None
    assert li.pgdir_cache(g)[g.cpu.cpu_pgd]["last_host_cpu"] == -1
    pt.guest_set_pgd(g.lg, 0x7777000, 1)                                   # not cached: nothing
    assert g.dead is None


def test_guest_set_pmd_clears_everything_pae_only():
    g, _ = user_guest(True)
    g.map(V, 0x300)
    g.touch(V, user=True)
    pt.guest_set_pmd(g.lg, 0, 0)
    assert shadow_pte(g, V) in (None, 0)
    with pytest.raises(ValueError, match="PAE"):
        pt.guest_set_pmd(Guest(pae=False).lg, 0, 0)


# --- H:500/H:508 setting up and tearing down ------------------------------------------------------
@LAYOUTS
def test_init_and_guest_data_init(pae):
    g = Guest(pae=pae, seed=1)
    assert g.lguest_data()["reserve_mem"] == (0x400000 if not pae else 0x200000)  # ~switcher_addr + 1
    assert g.lg.kernel_address == 0xC0000000
    h = Guest(pae=pae, seed=1, boot=False, kernel_address=0xFFC00000 if not pae else 0xFFE00000)
    h.write_phys(0x200000 + 8, h.kernel_address.to_bytes(4, "little"))
    h.hypercall(1, 0x200000)
    assert h.dead == f"bad kernel address {h.kernel_address:#x}"


@LAYOUTS
def test_free_guest_pagetable_returns_every_reference(pae):
    g, _ = user_guest(pae)
    for i in range(8):
        g.map(V + i * 4096, 0x300 + i)
        g.touch(V + i * 4096, write=True, user=True)
    g.shutdown()
    held = {f: c for f, (c, who) in li.refcounts(g).items() if who[0] not in ("guest",)}
    assert held == {f: 1 for f in g.host.lg_switcher_pages}


# --- H:481/H:480 the Switcher's per-CPU pages ----------------------------------------------------
@LAYOUTS
def test_map_switcher_in_guest_and_remove(pae):
    g = Guest(pae=pae, seed=1, nr_cpus=2)
    g.touch(0xC0100000)                                                    # enters on CPU 0
    base = g.host.switcher_addr
    regs = shadow_pte(g, base + 0x1000)
    state = shadow_pte(g, base + 0x2000)
    assert regs & 0xFFF == 0x063 and state & 0xFFF == 0x061                # no Global bit
    assert li.owner(g, (regs & 0xFFFFFFFFFF000) >> 12) == ("regs", 0)
    assert li.owner(g, (state & 0xFFFFFFFFFF000) >> 12) == ("switcher", 2)
    slot = g.cpu.cpu_pgd
    g.host.current_cpu = 1
    pt.map_switcher_in_guest(g.cpu)
    assert shadow_pte(g, base + 0x1000) == 0 and shadow_pte(g, base + 0x3000) & 0xFFF == 0x063
    assert li.pgdir_cache(g)[slot]["last_host_cpu"] == 1
    pt.remove_switcher_percpu_map(g.cpu, 1)
    assert shadow_pte(g, base + 0x3000) == 0 and shadow_pte(g, base + 0x4000) == 0
    with pytest.raises(ValueError, match="i="):
        pt.remove_switcher_percpu_map(g.cpu, 2)
    g.lg.pgdirs[slot].switcher_mapped = False
    with pytest.raises(KernelOops):
        pt.map_switcher_in_guest(g.cpu)                                    # BUG_ON


# --- lgread / lgwrite (core.c) ------------------------------------------------------------------
@LAYOUTS
def test_lgread_lgwrite_bounds(pae):
    g, _ = user_guest(pae)
    size = 8 if pae else 4
    top = g.lg.pfn_limit * 4096
    lgwrite(g.cpu, top - size, "pte_t", 0x1234)
    assert lgread(g.cpu, top - size, "pte_t") == 0x1234 and g.dead is None
    assert lgread(g.cpu, top - size + 1, "pte_t") == 0
    assert g.dead == f"bad read address {top - size + 1:#x} len {size}"
    h, _ = user_guest(pae)
    lgwrite(h.cpu, 0xFFFFFFFE, "pte_t", 1)                                 # wraps: refused
    assert h.dead == f"bad write address 0xfffffffe len {size}"


def test_gpte_to_spte_drops_high_flag_bits_under_pae():
    """Regression (found by the C referee): gpte_to_spte() holds the flags in an unsigned
    long, so under PAE bits 32..63 of the Guest's flags (NX, software bits) never reach the
    shadow PTE."""
    g, _ = user_guest(True)
    spte = pt.gpte_to_spte(g.cpu, (1 << 62) | (1 << 52) | 0x300 << 12 | 0x27, 0)
    assert spte >> 44 == 0 and spte & 0xFFF == 0x27
