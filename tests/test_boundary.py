"""The boundary: argument checks for users live outside page_tables.py, and the Guest's own path
never runs one.

* page_tables.py's function bodies hold only what the C does (no check helpers, no raise, no
  type tests), and ``twin()``/``where`` show exactly those bodies;
* every C function has a rule per parameter, and a bad argument at each boundary (the checked
  view ``pt.NAME``, the inspect views, the Guest) is a one-line TypeError/ValueError naming it;
* the fault path (touch -> hypercalls -> page_tables) runs no code of boundary.py.
"""

import ast
import inspect as pyinspect
import subprocess
import sys

import pytest

from lguest_book import boundary
from lguest_book import exercises as ex
from lguest_book import inspect as li
from lguest_book import notebook
from lguest_book import page_tables as pt
from lguest_book.guest import Guest

RAW = vars(pt)


def _bodies():
    tree = ast.parse(pyinspect.getsource(pt))
    return {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_page_tables_defines_only_the_c_functions():
    assert sorted(_bodies()) == sorted(pt.C_FUNCTIONS)


@pytest.mark.parametrize("name", pt.C_FUNCTIONS)
def test_no_function_body_checks_its_arguments(name):
    func = _bodies()[name]
    for node in ast.walk(func):
        assert not isinstance(node, ast.Raise), f"{name} raises: its errors are BUG()/BUG_ON() calls"
        if isinstance(node, ast.Name):
            assert node.id not in ("isinstance", "TypeError", "ValueError"), f"{name} uses {node.id}"
            assert not node.id.startswith(("_need", "_check", "_bad")), f"{name} calls {node.id}"
        if isinstance(node, ast.Attribute):
            assert node.attr != "__class__", f"{name} tests a type"
    assert "boundary" not in pyinspect.getsource(RAW[name])


@pytest.mark.parametrize("name", ["demand_page", "spgd_addr", "gpte_addr", "release_pmd", "guest_set_pte"])
def test_twin_and_where_show_the_raw_body(name):
    shown = repr(notebook.twin(name))
    assert pyinspect.getsource(RAW[name]).rstrip() in shown
    assert "__class__" not in shown and "_check" not in shown
    out = subprocess.run(
        [sys.executable, "-m", "lguest_book", "where", name], capture_output=True, text=True, check=True
    ).stdout
    assert "page_tables.py" in out.splitlines()[0]
    assert pyinspect.getsource(RAW[name]).rstrip() in out


def test_every_c_function_has_a_rule_per_parameter():
    assert set(boundary.PORT_RULES) == set(pt.C_FUNCTIONS)
    for name in pt.C_FUNCTIONS:
        params = list(pyinspect.signature(RAW[name]).parameters)
        assert list(boundary.PORT_RULES[name]) == params, name
    assert boundary.PAE_ONLY <= set(pt.C_FUNCTIONS)


def test_the_checked_view_wraps_the_twin():
    view = pt.demand_page
    assert view is not RAW["demand_page"] and view.__wrapped__ is RAW["demand_page"]
    assert pt.demand_page is view                                           # the same view each time
    assert pyinspect.signature(view) == pyinspect.signature(RAW["demand_page"])
    assert pyinspect.getsource(view) == pyinspect.getsource(RAW["demand_page"])
    pt.demand_page = view                                                   # storing a view stores the twin
    assert RAW["demand_page"] is view.__wrapped__
    assert boundary.port.demand_page is RAW["demand_page"]


def test_a_swapped_function_is_seen_by_every_caller():
    calls = []

    def spy(cpu, vaddr, errcode):
        calls.append(vaddr)
        return ex.reference("demand_page")(cpu, vaddr, errcode)

    g = Guest(seed=1)
    with ex.use("demand_page", spy):
        assert pt.demand_page is spy and boundary.port.demand_page is spy
        g.touch(0xC0200000)
    assert calls == [0xC0200000]
    assert boundary.port.demand_page is pt.demand_page.__wrapped__


def _one_line(err):
    text = str(err.value)
    assert "\n" not in text and text
    return text


@pytest.fixture(params=[False, True], ids=["nonpae", "pae"])
def g(request):
    guest = Guest(pae=request.param, seed=1)
    proc = guest.new_process("p")
    guest.switch_to(proc)
    return guest


PORT_CASES = [
    (lambda g: pt.demand_page(g.cpu, "x", 2), TypeError, "vaddr"),
    (lambda g: pt.demand_page(g.cpu, -1, 2), ValueError, "vaddr=-1 "),
    (lambda g: pt.demand_page(g.cpu, 0, 0x20), ValueError, "errcode"),
    (lambda g: pt.demand_page(g, 0, 0), TypeError, "cpu"),
    (lambda g: pt.demand_page(g.cpu, 0), TypeError, "errcode"),
    (lambda g: pt.demand_page(g.cpu, vaddr=1 << 32, errcode=0), ValueError, "vaddr"),
    (lambda g: pt.gpte_addr(g.cpu, 0x1067, -1), ValueError, "vaddr"),
    (lambda g: pt.gpte_addr(g.cpu, "pgd", 0), TypeError, "gentry"),
    (lambda g: pt.gpte_addr(g.cpu, 1 << 64, 0), ValueError, "gentry"),
    (lambda g: pt.spgd_addr(g.cpu, 4, 0), ValueError, "i=4"),
    (lambda g: pt.gpgd_addr(g.cpu, 2.0), TypeError, "vaddr"),
    (lambda g: pt.get_pfn(g.lg, 0, 0), TypeError, "mm"),
    (lambda g: pt.gpte_to_spte(g.cpu, 0x1067, None), TypeError, "write"),
    (lambda g: pt.release_pte(g.cpu, 0), TypeError, "host"),
    (lambda g: pt.release_pgd(g.host, 7), TypeError, "spgd"),
    (lambda g: pt.release_pgd(g.host, (1, 5000)), ValueError, "spgd"),
    (lambda g: pt.find_spte(g.cpu, 0, True, "x", 0), TypeError, "pgd_flags"),
    (lambda g: pt.find_pgdir(g.cpu, 0), TypeError, "lg"),
    (lambda g: pt.flush_user_mappings(g.lg, 9), ValueError, "idx=9"),
    (lambda g: pt.guest_new_pagetable(g.cpu, None), TypeError, "pgtable"),
    (lambda g: pt.__guest_set_pte(g.cpu, 0, 0, -5), ValueError, "gpte"),
    (lambda g: pt.guest_set_pte(g.cpu, 0, 0x08048000, "pte"), TypeError, "gpte"),
    (lambda g: pt.guest_set_pgd(g.lg, 0, -1), ValueError, "idx"),
    (lambda g: pt.remove_switcher_percpu_map(g.cpu, 1), ValueError, "i=1"),
    (lambda g: pt.page_writable(g.cpu, "x"), TypeError, "vaddr"),
    (lambda g: pt.pin_page(g.cpu, 1 << 40), ValueError, "vaddr"),
    (lambda g: pt.guest_pa(g.cpu, -4096), ValueError, "vaddr"),
    (lambda g: pt.__guest_pa(g.cpu, []), TypeError, "vaddr"),
    (lambda g: pt.new_pgdir(g.cpu, "x"), TypeError, "gpgdir"),
    (lambda g: pt.init_guest_pagetable(g.cpu), TypeError, "lg"),
]


@pytest.mark.parametrize("call, error, name", PORT_CASES)
def test_bad_arguments_to_the_port_name_the_argument(g, call, error, name):
    before = li.refcounts(g), li.pgdir_cache(g), g.dead
    with pytest.raises(error) as err:
        call(g)
    assert name in _one_line(err)
    assert (li.refcounts(g), li.pgdir_cache(g), g.dead) == before              # nothing happened


def test_pae_only_functions_refuse_a_nonpae_guest():
    g = Guest(pae=False, seed=1)
    for call in (
        lambda: pt.spmd_addr(g.cpu, 0x1001, 0),
        lambda: pt.check_gpmd(g.cpu, 0x67),
        lambda: pt.release_pmd(g.host, (1, 0)),
        lambda: pt.guest_set_pmd(g.lg, 0, 0),
    ):
        with pytest.raises(ValueError, match="exists only under PAE") as err:
            call()
        _one_line(err)


VIEW_CASES = [
    (lambda g: li.walk_shadow(g, "x"), TypeError, "vaddr"),
    (lambda g: li.walk_shadow(g, 0, slot=5), ValueError, "slot=5"),
    (lambda g: li.walk_guest(g, -1), ValueError, "vaddr"),
    (lambda g: li.walk_guest(g, 0, gpgdir="top"), TypeError, "gpgdir"),
    (lambda g: li.shadow_table(g, 7), ValueError, "slot=7"),
    (lambda g: li.shadow_table(g, 0, "pte", vaddr=1.5), TypeError, "vaddr"),
    (lambda g: li.guest_table(g, None, "pgd", vaddr=-1), ValueError, "vaddr"),
    (lambda g: li.shadow_mappings(g, "0"), TypeError, "slot"),
    (lambda g: li.guest_mappings(g, below=-1), ValueError, "below"),
    (lambda g: li.compare(g, 0x08048000, -1), ValueError, "pages"),
    (lambda g: li.compare(g, "0", 1), TypeError, "start"),
    (lambda g: li.owner(g, None), TypeError, "frame"),
    (lambda g: li.decode(g, "pte", 0, 0, -1), ValueError, "value"),
    (lambda g: li.source_line("12"), TypeError, "lineno"),
    (lambda g: li.pgdir_cache(42), TypeError, "Guest"),
]


@pytest.mark.parametrize("call, error, name", VIEW_CASES)
def test_bad_arguments_to_the_views_name_the_argument(g, call, error, name):
    with pytest.raises(error) as err:
        call(g)
    assert name in _one_line(err)


GUEST_CASES = [
    (lambda g: g.touch("x"), TypeError, "vaddr"),
    (lambda g: g.touch(1 << 32), ValueError, "vaddr"),
    (lambda g: g.map(-4096), ValueError, "vaddr"),
    (lambda g: g.set_pte(0x08048000, "pte"), TypeError, "pte"),
    (lambda g: g.guest_pte(None), TypeError, "vaddr"),
    (lambda g: g.hypercall(14, -1), ValueError, "arg1"),
    (lambda g: g.switch_to("init"), TypeError, "proc"),
]


@pytest.mark.parametrize("call, error, name", GUEST_CASES)
def test_bad_arguments_to_the_guest_name_the_argument(g, call, error, name):
    with pytest.raises(error) as err:
        call(g)
    assert name in _one_line(err)


def test_the_fault_path_runs_no_check(g):
    """Faults, hypercalls and switches made by the Guest never enter boundary.py."""
    seen = set()

    def profile(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)

    for i in range(8):
        g.map(0x08000000 + i * 4096, 0x400 + i, accessed=False)
    other = g.new_process("q")
    sys.setprofile(profile)
    try:
        for i in range(8):
            g.touch(0x08000000 + i * 4096, write=bool(i % 2), user=True)
        g.switch_to(other)
        g.switch_to(g.processes[-2])
        g.touch(0x08000000, user=True)
        g.flush_all()
        g.touch(0xC0100000)
    finally:
        sys.setprofile(None)
    assert g.dead is None
    assert boundary.__file__ not in seen
    assert pt.__file__ in seen


# --- the MMU's TLB (host.tlb): a cached walk never answers for a changed table ---------------------
class _NoTLB(dict):
    """A TLB that never keeps anything: every touch walks."""

    def __setitem__(self, key, value):
        pass


def _state(g):
    return (
        li.refcounts(g), li.pgdir_cache(g), g.dead, [li.shadow_mappings(g, s) for s in range(4)],
        [g.read_phys(gpfn << 12, 4096) for gpfn in range(0x200, 0x240)],
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])
def test_the_tlb_changes_nothing_but_speed(pae, seed):
    import random

    rng = random.Random(seed)
    guests = [Guest(pae=pae, seed=seed, nr_cpus=2), Guest(pae=pae, seed=seed, nr_cpus=2)]
    guests[1].host.tlb = _NoTLB()
    for g in guests:
        g.procs = [g.new_process(f"p{i}") for i in range(5)]
    pages = [0x08000000 + i * 4096 for i in range(24)] + [0xC0000000 + i * 4096 for i in range(8)]
    for step in range(600):
        op = rng.random()
        vaddr = rng.choice(pages)
        args = (rng.random() < 0.4, rng.random() < 0.5)
        gpfn, flags = rng.randrange(0x200, 0x240), rng.choice([0x7, 0x5, 0x27, 0x67, 0x25, 0x3])
        proc, cpu, byte = rng.randrange(5), rng.randrange(2), rng.randrange(256)
        results = []
        for g in guests:
            if op < 0.55:
                results.append(g.touch(vaddr, *args))
            elif op < 0.75:
                if vaddr < 0xC0000000:
                    g.set_pte(vaddr, (gpfn << 12) | flags)
            elif op < 0.85:
                g.switch_to(g.procs[proc])
            elif op < 0.9:
                g.host.current_cpu = cpu
            elif op < 0.95:
                g.flush_user()
            elif op < 0.97:
                g.flush_all()
            else:
                g.write_phys(gpfn << 12, bytes([byte]) * 8)
        assert results[:1] == results[1:], (step, results)
    assert _state(guests[0]) == _state(guests[1])


def test_the_tlb_sees_every_change():
    g = Guest(seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    g.map(0x08048000, 0x300)
    first = g.touch(0x08048000, user=True)
    assert g.touch(0x08048000, user=True) is not first and g.touch(0x08048000, user=True).hpa == first.hpa
    g.map(0x08048000, 0x301, accessed=False)                                # the Guest changes its PTE
    moved = g.touch(0x08048000, user=True)
    assert moved.faults == 1 and moved.hpa != first.hpa                     # the shadow entry was dropped
    assert g.touch(0x08048000, write=True, user=True).faults == 1           # mapped read-only: a fault
    assert g.touch(0x08048000, write=True, user=True).faults == 0
    pt.guest_pagetable_clear_all(g.cpu)                                     # host side, by hand
    assert g.touch(0x08048000, user=True).faults == 1
    q = g.new_process("q")
    g.switch_to(q)
    assert g.touch(0x08048000, user=True).outcome == "guest-fault"          # another address space
    g.switch_to(p)
    assert g.touch(0x08048000, user=True).outcome == "ok"
    g.lg.dead = "killed by hand"
    assert g.touch(0x08048000, user=True).outcome == "dead"
