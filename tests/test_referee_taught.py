"""The C behaviours the book teaches (issue 14), decided by the compiled C: each scenario runs on
the model and on page_tables.c side by side (lguest_book.verify.c_referee), with no divergence,
and the model shows the behaviour the chapter describes."""

import random

import pytest

import lguest_book.inspect as li
from lguest_book import hypercalls as hc
from lguest_book import page_tables as pt
from lguest_book.guest import Guest
from lguest_book.lguest import PrandomSource
from lguest_book.verify import c_referee as cr
from lguest_book.verify.workload import MEM_PAGES, NR_CPUS

pytestmark = pytest.mark.skipif(cr.unavailable() is not None, reason=cr.unavailable() or "")


class KernelAtPair(cr.Pair):
    """A Pair whose Guest kernel starts at ``kernel_address`` (told to the C at INIT through
    lguest_data, like any Guest's)."""

    kernel_address = 0xC0000000

    def __post_init__(self):
        rng = random.Random(self.seed)
        values = [rng.getrandbits(32) for _ in range(cr.PRANDOM_VALUES)]
        self.g = Guest(pae=self.pae, mem_pages=MEM_PAGES, nr_cpus=NR_CPUS, prandom=PrandomSource(values=values),
                       boot=False, kernel_address=self.kernel_address)
        lg = self.g.lg
        self.c.cmd(f"new {MEM_PAGES} {NR_CPUS} {self.g.host.switcher_addr} {lg.mem_base} {lg.device_limit}")
        for v in values:
            self.c.cmd(f"rand {v}")
        assert int(self.c.cmd("launch")) == 0
        self.g.procs = []


def booted(c, pae, pair_class=cr.Pair):
    pair = pair_class(pae, 7, c)
    assert pair.step("launch", lambda g: None) is None
    assert pair.step("boot", lambda g: (g.boot(), g.procs.append(g.swapper))) is None
    return pair


def test_bit7_in_a_pte_kills_and_device_pages_lose_their_exit(machine):
    pae, c = machine
    pair = booted(c, pae)
    io = (pair.g.lg.pfn_limit + 1) << 12 | 0x27
    assert pair.step("device page, no bit 7", lambda g: g.set_pte(0x08048000, io)) is None
    assert pair.step("touch it", lambda g: g.touch(0x08048000, user=True)) is None
    assert pair.g.dead is None
    assert pair.step("device page, bit 7", lambda g: g.set_pte(0x08049000, io | 0x80)) is None
    assert pair.step("touch it", lambda g: g.touch(0x08049000, user=True)) is None
    assert pair.g.dead == "bad page table entry"
    assert pair.step("shutdown", lambda g: g.shutdown()) is None


def test_set_pgd_on_the_stacks_entry_unpins_it(machine):
    pae, c = machine
    pair = booted(c, pae)
    g = pair.g
    stack = [g.cpu.esp1 - 1 - i * 4096 for i in range(g.stack_pages)]
    index = g.x86.pgd_index(stack[0])
    assert pair.step("SET_PGD on the stack's entry",
                     lambda g: g.hypercall(hc.LHCALL_SET_PGD, g.current.gpgdir, index)) is None
    assert g.dead is None and not any(pt.page_writable(g.cpu, v) for v in stack)
    assert pair.step("a kernel touch", lambda g: g.touch(0xC0000000)) is None
    assert pair.step("full flush", lambda g: g.flush_all()) is None
    assert all(pt.page_writable(g.cpu, v) for v in stack)
    assert pair.step("shutdown", lambda g: g.shutdown()) is None


def test_map_switcher_is_never_reached_by_a_guest_killed_by_an_allocation(machine):
    pae, c = machine
    pair = booted(c, pae)
    for n in range(8):  # a new top level each time; one of its allocations fails
        assert pair.apply(("new_process",)) is None
        assert pair.apply(("fail_alloc", 1, n % 3)) is None
        assert pair.apply(("switch", len(pair.g.procs) - 1)) is None
        assert pair.apply(("touch", 0xC0000000, False, False)) is None  # tries to enter the Guest
        if pair.g.dead:
            break
        assert pair.apply(("fail_alloc", 0, 0)) is None
    assert pair.g.dead and pair.g.host.oopses == []
    assert pair.step("shutdown", lambda g: g.shutdown()) is None


def test_a_user_flush_misses_user_entries_beside_an_unaligned_kernel(machine):
    pae, c = machine
    if not pae:
        pytest.skip("0xB0000000 is on a 4 MiB boundary: the non-PAE flush is exact")
    KernelAtPair.kernel_address = 0xB0000000
    pair = booted(c, pae, KernelAtPair)
    v = 0x90000000
    assert pair.apply(("new_process",)) is None and pair.apply(("switch", 1)) is None
    assert pair.apply(("map", v, 0x300, True, True, False)) is None
    assert pair.apply(("touch", v, False, True)) is None
    assert pair.step("the Guest clears its PTE in memory",
                     lambda g: g.write_entry(li.walk_guest(g, v)[-1].where, 0)) is None
    assert pair.apply(("flush", False)) is None
    assert li.walk_shadow(pair.g, v)[-1].present          # stale, in the C as in the model
    assert pair.apply(("touch", v, False, True)) is None
    assert pair.step("shutdown", lambda g: g.shutdown()) is None
