"""The trace, the read-only inspect API, the CLI and the benchmark harness."""

import pytest

from lguest_book import Guest, cli
from lguest_book import inspect as li
from lguest_book import page_tables as pt
from lguest_book.trace import Tracer, trace_call
from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER

LAYOUTS = [pytest.param(False, id="nonpae"), pytest.param(True, id="pae")]
VADDR = 0x08048000


def user_guest(pae):
    g = Guest(pae=pae)
    proc = g.new_process("p")
    g.switch_to(proc)
    return g, proc


# --- trace ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pae", LAYOUTS)
def test_trace_of_a_write_fault_records_reads_writes_and_decisions(pae):
    g, proc = user_guest(pae)
    g.map(VADDR, 0x300, accessed=False)
    g.touch(0xC0000000)  # enter the guest once so the trace below is only the fault
    (fixed, iomem), trace = trace_call(pt.demand_page, g.cpu, VADDR, 2)
    assert (fixed, iomem) == (True, 0)
    levels = [kind for kind, _, _ in trace.reads()]
    assert levels == (["pgd_t", "pmd_t", "pte_t"] if pae else ["pgd_t", "pte_t"])
    assert trace.reads()[-1][2] == (0x300 << 12) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER
    guest_writes = [w for w in trace.writes() if w[0] == "guest"]
    assert len(guest_writes) == 1
    _, addr, old, new = guest_writes[0]
    assert new == old | _PAGE_ACCESSED | _PAGE_DIRTY
    shadow_writes = [w for w in trace.writes() if w[0] == "shadow"]
    assert shadow_writes[-1][3] == li.walk_shadow(g, VADDR)[-1].value
    outcomes = {e.label: e.outcome for e in trace.decisions("demand_page")}
    assert outcomes["write to a read-only page"] is False
    assert outcomes["not mapped by the Guest"] is False
    assert trace.kills() == []
    # every call has its return, and the tree is balanced
    assert len(trace.calls()) == sum(1 for e in trace if e.kind in ("return", "raise"))


def test_trace_shows_the_refusing_check_and_the_kill():
    g, proc = user_guest(False)
    g.set_pte(VADDR, (g.lg.device_limit + 1) << 12 | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER)
    result, trace = trace_call(pt.demand_page, g.cpu, VADDR, 6)
    assert result == (False, 0)
    taken = [e.label for e in trace.decisions("demand_page") if e.outcome]
    assert taken == ["PSE, or beyond guest memory: killed"]
    assert trace.kills() == ["bad page table entry"]
    assert g.dead == "bad page table entry"


def test_trace_records_allocations_and_releases():
    g, proc = user_guest(False)
    g.map(VADDR, 0x300)
    with Tracer() as t:
        g.touch(VADDR, user=True)
    assert len(t.trace.allocations()) == 1  # one shadow PTE page
    with Tracer() as t:
        g.flush_user()
    assert t.trace.allocations() == []
    assert len(t.trace.releases()) >= 2  # the data page's reference and the PTE page


def test_call_counter_agrees_with_the_tracer():
    import sys

    from lguest_book.trace import CallCounter

    def workload(g):
        for i in range(6):
            g.map(VADDR + i * 4096, 0x300 + i, accessed=False)
            g.touch(VADDR + i * 4096, write=bool(i % 2), user=True)
        g.flush_user()
        g.touch(VADDR, user=True)

    counted, traced = user_guest(False)[0], user_guest(False)[0]
    with CallCounter() as calls:
        workload(counted)
    with Tracer() as t:
        workload(traced)
    for name in ("demand_page", "guest_set_pte", "get_user_pages_fast", "guest_pagetable_flush_user", "lgwrite"):
        assert calls.counts[name] == len(t.trace.calls(name)), name
    assert calls.counts["demand_page"] == 7  # one fault per first touch (6), one after the flush
    assert sys.getprofile() is None


def test_tracing_leaves_no_hook_behind():
    import sys

    before = sys.gettrace()
    g, proc = user_guest(False)
    with Tracer(lines=True) as t:
        g.touch(0xC0000000)
    assert sys.gettrace() is before
    assert any(e.kind == "line" for e in t.trace)


# --- inspect -------------------------------------------------------------------------------------
@pytest.mark.parametrize("pae", LAYOUTS)
def test_inspect_views_agree_with_a_fault(pae):
    g, proc = user_guest(pae)
    g.map(VADDR, 0x300)
    before = {f: c for f, (c, _) in li.refcounts(g).items()}
    access = g.touch(VADDR, user=True)
    assert access.outcome == "ok"
    shadow = li.walk_shadow(g, VADDR)
    guest = li.walk_guest(g, VADDR)
    assert [s.level for s in shadow] == [s.level for s in guest]
    frame = shadow[-1].value >> 12
    assert li.owner(g, frame) == ("guest", 0x300)
    assert access.hpa == frame << 12 | (VADDR & 0xFFF)
    row = li.compare(g, VADDR, 1)[0]
    assert row["guest_frame"] == 0x300 and row["host_frame"] == frame
    assert li.refcounts(g)[frame][0] == before.get(frame, 0) + 1 + (0 if frame in before else 1)
    assert li.shadow_mappings(g)[VADDR] == shadow[-1].value
    assert li.guest_mappings(g, below=0xC0000000) == {VADDR: g.guest_pte(VADDR)}
    cache = li.pgdir_cache(g)
    assert sum(c["current"] for c in cache) == 1
    assert cache[g.cpu.cpu_pgd]["gpgdir"] == proc.gpgdir


def test_inspect_does_not_change_the_model():
    g, proc = user_guest(True)
    g.map(VADDR, 0x300)
    g.touch(VADDR)
    snapshot = ({k: list(v) for k, v in g.host.tables.items()}, dict(g.host.data), dict(g.host.refcount))
    for level in ("pgd", "pmd", "pte"):
        li.shadow_table(g, level=level, vaddr=VADDR)
        li.guest_table(g, level=level, vaddr=VADDR)
    li.refcounts(g)
    li.shadow_mappings(g)
    li.compare(g, VADDR, 4)
    assert ({k: list(v) for k, v in g.host.tables.items()}, dict(g.host.data), dict(g.host.refcount)) == snapshot


def test_inspect_rejects_nonsense():
    g, _ = user_guest(False)
    with pytest.raises(ValueError, match="level='pmd'"):
        li.shadow_table(g, level="pmd")
    with pytest.raises(ValueError, match="slot=7"):
        li.shadow_table(g, slot=7)
    with pytest.raises(TypeError, match="expected a Guest or an Lguest"):
        li.pgdir_cache("guest")


# --- the Guest and the API's argument checks ----------------------------------------------------
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: pt.demand_page(g.cpu, -1, 0), "vaddr=-1 "),
        (lambda g: pt.demand_page(g.cpu, 1 << 32, 0), "vaddr=0x100000000"),
        (lambda g: pt.demand_page(g.cpu, 0x1000, 0x20), "errcode=0x20"),
        (lambda g: pt.demand_page(g.lg, 0x1000, 0), "cpu must be an LgCpu"),
        (lambda g: pt.demand_page(g.cpu, "0x1000", 0), "vaddr must be an int"),
        (lambda g: pt.guest_set_pmd(g.lg, 0, 0), "exists only under PAE"),
        (lambda g: pt.release_pmd(g.host, (1, 0)), "exists only under PAE"),
        (lambda g: pt.guest_set_pte(g.cpu, 0, 0x1000, 1 << 32), "gpte=0x100000000"),
        (lambda g: pt.flush_user_mappings(g.lg, 4), "idx=4 "),  # a slot is a count: decimal (fmt)
        (lambda g: g.touch(1 << 32), "vaddr=0x100000000"),
        (lambda g: g.set_pmd(0, 0), "non-PAE guest has no mid level"),
        (lambda g: g.hypercall(-1), "call=-1 "),  # a negative number prints in decimal
        (lambda g: setattr(g.host, "current_cpu", 3), "current_cpu=3 "),  # a count: decimal
    ],
)
def test_api_misuse_names_the_argument(call, match):
    g, _ = user_guest(False)
    with pytest.raises((ValueError, TypeError), match=match):
        call(g)
    assert g.dead is None  # misuse by a caller never kills the guest


def test_guest_construction_checks_its_arguments():
    with pytest.raises(TypeError, match="pae must be True or False"):
        Guest(pae=1)
    with pytest.raises(ValueError, match="switcher_addr=0x1000"):
        Guest(switcher_addr=0x1000)
    with pytest.raises(ValueError, match="mem_pages"):
        Guest(mem_pages=10)


@pytest.mark.parametrize("pae", LAYOUTS)
def test_guest_boot_reaches_the_state_lguest_expects(pae):
    g = Guest(pae=pae)
    assert g.dead is None
    assert not g.cpu.linear_pages
    assert g.lg.kernel_address == 0xC0000000
    assert g.lguest_data()["reserve_mem"] == (1 << 32) - g.host.switcher_addr
    slot = g.lg.pgdirs[g.cpu.cpu_pgd]
    assert slot.gpgdir == g.swapper.gpgdir and slot.switcher_mapped
    for n in range(g.stack_pages):  # the stack was pinned writable
        assert pt.page_writable(g.cpu, g.esp1 - 1 - n * 4096)


@pytest.mark.parametrize("pae", LAYOUTS)
def test_touch_outcomes(pae):
    g, proc = user_guest(pae)
    g.map(VADDR, 0x300, writable=False)
    assert g.touch(VADDR, user=True).outcome == "ok"
    write = g.touch(VADDR, write=True, user=True)
    assert write.outcome == "guest-fault" and write.info == 7  # present, write, user
    assert g.lguest_data()["cr2"] == VADDR
    assert g.touch(0xC0000000, user=True).outcome == "guest-fault"
    g.map(0x08050000, g.lg.pfn_limit + 3)  # device memory
    mmio = g.touch(0x08050123, user=True)
    assert mmio.outcome == "mmio" and mmio.info == (g.lg.pfn_limit + 3) << 12 | 0x123
    g.set_pte(0x08060000, 0xFFFFF000 | 0x7)  # beyond memory and devices
    assert g.touch(0x08060000, user=True).outcome == "killed"
    assert g.touch(VADDR).outcome == "dead"


def test_a_guest_pgd_without_rw_livelocks_the_fault_path():
    """check_gpgd allows a top-level entry without RW; demand_page checks only the PTE, so
    it keeps 'fixing' a write fault the hardware keeps raising at the top level."""
    g, proc = user_guest(False)
    g.map(VADDR, 0x300)
    index = VADDR >> 22
    pgd = g.read_entry(proc.gpgdir + index * 4)
    g.set_pgd(index, pgd & ~_PAGE_RW)
    access = g.touch(VADDR, write=True, user=True)
    assert access.outcome == "livelock" and access.faults == 3
    assert g.dead is None


# --- CLI and benchmark harness ----------------------------------------------------------------------
def test_cli_tour_and_trace(capsys):
    assert cli.main(["tour"]) == 0
    out = capsys.readouterr().out
    assert "The access succeeded after 1 fault(s)" in out
    assert "lguest set Accessed and Dirty" in out
    # demand_page's writes are its own: the Switcher's, made on entering the Guest, are told apart
    decisions = out.split("Its decisions:")[1].split("(Before that")[0]
    written = [line for line in decisions.splitlines() if "wrote " in line]
    assert len(written) == 3 and all(" -> 0x00000000" not in line for line in written), decisions
    assert "map_switcher_in_guest() made 4 shadow writes" in out
    assert cli.main(["trace", "0x08048000", "--write", "--pae"]) == 0
    assert "demand_page returned (True, 0x0000000000000000); guest alive" in capsys.readouterr().out


def test_cli_rejects_a_bad_address(capsys):
    with pytest.raises(SystemExit):
        cli.main(["trace", "banana"])
    assert "'banana' is not a number" in capsys.readouterr().err


def test_bench_quick_runs_and_reports_every_figure():
    from lguest_book import bench

    results = bench.run_all(quick=True)
    for layout in ("non-PAE", "PAE"):
        assert set(results[layout]) == {"demand_page/s", "touch/s", "set_pte/s", "new_pagetable/s"}
        assert all(rate > 0 for rate in results[layout].values())
    assert results["plain_fault/s"] > 0
    assert results["memory"]["dead"] is None
    report = bench.format_results(results)
    assert "demand_page/s" in report and "yardstick" in report and "SMOKE" not in report
    # what `lguest-book bench --quick` prints: the figures of a smoke run, said so above and below
    smoke = bench.format_results(results, quick=True).splitlines()
    assert smoke[0].startswith("SMOKE RUN (--quick") and "not comparable with a full run" in smoke[0]
    assert "C/model*" in smoke[1] and smoke[-1] == "* " + smoke[0]


def test_argument_checks_are_not_reported_as_decisions_of_the_c():
    # release_pmd's "PAE only" guard raises for API misuse; the C has no such test
    g, proc = user_guest(True)
    g.map(VADDR, 0x300)
    g.touch(VADDR, user=True)
    with Tracer() as t:
        g.flush_user()
    labels = {e.label for e in t.trace if e.kind == "decision" and e.func == "release_pmd"}
    assert labels == {"a present mid-level entry: release its PTE page"}


def test_trace_within_keeps_one_function_s_events():
    g = Guest(pae=False, seed=1)
    p = g.new_process("t")
    g.switch_to(p)
    g.map(VADDR, 0x300, accessed=False)
    with Tracer() as t:
        g.touch(VADDR, write=True, user=True)
    inner = t.trace.within("demand_page")
    assert inner[0].kind == "call" and inner[0].func == "demand_page"
    assert inner[-1].kind == "return" and inner[-1].func == "demand_page"
    assert all(e.depth >= inner[0].depth for e in inner)
    assert inner.calls("map_switcher_in_guest") == [] and t.trace.calls("map_switcher_in_guest")
    assert len(inner.writes()) < len(t.trace.writes())
    assert t.trace.within("no_such_function") == []
