"""The exercise engine: swapping functions into the model, differential checks, time limits."""

import sys
import time

import pytest

from lguest_book import exercises as ex
from lguest_book import page_tables as pt
from lguest_book.guest import Guest


def test_every_chapter_1_to_8_has_a_graded_exercise_and_the_reference_passes():
    chapters = sorted({e.chapter for e in ex.EXERCISES.values()})
    assert chapters == [1, 2, 3, 4, 5, 6, 7, 8]
    for eid, e in ex.EXERCISES.items():
        ref = e.reference_impl or ex.reference(e.target)
        report = ex.evaluate(eid, ref)
        assert report.ok, str(report)
        assert report.total >= 1


def test_swap_reaches_every_caller_and_is_always_restored():
    original = pt.gpte_to_spte
    calls = []

    def spy(cpu, gpte, write):
        calls.append(gpte)
        return original(cpu, gpte, write)

    g = Guest(seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    g.map(0x08048000, 0x300, accessed=False)
    with ex.use("gpte_to_spte", spy):
        assert pt.gpte_to_spte is spy
        assert g.touch(0x08048000, user=True).outcome == "ok"  # through hypercalls -> demand_page
    assert pt.gpte_to_spte is original
    assert calls and calls[-1] >> 12 == 0x300
    with pytest.raises(RuntimeError):
        with ex.use("gpte_to_spte", spy):
            raise RuntimeError("boom")
    assert pt.gpte_to_spte is original
    with pytest.raises(ValueError, match="not a function of page_tables.c"):
        ex.swap("no_such_function", spy)
    with pytest.raises(TypeError):
        ex.swap("gpte_to_spte", 42)


def test_a_wrong_answer_fails_with_a_readable_difference():
    ref = ex.reference("gpte_to_spte")

    def keeps_global(cpu, gpte, write):  # forgets to drop _PAGE_GLOBAL
        L = cpu.lg.x86
        frame = pt.get_pfn(cpu.lg.launcher, (cpu.lg.mem_base >> 12) + L.pte_pfn(gpte), write)
        return L.pfn_pte(frame, L.pte_flags(gpte))

    report = ex.evaluate("ch2-gpte-to-spte", keeps_global)
    assert not report.ok and report.passed < report.total
    assert any("0x00301125" in f for f in report.failures)  # the case: gpte_to_spte(0x00301125, write=0)
    with pytest.raises(AssertionError, match="ch2-gpte-to-spte"):
        ex.check("ch2-gpte-to-spte", keeps_global)
    assert pt.gpte_to_spte is ref


def test_crashes_wrong_arity_and_stubs_fail_cleanly():
    def stub(cpu, vaddr):
        raise NotImplementedError()

    report = ex.evaluate("ch8-guest-pa", stub)
    assert not report.ok and "NotImplementedError" in report.failures[0]
    report = ex.evaluate("ch1-gpte-addr", lambda cpu, vaddr: 0)
    assert report.failures == ["gpte_addr takes 3 arguments; yours takes 2"]
    report = ex.evaluate("ch3-page-writable", "not a function")
    assert not report.ok

    def recurses(cpu, gpte, write):
        return pt.gpte_to_spte(cpu, gpte, write)  # calls itself once swapped in

    report = ex.evaluate("ch2-gpte-to-spte", recurses)
    assert any("RecursionError" in f for f in report.failures)


@pytest.mark.parametrize("kind", ["python loop", "blocked in C"])
def test_an_endless_answer_is_stopped_by_the_time_limit(kind):
    def forever(cpu, vaddr):
        if kind == "python loop":
            n = 0
            while True:
                n += 1
        time.sleep(3600)

    start = time.monotonic()
    report = ex.evaluate("ch3-page-writable", forever, time_limit_s=0.5)
    assert time.monotonic() - start < 5
    assert not report.ok and "time limit" in report.failures[-1]


def test_an_endless_answer_that_swallows_exceptions_is_still_stopped():
    def stubborn(cpu, vaddr):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - the point of the test
                pass

    start = time.monotonic()
    report = ex.evaluate("ch3-page-writable", stubborn, time_limit_s=0.5)
    assert time.monotonic() - start < 5
    assert not report.ok and "time limit" in report.failures[-1]


def test_the_time_limit_holds_outside_the_main_thread_too():
    import threading

    def forever(cpu, vaddr):
        while True:
            pass

    reports = []
    worker = threading.Thread(target=lambda: reports.append(ex.evaluate("ch3-page-writable", forever, time_limit_s=0.5)))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert not reports[0].ok and "time limit" in reports[0].failures[-1]


def test_the_answer_runs_under_the_clock_and_the_tracer_is_gone_afterwards():
    seen = []
    model_page_writable = ex.reference("page_writable")

    def answer(cpu, vaddr):
        seen.append(sys.gettrace() is not None)
        return model_page_writable(cpu, vaddr)

    assert ex.evaluate("ch3-page-writable", answer).ok
    assert seen and all(seen)
    assert sys.gettrace() is None


def test_hidden_checks_cover_pae_and_hostile_guests():
    visible = ex.evaluate("ch1-gpte-addr", ex.reference("gpte_addr"))
    hidden = ex.evaluate("ch1-gpte-addr", ex.reference("gpte_addr"), hidden=True)
    assert hidden.total > visible.total

    def no_pae(cpu, gentry, vaddr):  # right for 2-level tables only
        if cpu.lg.x86.pae:
            return 0
        return ex.reference("gpte_addr")(cpu, gentry, vaddr)

    assert ex.evaluate("ch1-gpte-addr", no_pae).ok
    assert not ex.evaluate("ch1-gpte-addr", no_pae, hidden=True).ok


def test_a_case_compares_what_the_call_did_to_the_machine():
    """A missing kill_guest() returns the right value: the case's state shows it."""
    def no_kill(cpu, gpte, write):
        lg = cpu.lg
        L = lg.x86
        pfn = pt.get_pfn(lg.launcher, (lg.mem_base >> 12) + L.pte_pfn(gpte), write)
        flags = 0 if pfn == 0xFFFFFFFF else gpte & L.PTE_FLAGS_MASK & ~0x100 & 0xFFFFFFFF
        return ((pfn << 12) & L.phys_mask) | flags

    report = ex.evaluate("ch2-gpte-to-spte", no_kill)
    assert not report.ok
    assert any("the Launcher has unmapped" in f and "expected {returns: 0xfffff000; killed the Guest: failed to get "
               "page 773}, got 0xfffff000" in f for f in report.failures), report.failures


def test_lru_policy_exercise_tells_fifo_from_lru():
    def first_slot(recent, slots):
        return slots.index(None) if None in slots else 0

    report = ex.evaluate("ch5-lru", first_slot)
    assert not report.ok and "switch to" in report.failures[0]
    report = ex.evaluate("ch5-lru", lambda recent, slots: 7)
    assert not report.ok and "not a slot number" in report.failures[0]


# =============================================================================================
# Mutants: plausible wrong answers, each derived from the model's own twin, must fail the
# hidden checks (and the most basic ones the visible checks too).  The honest twin passes both.
# =============================================================================================
from lguest_book.boundary import port as P  # noqa: E402 - the raw twins, looked up at call time
from lguest_book.lguest import kill_guest, lgread  # noqa: E402
from lguest_book.x86 import (  # noqa: E402
    PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, ULONG_MASK, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL,
    _PAGE_PRESENT, _PAGE_RW,
)


# ch1 gpte_addr ------------------------------------------------------------------------------
def ch1_always_2level(cpu, gentry, vaddr):
    return (gentry & 0xFFFFF000) + ((vaddr >> 12) & 1023) * 4


def ch1_1024_entries(cpu, gentry, vaddr):  # PAE's 512-entry tables read as 1024-entry ones
    L = cpu.lg.x86
    return ((gentry & 0xFFFFF000) + ((vaddr >> 12) & 1023) * L.entry_bytes) & ULONG_MASK


def ch1_keeps_flags(cpu, gentry, vaddr):  # the entry's flag bits left in the address
    L = cpu.lg.x86
    return (gentry & ULONG_MASK) + L.pte_index(vaddr) * L.entry_bytes


def ch1_no_truncation(cpu, gentry, vaddr):  # PAE: high bits of the mid-level entry kept
    L = cpu.lg.x86
    return (gentry & ~0xFFF) + L.pte_index(vaddr) * L.entry_bytes


# ch2 gpte_to_spte ---------------------------------------------------------------------------
def _ch2(cpu, gpte, write, *, kill=True, zero=True, truncate=True):
    lg = cpu.lg
    L = lg.x86
    flags = gpte & L.PTE_FLAGS_MASK & ~_PAGE_GLOBAL
    if truncate:
        flags &= ULONG_MASK
    pfn = P.get_pfn(lg.launcher, (lg.mem_base >> PAGE_SHIFT) + L.pte_pfn(gpte), write)
    if pfn == ULONG_MASK:
        if kill:
            kill_guest(cpu, f"failed to get page {L.pte_pfn(gpte)}")
        if zero:
            flags = 0
    return ((pfn << PAGE_SHIFT) & L.phys_mask) | flags


def ch2_no_kill(cpu, gpte, write):
    return _ch2(cpu, gpte, write, kill=False)


def ch2_keeps_flags_on_failure(cpu, gpte, write):
    return _ch2(cpu, gpte, write, zero=False)


def ch2_keeps_high_flags(cpu, gpte, write):
    return _ch2(cpu, gpte, write, truncate=False)


def ch2_ignores_write(cpu, gpte, write):
    return _ch2(cpu, gpte, 0)


# ch3 page_writable --------------------------------------------------------------------------
def ch3_no_switcher_test(cpu, vaddr):
    spte = P.find_spte(cpu, vaddr, False, 0, 0)
    return spte is not None and (cpu.lg.host.deref(spte) & (_PAGE_PRESENT | _PAGE_RW)) == (_PAGE_PRESENT | _PAGE_RW)


def ch3_rw_only(cpu, vaddr):  # forgets the present bit
    if vaddr >= cpu.lg.host.switcher_addr:
        return False
    spte = P.find_spte(cpu, vaddr, False, 0, 0)
    return spte is not None and bool(cpu.lg.host.deref(spte) & _PAGE_RW)


def ch3_allocates(cpu, vaddr):  # find_spte(..., True, ...): builds shadow pages to look
    if vaddr >= cpu.lg.host.switcher_addr:
        return False
    spte = P.find_spte(cpu, vaddr, True, cpu.lg.x86.CHECK_GPGD_MASK, 0x67)
    return spte is not None and (cpu.lg.host.deref(spte) & (_PAGE_PRESENT | _PAGE_RW)) == (_PAGE_PRESENT | _PAGE_RW)


def ch3_reads_the_guest_pte(cpu, vaddr):  # asks the Guest's tables, not the shadow
    if vaddr >= cpu.lg.host.switcher_addr:
        return False
    ok, _ = P.__guest_pa(cpu, vaddr)
    if not ok:
        return False
    L = cpu.lg.x86
    gpgd = lgread(cpu, P.gpgd_addr(cpu, vaddr), "pgd_t")
    gentry = lgread(cpu, P.gpmd_addr(gpgd, vaddr), "pmd_t") if L.pae else gpgd
    gpte = lgread(cpu, P.gpte_addr(cpu, gentry, vaddr), "pte_t")
    return bool(gpte & _PAGE_RW)


# ch4 __guest_set_pte ------------------------------------------------------------------------
def _ch4(cpu, idx, vaddr, gpte, *, release=True, pmd_check=True, write=None, clear_on_kill=False, iomem=True):
    lg = cpu.lg
    host = lg.host
    L = lg.x86
    spgd = P.spgd_addr(cpu, idx, vaddr)
    if not host.deref(spgd) & _PAGE_PRESENT:
        return
    if L.pae and pmd_check:
        spmd = P.spmd_addr(cpu, host.deref(spgd), vaddr)
        if not host.deref(spmd) & _PAGE_PRESENT:
            return
    spte = P.spte_addr(cpu, host.deref(spgd), vaddr)
    if release:
        P.release_pte(host, host.deref(spte))
    if (gpte & (_PAGE_DIRTY | _PAGE_ACCESSED)) and (not iomem or not P.gpte_in_iomem(cpu, gpte)):
        if not P.check_gpte(cpu, gpte):
            if clear_on_kill:
                host.store(spte, 0)
            return
        host.store(spte, P.gpte_to_spte(cpu, gpte, (gpte & _PAGE_DIRTY) if write is None else write))
    else:
        host.store(spte, 0)


def ch4_no_release(cpu, idx, vaddr, gpte):
    _ch4(cpu, idx, vaddr, gpte, release=False)


def ch4_no_pmd_check(cpu, idx, vaddr, gpte):
    _ch4(cpu, idx, vaddr, gpte, pmd_check=False)


def ch4_always_write(cpu, idx, vaddr, gpte):
    _ch4(cpu, idx, vaddr, gpte, write=1)


def ch4_clears_on_kill(cpu, idx, vaddr, gpte):
    _ch4(cpu, idx, vaddr, gpte, clear_on_kill=True)


def ch4_maps_iomem(cpu, idx, vaddr, gpte):
    _ch4(cpu, idx, vaddr, gpte, iomem=False)


# ch5 lru_victim -----------------------------------------------------------------------------
def ch5_fifo(recent, slots):
    return slots.index(None) if None in slots else 0


def ch5_mru(recent, slots):
    if None in slots:
        return slots.index(None)
    order = {g: n for n, g in enumerate(recent)}
    return max(range(len(slots)), key=lambda i: order.get(slots[i], -1))


def ch5_unknown_is_newest(recent, slots):  # a top level not in recent counts as the newest
    if None in slots:
        return slots.index(None)
    order = {g: n for n, g in enumerate(recent)}
    return min(range(len(slots)), key=lambda i: order.get(slots[i], len(recent)))


def ch5_last_free_slot(recent, slots):  # an unused slot, but the last one
    if None in slots:
        return len(slots) - 1 - slots[::-1].index(None)
    order = {g: n for n, g in enumerate(recent)}
    return min(range(len(slots)), key=lambda i: order.get(slots[i], -1))


# ch6 flush_user_mappings --------------------------------------------------------------------
def _ch6(lg, idx, stop):
    for i in range(stop(lg.x86.pgd_index(lg.kernel_address))):
        P.release_pgd(lg.host, lg.host.entry_ptr(lg.pgdirs[idx].pgdir, i))


def ch6_one_short(lg, idx):
    _ch6(lg, idx, lambda n: n - 1)


def ch6_half(lg, idx):
    _ch6(lg, idx, lambda n: n // 2)


def ch6_one_over(lg, idx):  # the kernel's first entry too
    _ch6(lg, idx, lambda n: n + 1)


def ch6_current_slot(lg, idx):  # flushes the current slot, not idx
    _ch6(lg, lg.cpus[0].cpu_pgd, lambda n: n)


# ch7 remove_switcher_percpu_map -------------------------------------------------------------
def _ch7(cpu, i, *, release=True, clear=True, second=True, stride=2, skip_code=True):
    host = cpu.lg.host
    base = host.switcher_addr + (PAGE_SIZE if skip_code else 0) + i * stride * PAGE_SIZE
    for page in ((base, base + PAGE_SIZE) if second else (base,)):
        pte = P.find_spte(cpu, page, False, 0, 0)
        if release:
            P.release_pte(host, host.deref(pte))
        if clear:
            host.store(pte, 0)


def ch7_no_release(cpu, i):
    _ch7(cpu, i, release=False)


def ch7_no_clear(cpu, i):
    _ch7(cpu, i, clear=False)


def ch7_first_page_only(cpu, i):
    _ch7(cpu, i, second=False)


def ch7_stride_one(cpu, i):
    _ch7(cpu, i, stride=1)


def ch7_from_the_code_page(cpu, i):
    _ch7(cpu, i, skip_code=False)


# ch8 __guest_pa -----------------------------------------------------------------------------
def _ch8(cpu, vaddr, *, linear=True, pmd_check=True, pte_check=True, fail=ULONG_MASK, truncate=True, offset=True):
    L = cpu.lg.x86
    if linear and cpu.linear_pages:
        return True, vaddr
    gpgd = lgread(cpu, P.gpgd_addr(cpu, vaddr), "pgd_t")
    if not gpgd & _PAGE_PRESENT:
        return False, fail
    if L.pae:
        gpmd = lgread(cpu, P.gpmd_addr(gpgd, vaddr), "pmd_t")
        if pmd_check and not gpmd & _PAGE_PRESENT:
            return False, fail
        gpte = lgread(cpu, P.gpte_addr(cpu, gpmd, vaddr), "pte_t")
    else:
        gpte = lgread(cpu, P.gpte_addr(cpu, gpgd, vaddr), "pte_t")
    if pte_check and not gpte & _PAGE_PRESENT:
        return False, fail
    page = (gpte & ~0xFFF) if not truncate else L.pte_pfn(gpte) * PAGE_SIZE
    return True, page | ((vaddr & ~PAGE_MASK) if offset else 0)


def ch8_no_linear(cpu, vaddr):
    return _ch8(cpu, vaddr, linear=False)


def ch8_no_pmd_check(cpu, vaddr):
    return _ch8(cpu, vaddr, pmd_check=False)


def ch8_no_pte_check(cpu, vaddr):
    return _ch8(cpu, vaddr, pte_check=False)


def ch8_fails_with_zero(cpu, vaddr):
    return _ch8(cpu, vaddr, fail=0)


def ch8_keeps_high_bits(cpu, vaddr):  # PAE: NX and the frame mask's neighbours kept
    return _ch8(cpu, vaddr, truncate=False)


def ch8_no_offset(cpu, vaddr):
    return _ch8(cpu, vaddr, offset=False)


# id -> [(mutant, also fails the visible checks?)]
MUTANTS = {
    "ch1-gpte-addr": [(ch1_always_2level, False), (ch1_1024_entries, False), (ch1_keeps_flags, True),
                      (ch1_no_truncation, False)],
    "ch2-gpte-to-spte": [(ch2_no_kill, True), (ch2_keeps_flags_on_failure, True), (ch2_keeps_high_flags, True),
                         (ch2_ignores_write, False)],
    "ch3-page-writable": [(ch3_no_switcher_test, True), (ch3_rw_only, True), (ch3_allocates, True),
                          (ch3_reads_the_guest_pte, True)],
    "ch4-guest-set-pte": [(ch4_no_release, True), (ch4_no_pmd_check, False), (ch4_always_write, False),
                          (ch4_clears_on_kill, False), (ch4_maps_iomem, False)],
    "ch5-lru": [(ch5_fifo, True), (ch5_mru, True), (ch5_unknown_is_newest, True), (ch5_last_free_slot, True)],
    "ch6-flush-user": [(ch6_one_short, True), (ch6_half, True), (ch6_one_over, True), (ch6_current_slot, True)],
    "ch7-remove-percpu": [(ch7_no_release, True), (ch7_no_clear, True), (ch7_first_page_only, True),
                          (ch7_stride_one, True), (ch7_from_the_code_page, True)],
    "ch8-guest-pa": [(ch8_no_linear, True), (ch8_no_pmd_check, False), (ch8_no_pte_check, True),
                     (ch8_fails_with_zero, True), (ch8_keeps_high_bits, False), (ch8_no_offset, True)],
}
_MUTANT_CASES = [(eid, m, visible) for eid, ms in MUTANTS.items() for m, visible in ms]


@pytest.mark.parametrize("eid", sorted(MUTANTS))
def test_the_honest_answer_passes_visible_and_hidden(eid, capsys):
    e = ex.EXERCISES[eid]
    honest = e.reference_impl or ex.reference(e.target)
    ex.check(eid, honest)
    ex.check(eid, honest, hidden=True)


@pytest.mark.parametrize("eid, mutant, visible", _MUTANT_CASES,
                         ids=[f"{eid}:{m.__name__}" for eid, m, _ in _MUTANT_CASES])
def test_every_mutant_fails_the_hidden_checks(eid, mutant, visible, capsys):
    survived = []
    for hidden in ((True, False) if visible else (True,)):
        try:
            ex.check(eid, mutant, hidden=hidden)
        except AssertionError:
            continue
        survived.append("hidden" if hidden else "visible")
    assert not survived, f"mutant {mutant.__name__} of {eid} survived the {' and '.join(survived)} checks"
