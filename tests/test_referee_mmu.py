"""Referee 2: QEMU's i386 page walker (Unicorn 2.1.4) walks the model's shadow tables."""

import pytest

pytest.importorskip("unicorn", reason="unicorn is not installed (pip install -e .[test])")

from lguest_book import mmu  # noqa: E402
from lguest_book.guest import Guest  # noqa: E402
from lguest_book.verify import mmu_referee as mr  # noqa: E402

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])


def varied_guest(pae):
    g = Guest(pae=pae, seed=1, nr_cpus=2)
    p = g.new_process("p")
    g.switch_to(p)
    g.map(0x08048000, 0x300)
    g.touch(0x08048000, user=True)                      # read: read-only shadow
    g.map(0x08049000, 0x301)
    g.touch(0x08049000, write=True, user=True)          # write: writable, dirty
    g.map(0x0804A000, 0x302, writable=False)
    g.touch(0x0804A000, user=True)                      # read-only page
    g.map(0x0804B000, 0x303, user=False)
    g.touch(0x0804B000)                                 # kernel-only page
    g.set_pte(0x0804C000, 0x1004 << 12 | 0x27)          # device memory: never shadowed
    g.touch(0xC0100000, write=True)
    return g


@LAYOUTS
def test_hardware_and_model_agree_on_every_access(pae, referee_log):
    g = varied_guest(pae)
    n, problems = mr.check(g)
    assert problems == []
    assert n > 1000
    referee_log(f"Unicorn MMU ({'PAE' if pae else 'non-PAE'}): {n} accesses of one varied top level, 0 divergences")


@LAYOUTS
def test_user_and_write_protection_really_are_checked_by_the_hardware(pae):
    g = varied_guest(pae)
    slot = g.cpu.cpu_pgd
    kernel = mr.engine(g, slot, user=False)
    user = mr.engine(g, slot, user=True)
    assert mr.translate(kernel, 0x0804B000, False) != -1      # kernel page, kernel read
    assert mr.translate(user, 0x0804B000, False) == -1        # kernel page, user read: fault
    assert mr.translate(kernel, 0x08048000, True) == -1       # read-only shadow, CR0.WP: fault
    assert mr.translate(user, 0x08049000, True) != -1         # writable and dirty
    assert mr.translate(user, 0x0804C000, False) == -1        # never shadowed


@LAYOUTS
def test_the_referee_notices_a_wrong_walk(pae, monkeypatch):
    """A model MMU that forgot the User bit would be caught."""
    g = varied_guest(pae)
    real = mmu.walk

    def careless(host, cr3, vaddr, write, user):
        return real(host, cr3, vaddr, write, False)

    monkeypatch.setattr(mmu, "walk", careless)
    n, problems = mr.check(g)
    assert problems and any("user mode of 0x804b" in p for p in problems)


@LAYOUTS
def test_workloads_agree(pae, referee_log):
    report = mr.run(pae, sequences=8, seed=3)
    assert report.divergences == []
    assert report.sequences == 15 and report.operations > 10_000
    referee_log(str(report))
