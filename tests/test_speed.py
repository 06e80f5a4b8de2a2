"""The bench's new parts: the compiled C on the same work, and the run at scale (small here).
Nothing asserts a speed; these check that the figures are measured on the work they claim."""

import pytest

from lguest_book import bench
from lguest_book.verify import c_referee, extract


def _c_available() -> bool:
    try:
        extract.find_source()
    except Exception:  # noqa: BLE001 - no page_tables.c: the bench says so and the test skips
        return False
    return c_referee.gcc_m32_available()


@pytest.mark.skipif(not _c_available(), reason="needs gcc -m32 and page_tables.c (LGUEST_BOOK_C_SOURCE)")
@pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])
def test_the_compiled_c_runs_the_benchs_work(pae):
    rates = bench.bench_compiled_c(pae, pages=256, rounds=1)
    assert isinstance(rates, dict), rates                     # else: why not, in one line
    assert set(rates) == {"demand_page/s", "set_pte/s", "touch/s"}
    assert all(rate > 0 for rate in rates.values())


def test_without_the_c_the_bench_says_why(monkeypatch):
    monkeypatch.setattr(c_referee, "gcc_m32_available", lambda: False)
    assert bench.bench_compiled_c(False, 64, 1) == "no gcc -m32 here"


def test_the_run_at_scale_faults_and_touches_every_page():
    m = bench.bench_memory(False, gib=1 / 256)                # 1024 pages
    assert m["dead"] is None and m["pages"] == 1024
    assert m["touch outcomes"] == {"ok": 1024}                # every page refaulted and reached
    assert m["demand_page/s"] > 0 and m["touch/s"] > 0 and m["faulting touch/s"] > 0


def test_the_report_gives_each_figure_its_ratios():
    results = {
        name: {"demand_page/s": 100.0, "touch/s": 2000.0, "set_pte/s": 300.0, "new_pagetable/s": 4.0}
        for name in ("non-PAE", "PAE")
    }
    results["plain_fault/s"] = 1000.0
    results["compiled C"] = {"non-PAE": {"demand_page/s": 5000.0, "set_pte/s": 600.0, "touch/s": 1000.0},
                             "PAE": "no gcc -m32 here"}
    results["memory"] = {"pages": 4, "mapped": 4, "rss_growth_mb": 0.1, "seconds": 0.0, "dead": None,
                         "demand_page/s": 10.0, "touch/s": 20.0, "faulting touch/s": 5.0, "touch outcomes": {"ok": 4}}
    text = bench.format_results(results)
    row = next(line for line in text.splitlines() if line.startswith("demand_page/s"))
    assert "0.1x" in row and "50x" in row                     # 100/1000 of the yardstick; C 50x the model
    assert "compiled C (PAE): no gcc -m32 here" in text
    assert "2x" in next(line for line in text.splitlines() if line.startswith("touch/s"))


def test_bytecode_counts_are_exact_and_split_the_fault_path():
    first, again = bench.bench_bytecodes(False, pages=64), bench.bench_bytecodes(False, pages=64)
    assert first == again                                     # exact: no timing in it
    assert first["page_tables"] > 0 and first["rest"] > 0 and first["yardstick"] > 0
    pae = bench.bench_bytecodes(True, pages=64)
    assert pae["page_tables"] > first["page_tables"]          # PAE's mid level: more of the C runs
    assert pae["yardstick"] == first["yardstick"]             # the yardstick is non-PAE only


def test_the_report_says_what_a_third_of_the_yardstick_allows():
    results = {name: {"demand_page/s": 100.0, "touch/s": 2000.0} for name in ("non-PAE", "PAE")}
    results["plain_fault/s"] = 1000.0
    results["bytecodes/fault"] = {"non-PAE": {"page_tables": 400.0, "rest": 200.0, "yardstick": 120.0},
                                  "PAE": {"page_tables": 500.0, "rest": 300.0, "yardstick": 120.0}}
    results["memory"] = {"pages": 4, "mapped": 4, "rss_growth_mb": 0.1, "seconds": 0.0, "dead": None,
                         "demand_page/s": 10.0, "touch/s": 20.0, "faulting touch/s": 5.0, "touch outcomes": {"ok": 4}}
    text = bench.format_results(results)
    assert "non-PAE demand_page 600 (the page_tables.c twins 400" in text
    assert "the yardstick 120" in text and "allows 360 a fault" in text
