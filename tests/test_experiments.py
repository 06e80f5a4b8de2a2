"""Workload generator, runner and experiments (chapter 10): what they count is what happened."""

from __future__ import annotations

import pytest

from lguest_book import experiments as ex
from lguest_book import inspect as li
from lguest_book import lguest as lguest_mod
from lguest_book import page_tables as pt
from lguest_book.cli import main
from lguest_book.guest import Guest
from lguest_book.trace import CallCounter
from lguest_book.workloads import Runner, WorkloadSpec, generate, run


def test_workload_is_seeded_and_counts_what_happened():
    spec = WorkloadSpec(ops=1500, processes=4, pages=8, quantum=20, mmap_fraction=0.02, churn=0.1, seed=5)
    assert generate(spec) == generate(spec)
    assert generate(spec) != generate(WorkloadSpec(**{**spec.__dict__, "seed": 6}))
    g = Guest(pae=False, seed=5)
    with CallCounter() as calls:
        stats = Runner(g).run(generate(spec), pages=spec.pages)
    assert g.dead is None
    # every fault the runner counts is a demand_page call (pin_page makes the others), every
    # switch a NEW_PGTABLE
    n = calls.counts
    assert n["demand_page"] - n["pin_page"] <= stats.faults <= n["demand_page"]
    assert stats.hypercalls["new_pgtable"] == stats.switches == calls.counts["guest_new_pagetable"]
    assert stats.hypercalls["set_pte"] == calls.counts["guest_set_pte"]
    assert stats.accesses > 0 and stats.ops > spec.ops


def test_bad_spec_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="pattern='zigzag'"):
        WorkloadSpec(pattern="zigzag")
    with pytest.raises(ValueError, match="write_fraction=2"):
        WorkloadSpec(write_fraction=2)
    with pytest.raises(ValueError, match="processes=0"):
        WorkloadSpec(processes=0)


def test_runner_leaves_a_clean_teardown_in_both_layouts():
    for pae in (False, True):
        stats, runner = run(WorkloadSpec(ops=800, processes=3, pages=8, churn=0.2, mmap_fraction=0.05, seed=2), pae=pae)
        g = runner.g
        assert stats.dead is None
        g.shutdown()
        assert not g.host.anomalies and not g.host.oopses


def test_pgdir_slots_is_the_c_with_another_array_size():
    with ex.pgdir_slots(8):
        g = Guest(pae=False, seed=1)
        assert len(li.pgdir_cache(g)) == 8
        procs = [g.new_process() for _ in range(7)]
        for p in procs:
            g.switch_to(p)
        assert sum(e["allocated"] for e in li.pgdir_cache(g)) >= 6
    assert pt.PGDIR_SLOTS == lguest_mod.PGDIR_SLOTS == 4
    with pytest.raises(ValueError, match="slots=0"):
        with ex.pgdir_slots(0):
            pass


def test_random_policy_source_reproduces_the_unmodified_model():
    spec = WorkloadSpec(ops=1000, processes=6, pages=4, working_set=2, quantum=6, scheduler="random", seed=3)
    plain = Guest(pae=False, seed=3)
    with CallCounter() as calls:
        Runner(plain).run(generate(spec), pages=spec.pages)
    assert ex._eviction_run(spec, "random", 4, seed=3)["misses"] == calls.counts["new_pgdir"]


@pytest.mark.parametrize("policy", ["lru", "fifo", "optimal"])
def test_policy_source_mirror_matches_the_cache(policy):
    spec = WorkloadSpec(ops=600, processes=6, pages=4, working_set=2, quantum=5, scheduler="locality", seed=4)
    with ex.pgdir_slots(4):
        source = ex.PolicySource(policy, 4, seed=4)
        g = Guest(pae=False, prandom=source)
        source.cache = [e["gpgdir"] if e["allocated"] else None for e in li.pgdir_cache(g)]
        runner = ex._PolicyRunner(g, source)
        runner.run(generate(spec), pages=spec.pages)
        assert source.cache == [e["gpgdir"] if e["allocated"] else None for e in li.pgdir_cache(g)]
        assert source.misses > 0


def test_lru_round_robin_one_too_many_misses_every_switch():
    spec = WorkloadSpec(ops=600, processes=5, pages=4, working_set=2, quantum=6, scheduler="round-robin", seed=0)
    lru = ex._eviction_run(spec, "lru", 4, 0)
    optimal = ex._eviction_run(spec, "optimal", 4, 0)
    assert lru["misses"] == lru["switches"]
    assert optimal["misses"] < lru["misses"]


def test_prefault_variant_pins_and_releases_cleanly():
    log: list = []
    g = Guest(pae=False, seed=1)
    p = g.new_process()
    g.switch_to(p)
    for i in range(8):
        g.map(0x08048000 + i * 4096, 0x300 + i, accessed=False)
    from lguest_book import exercises

    with exercises.use("demand_page", ex.prefaulting_demand_page(pt.demand_page, 4, log)):
        a = g.touch(0x08048000, user=True)
        b = g.touch(0x08049000, user=True)
    assert a.faults == 1 and b.faults == 0  # the neighbour was prefaulted
    assert [v for _, v in log] == [0x08049000, 0x0804A000, 0x0804B000]
    g.shutdown()
    assert not g.host.anomalies


def test_tlb_model():
    accesses = [(0, 0x1000), (0, 0x1000), (-1, 0xC0000000), (0, 0x2000), (-1, 0xC0000000), (0, 0x1000)]
    assert ex.tlb_misses(accesses, set(), keep_kernel=False) == 3
    assert ex.tlb_misses(accesses, {4}, keep_kernel=False) == 5   # a flush before index 4
    assert ex.tlb_misses(accesses, {4}, keep_kernel=True) == 4    # the kernel's global entry survives
    assert ex.tlb_misses([(0, n << 12) for n in range(3)] * 2, set(), keep_kernel=False, entries=2) == 6


@pytest.mark.parametrize("name", ex.names())
def test_each_quick_experiment_runs_and_states_its_findings(name, tmp_path):
    result = ex.run(name, quick=True, seed=0)
    assert result.rows and result.summary and result.figures
    paths = result.write(tmp_path)
    assert {p.suffix for p in paths} == {".csv", ".txt", ".png"}
    header = (tmp_path / f"{name}.csv").read_text().splitlines()[0].split(",")
    assert header == result.columns
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths if p.suffix == ".png")


def test_cli_list_run_and_bad_input(tmp_path, capsys):
    assert main(["experiment", "list"]) == 0
    assert "h435-eviction" in capsys.readouterr().out
    assert main(["experiment", "run", "m007-prefault", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "m007-prefault.csv" in out.out and "100%" in out.err
    assert main(["experiment", "run", "nope"]) == 2
    assert "no experiment named 'nope'" in capsys.readouterr().err
    assert main(["experiment", "run"]) == 2
    assert main(["experiment", "run", "all", "--seed", "-1"]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["experiment", "run", "m007-prefault", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["experiment", "bench", "--ops", "0"]) == 2
