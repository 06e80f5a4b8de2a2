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
    visible = ex.evaluate("ch2-gpte-to-spte", ex.reference("gpte_to_spte"))
    hidden = ex.evaluate("ch2-gpte-to-spte", ex.reference("gpte_to_spte"), hidden=True)
    assert hidden.total > visible.total

    def no_pae(cpu, gpte, write):  # right for 2-level tables only
        if cpu.lg.x86.pae:
            return 0
        return ex.reference("gpte_to_spte")(cpu, gpte, write)

    assert ex.evaluate("ch2-gpte-to-spte", no_pae).ok
    assert not ex.evaluate("ch2-gpte-to-spte", no_pae, hidden=True).ok


def test_lru_policy_exercise_tells_fifo_from_lru():
    def first_slot(recent, slots):
        return slots.index(None) if None in slots else 0

    report = ex.evaluate("ch5-lru", first_slot)
    assert not report.ok and "switch to" in report.failures[0]
    report = ex.evaluate("ch5-lru", lambda recent, slots: 7)
    assert not report.ok and "not a slot number" in report.failures[0]
