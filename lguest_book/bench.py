"""Benchmarks of the model's engine: how fast faults, touches, set_pte and page-table
switches run, and how much memory a big guest takes.  Run with ``lguest-book bench``.

These are measurements, not tests: nothing here asserts a speed.  Each figure is the best
of several rounds (the least disturbed by whatever else the machine is doing).

* ``demand_page``: a process maps ``pages`` user pages; each round flushes the user part
  of the shadow (untimed) and then times one ``demand_page`` per page, a write fault on
  every other page, so shadow PTE pages are allocated and accessed/dirty bits written back.
* ``touch``: the same pages, already shadowed, touched through the hardware walk.
* ``set_pte``: ``guest_set_pte`` on shadowed user addresses (the Accessed shortcut).
* ``new_pagetable``: context switches round-robin among six address spaces with four
  cached top levels (hits, and misses that evict a slot at random), each followed by two
  touches that refault what an eviction threw away.
* ``plain_fault``: a yardstick, not the model: the same non-PAE faults handled by one
  plain-Python function, so a reader can tell the model's cost from the machine's speed.
* ``memory``: a 1 GiB guest whose kernel mapping of all its memory is fully shadowed.
"""

from __future__ import annotations

import gc
import os
import resource
import time

from .boundary import port  # the raw twins, as the Guest's fault path calls them
from .guest import Guest

ROUNDS = 5


def _best(rounds: int, setup, body, count: int) -> float:
    """Operations per second of ``body`` (after ``setup``), best of ``rounds``.  Time is the
    CPU time of this process (``time.process_time``), so the time spent waiting for a core on
    a busy machine is not counted; what other processes do to the caches still is."""
    best = float("inf")
    gc.disable()
    try:
        for _ in range(rounds):
            setup()
            start = time.process_time()
            body()
            best = min(best, time.process_time() - start)
    finally:
        gc.enable()
    return count / best


def _user_guest(pae: bool, pages: int) -> tuple[Guest, list[int]]:
    g = Guest(pae=pae, mem_pages=max(4096, pages + 1024), seed=1)
    proc = g.new_process("bench")
    g.switch_to(proc)
    base = 0x08000000
    addrs = [base + i * 4096 for i in range(pages)]
    for i, vaddr in enumerate(addrs):
        g.map(vaddr, 0x400 + i, accessed=False)
    return g, addrs


def bench_demand_page(pae: bool, pages: int = 8192, rounds: int = ROUNDS) -> float:
    g, addrs = _user_guest(pae, pages)
    cpu = g.cpu
    demand_page = port.demand_page
    work = [(vaddr, 2 if i % 2 else 0) for i, vaddr in enumerate(addrs)]

    def setup():
        port.guest_pagetable_flush_user(cpu)

    def body():
        for vaddr, errcode in work:
            demand_page(cpu, vaddr, errcode)

    rate = _best(rounds, setup, body, len(work))
    assert g.dead is None, g.dead
    return rate


def bench_touch(pae: bool, pages: int = 8192, rounds: int = ROUNDS) -> float:
    g, addrs = _user_guest(pae, pages)
    for vaddr in addrs:
        g.touch(vaddr, write=True, user=True)
    touch = g.touch

    def body():
        for vaddr in addrs:
            touch(vaddr, False, True)

    return _best(rounds, lambda: None, body, len(addrs))


def bench_set_pte(pae: bool, pages: int = 4096, rounds: int = ROUNDS) -> float:
    g, addrs = _user_guest(pae, pages)
    for vaddr in addrs:
        g.touch(vaddr, user=True)
    cpu, gpgdir = g.cpu, g.current.gpgdir
    ptes = [g.guest_pte(vaddr) | 0x20 for vaddr in addrs]
    work = list(zip(addrs, ptes))
    guest_set_pte = port.guest_set_pte

    def body():
        for vaddr, pte in work:
            guest_set_pte(cpu, gpgdir, vaddr, pte)

    return _best(rounds, lambda: None, body, len(work))


def bench_new_pagetable(pae: bool, switches: int = 2000, rounds: int = ROUNDS) -> float:
    """Context switches per second: round-robin among six address spaces (four cached top
    levels, so some switches evict a slot at random), each followed by the process touching
    two of its pages (refaulted when its slot was evicted)."""
    g = Guest(pae=pae, mem_pages=8192, seed=2)
    procs = [g.new_process(f"p{i}") for i in range(6)]
    for n, proc in enumerate(procs):
        g.switch_to(proc)
        for i in range(16):
            g.map(0x08000000 + i * 4096, 0x400 + 16 * n + i)
    cpu, touch = g.cpu, g.touch
    order = [procs[i % len(procs)].gpgdir for i in range(switches)]

    def body():
        for gpgdir in order:
            port.guest_new_pagetable(cpu, gpgdir)
            touch(0x08000000, False, True)
            touch(0x08001000, True, True)

    rate = _best(rounds, lambda: None, body, switches)
    assert g.dead is None, g.dead
    return rate


def bench_plain_fault(pages: int = 8192, rounds: int = ROUNDS) -> float:
    """A yardstick, not the model: the fewest Python operations a non-PAE shadow fault can
    take.  One function, Python lists for the Guest's and the shadow tables, the same
    decisions as ``demand_page`` on the same workload (present, write and user checks, the
    bound and PSE check, a frame from a lookup table, a reference taken and given back,
    Accessed/Dirty written back, writable only if dirty).  The ratio of ``demand_page``/s
    to this says what the model's faithful structure costs on the machine it runs on."""
    guest_top = [0] * 1024
    guest_ptes: dict[int, list[int]] = {}
    addrs = [0x08000000 + i * 4096 for i in range(pages)]
    next_frame = 100
    for i, vaddr in enumerate(addrs):
        top = vaddr >> 22
        if not guest_top[top] & 1:
            guest_ptes[next_frame] = [0] * 1024
            guest_top[top] = (next_frame << 12) | 0x67
            next_frame += 1
        guest_ptes[guest_top[top] >> 12][(vaddr >> 12) & 1023] = ((0x400 + i) << 12) | 0x7
    limit = max(4096, pages + 1024)
    host_frame = list(range(0x10000, 0x10000 + limit))
    refs: dict[int, int] = {}

    def fault(shadow: dict, vaddr: int, errcode: int) -> bool:
        top = guest_top[vaddr >> 22]
        if not top & 1 or top & 0xF98 or (top >> 12) >= limit:
            return False
        ptes = guest_ptes[top >> 12]
        index = (vaddr >> 12) & 1023
        pte = ptes[index]
        if not pte & 1 or (errcode & 2 and not pte & 2) or (errcode & 4 and not pte & 4):
            return False
        if pte & 0x80 or (pte >> 12) >= limit:
            return False
        pte |= 0x60 if errcode & 2 else 0x20
        spage = shadow.get(vaddr >> 22)
        if spage is None:
            spage = shadow[vaddr >> 22] = [0] * 1024
        old = spage[index]
        if old & 1:
            refs[old >> 12] -= 1
        frame = host_frame[pte >> 12]
        refs[frame] = refs.get(frame, 0) + 1
        spage[index] = (frame << 12) | (pte & 0xEFF if pte & 0x40 else pte & 0xEFD)
        ptes[index] = pte
        return True

    work = [(vaddr, 2 if i % 2 else 0) for i, vaddr in enumerate(addrs)]
    shadow: dict = {}

    def setup():
        shadow.clear()

    def body():
        for vaddr, errcode in work:
            fault(shadow, vaddr, errcode)

    return _best(rounds, setup, body, len(work))


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_memory(pae: bool = False, gib: float = 1.0) -> dict:
    """Build a guest of ``gib`` GiB, shadow its kernel mapping of every page, and report the
    growth of this process's resident memory."""
    gc.collect()
    before = _rss_mb()
    start = time.process_time()
    pages = int(gib * 2**18)
    # A 2G/2G split (CONFIG_VMSPLIT_2G) so the kernel can map every page of a 1 GiB guest.
    g = Guest(pae=pae, mem_pages=pages, stack_pages=0, seed=3, kernel_address=0x80000000)
    cpu = g.cpu
    for gpfn in range(pages):
        port.demand_page(cpu, g.kernel_address + (gpfn << 12), 0)
    mapped = len(g.lg.launcher.mapped_frames())
    seconds = time.process_time() - start
    gc.collect()
    grown = _rss_mb() - before
    dead = g.dead
    del g
    return {"pages": pages, "mapped": mapped, "rss_growth_mb": round(grown, 1), "seconds": round(seconds, 1), "dead": dead}


def run_all(quick: bool = False) -> dict:
    """Every figure, both layouts.  ``quick`` uses small sizes (for a smoke test)."""
    size = 512 if quick else 8192
    rounds = 1 if quick else ROUNDS
    results: dict = {}
    for pae in (False, True):
        name = "PAE" if pae else "non-PAE"
        results[name] = {
            "demand_page/s": bench_demand_page(pae, size, rounds),
            "touch/s": bench_touch(pae, size, rounds),
            "set_pte/s": bench_set_pte(pae, size // 2, rounds),
            "new_pagetable/s": bench_new_pagetable(pae, 300 if quick else 2000, rounds),
        }
    results["plain_fault/s"] = bench_plain_fault(size, rounds)
    results["memory"] = bench_memory(False, 1 / 64 if quick else 1.0)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


def format_results(results: dict) -> str:
    lines = [f"{'':16}{'non-PAE':>14}{'PAE':>14}"]
    for key in results["non-PAE"]:
        lines.append(f"{key:16}{results['non-PAE'][key]:>14,.0f}{results['PAE'][key]:>14,.0f}")
    plain = results["plain_fault/s"]
    share = results["non-PAE"]["demand_page/s"] / plain
    lines.append(
        f"yardstick: a one-function plain-Python fault path does {plain:,.0f} faults/s here; "
        f"demand_page (non-PAE) reaches {share:.0%} of it"
    )
    m = results["memory"]
    lines.append(
        f"memory: {m['pages']:,} guest pages ({m['pages'] * 4 // 1024} MiB) fully shadowed in "
        f"{m['seconds']} s; resident memory grew {m['rss_growth_mb']} MB"
    )
    return "\n".join(lines)
