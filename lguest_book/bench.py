"""Benchmarks of the model's engine: how fast faults, touches, set_pte and page-table
switches run, and how much memory a big guest takes.  Run with ``lguest-book bench``.

These are measurements, not tests: nothing here asserts a speed.  Each figure is the best
of several rounds (the least disturbed by whatever else the machine is doing).

* ``demand_page``: a process maps ``pages`` user pages; each round flushes the user part
  of the shadow (untimed) and then times one ``demand_page`` per page, a write fault on
  every other page, so shadow PTE pages are allocated and accessed/dirty bits written back.
* ``touch``: the same pages, already shadowed and touched once the same way (a walk that
  filled the TLB, untimed), touched again: the steady state of a Guest reading its memory.
* ``set_pte``: ``guest_set_pte`` on shadowed user addresses (the Accessed shortcut).
* ``new_pagetable``: context switches round-robin among six address spaces with four
  cached top levels (hits, and misses that evict a slot at random), each followed by two
  touches that refault what an eviction threw away.
* ``plain_fault``: a yardstick, not the model: the same non-PAE faults handled by one
  plain-Python function, so a reader can tell the model's cost from the machine's speed.
* ``bytecodes/fault``: how many bytecodes one steady-state ``demand_page`` executes, split
  into the page_tables.c twins and the rest of the model, against the yardstick's: exact
  counts (``sys.settrace`` opcode events), the same on every machine with one CPython, that
  explain the ratio (the time per bytecode is about the same in both).
* ``memory``: a 1 GiB guest (262,144 pages) at scale: ``demand_page`` on every page of its
  kernel mapping, then every page touched (present: the walk, and the TLB filling), then
  every shadow mapping thrown away and every page touched again (each touch faults:
  Guest -> hypercalls -> demand_page -> walk); the rates, and the growth of resident memory.
* ``compiled C``: with gcc -m32 and page_tables.c at hand, the referee's driver
  (verify/shim/driver.c, the real page_tables.c) built with a timing ``main``
  (verify/shim/c_bench.c) runs the same demand_page and set_pte calls on the same Guest set-up
  (recorded from the model as the referee records it), and the driver's own hardware walk for
  touch; the bench prints how many times the model's rate the C's is.

Times are CPU time of this process (``time.process_time``; the C's: of its own process), so
the time spent waiting for a core on a busy machine does not count.  The yardstick and the
model are measured in the same run: their ratio is the figure to compare between machines.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
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
    for vaddr in addrs:  # the timed kind of access, once: each walk fills the TLB
        g.touch(vaddr, False, True)
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


def _plain_fault(pages: int):
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

    return setup, body, len(work)


def bench_plain_fault(pages: int = 8192, rounds: int = ROUNDS) -> float:
    """The yardstick's faults per second (see :func:`_plain_fault`)."""
    return _best(rounds, *_plain_fault(pages))


def _bytecodes(body) -> "dict[str, int]":
    """Bytecodes ``body()`` executes, by the file of the function executing them (counted with
    ``sys.settrace``'s opcode events: exact, and the same on every machine of one CPython)."""
    counts: dict[str, int] = {}

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            name = os.path.basename(frame.f_code.co_filename)
            counts[name] = counts.get(name, 0) + 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        body()
    finally:
        sys.settrace(previous)
    return counts


def bench_bytecodes(pae: bool, pages: int = 1024) -> dict:
    """Bytecodes per fault, the bench's demand_page workload in its steady state (the Launcher's
    pages already faulted in, as in the timed rounds) against the yardstick's: ``{"page_tables":
    the twins of page_tables.c, "rest": the rest of the model (lgread/lgwrite, the modelled
    memory and reference counts), "yardstick": ...}``.  The loop driving them is not counted."""
    g, addrs = _user_guest(pae, pages)
    cpu = g.cpu
    work = [(vaddr, 2 if i % 2 else 0) for i, vaddr in enumerate(addrs)]
    demand_page = port.demand_page

    def body():
        for vaddr, errcode in work:
            demand_page(cpu, vaddr, errcode)

    body()  # the Launcher's pages faulted in once, as before the timed rounds
    port.guest_pagetable_flush_user(cpu)
    here = os.path.basename(__file__)
    model = _bytecodes(body)
    setup, plain_body, count = _plain_fault(pages)
    setup()
    plain = _bytecodes(plain_body)
    return {"page_tables": model.get("page_tables.py", 0) / len(work),
            "rest": sum(n for f, n in model.items() if f not in ("page_tables.py", here)) / len(work),
            "yardstick": sum(n for f, n in plain.items() if f == here) / count - model.get(here, 0) / len(work)}


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
    faulted = time.process_time()
    touch = g.touch
    vaddrs = [g.kernel_address + (gpfn << 12) for gpfn in range(pages)]
    for vaddr in vaddrs:  # every page present: the walk (and the TLB filling)
        touch(vaddr)
    touched = time.process_time()
    g.flush_all()  # LHCALL_FLUSH_TLB(1): every shadow mapping thrown away
    cleared = time.process_time()
    outcomes = {}
    for vaddr in vaddrs:  # every touch faults: Guest -> hypercalls -> demand_page -> walk
        outcome = touch(vaddr).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    refaulted = time.process_time()
    mapped = len(g.lg.launcher.mapped_frames())
    seconds = refaulted - start
    gc.collect()
    grown = _rss_mb() - before
    dead = g.dead
    del g
    return {
        "pages": pages, "mapped": mapped, "rss_growth_mb": round(grown, 1), "seconds": round(seconds, 1),
        "dead": dead, "demand_page/s": pages / (faulted - start), "touch/s": pages / (touched - faulted),
        "faulting touch/s": pages / (refaulted - cleared), "touch outcomes": outcomes,
    }


# --- the compiled C on the same work ----------------------------------------------------------
def _c_setup_script(pae: bool, pages: int) -> tuple[list[str], list[int], int]:
    """The bench's user Guest, built on the model while its doors are recorded, as the
    driver's protocol lines; the PTEs set_pte writes; the first user address."""
    import random

    from .lguest import PrandomSource
    from .verify import c_referee as cr

    rng = random.Random(1)
    values = [rng.getrandbits(32) for _ in range(cr.PRANDOM_VALUES)]
    g = Guest(pae=pae, mem_pages=max(4096, pages + 1024), prandom=PrandomSource(values=values), boot=False)
    lg = g.lg
    lines = [f"new {lg.pfn_limit} {g.host.nr_cpus} {g.host.switcher_addr} {lg.mem_base} {lg.device_limit}"]
    lines += [f"rand {v}" for v in values]
    lines.append("launch")
    base = 0x08000000
    addrs = [base + i * 4096 for i in range(pages)]
    with cr._Recorder(g) as rec:
        g.boot()
        proc = g.new_process("bench")
        g.switch_to(proc)
        for i, vaddr in enumerate(addrs):
            g.map(vaddr, 0x400 + i, accessed=False)
    for call in rec.calls:
        kind = call[0]
        if kind == "mem":
            _, paddr, data = call
            lines += [f"mem {paddr + k} {data[k:k + 8192].hex()}" for k in range(0, len(data), 8192)]
        elif kind == "hcall":
            lines.append("hcall " + " ".join(str(x) for x in call[1:]))
        elif kind == "fault":
            lines.append(f"fault {call[1]} {call[2]}")
        elif kind == "enter":
            lines.append("enter")
        elif kind == "walk":
            lines.append(f"walk {call[1]} {int(call[2])} {int(call[3])}")
    ptes = [g.guest_pte(vaddr) | 0x40 | 0x20 for vaddr in addrs]  # as after the faults, Accessed set
    if g.dead is not None:
        raise RuntimeError(f"the model's set-up killed the guest: {g.dead}")
    return lines, ptes, base


def bench_compiled_c(pae: bool, pages: int = 8192, rounds: int = ROUNDS, source=None) -> dict | str:
    """The compiled page_tables.c's rates on the bench's work, or why there are none.  ``source``:
    a page_tables.c or its cregit text (default: as ``verify`` finds it)."""
    import subprocess
    import tempfile

    from .verify import c_referee as cr

    if not cr.gcc_m32_available():
        return "no gcc -m32 here"
    try:
        # the referee's driver with a timing main, built as the referee builds its own
        exe = cr.build(pae, source, main="c_bench.c")
    except Exception as err:  # noqa: BLE001 - no source, or the build failed: say so, in one line
        return f"not built ({str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__})"
    lines, ptes, base = _c_setup_script(pae, pages)
    with tempfile.TemporaryDirectory() as tmp:
        script, values = os.path.join(tmp, "setup"), os.path.join(tmp, "ptes")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(values, "w") as f:
            f.write("\n".join(str(p) for p in ptes) + "\n")
        done = subprocess.run([str(exe), script, str(base), str(pages), str(rounds), values],
                              capture_output=True, text=True, timeout=600)
    report = {line.split()[0]: line.split()[1:] for line in done.stderr.splitlines() if line.strip()}
    if done.returncode != 0 or "dead" not in report:
        return f"the C run failed (exit {done.returncode})"
    if report["dead"] != ["no"] or int(report["demand_page"][1]) != pages:
        return f"the C run did other work (dead: {' '.join(report['dead'])}, fixed {report['demand_page'][1]} of {pages})"
    return {
        "demand_page/s": 1e9 / float(report["demand_page"][0]),
        "set_pte/s": 1e9 / float(report["set_pte"][0]),
        "touch/s": 1e9 / float(report["touch"][0]),
    }


def run_all(quick: bool = False, source=None) -> dict:
    """Every figure, both layouts.  ``quick`` uses small sizes (for a smoke test); ``source`` is
    the page_tables.c the compiled C is built from (default: as ``verify`` finds it)."""
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
    results["bytecodes/fault"] = {("PAE" if pae else "non-PAE"): bench_bytecodes(pae, min(size, 1024)) for pae in (False, True)}
    results["compiled C"] = {name: bench_compiled_c(name == "PAE", size, rounds, source) for name in ("non-PAE", "PAE")}
    results["memory"] = bench_memory(False, 1 / 64 if quick else 1.0)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


def _ratio(value: float) -> str:
    return f"{value:.3g}x" if value < 10 else f"{value:.0f}x"


SMOKE = ("SMOKE RUN (--quick: small sizes, one round): these figures, the C/model ratios above all, "
         "are not comparable with a full run's; run `lguest-book bench` for those")


def format_results(results: dict, quick: bool = False) -> str:
    """The table: for each figure and layout, operations per second (a count: decimal), the
    ratio to the yardstick, and how many times the model's rate the compiled C's rate is.
    ``quick``: the figures of a smoke run, said so above and below the table."""
    plain = results["plain_fault/s"]
    c = results.get("compiled C", {})
    ratio = "C/model*" if quick else "C/model"
    head = f"{'':16}" + "".join(f"{name + ' /s':>13}{'yardstick':>11}{ratio:>9}" for name in ("non-PAE", "PAE"))
    lines = [SMOKE, head] if quick else [head]
    for key in results["non-PAE"]:
        row = f"{key:16}"
        for name in ("non-PAE", "PAE"):
            rate = results[name][key]
            theirs = c.get(name)
            vs_c = _ratio(theirs[key] / rate) if isinstance(theirs, dict) and key in theirs else "-"
            row += f"{rate:>13,.0f}{_ratio(rate / plain):>11}{vs_c:>9}"
        lines.append(row)
    lines.append(
        f"yardstick: a one-function plain-Python fault path does {plain:,.0f} faults/s here; "
        f"demand_page reaches {results['non-PAE']['demand_page/s'] / plain:.0%} of it (non-PAE), "
        f"{results['PAE']['demand_page/s'] / plain:.0%} (PAE); touch {results['non-PAE']['touch/s'] / plain:.2f}x, "
        f"{results['PAE']['touch/s'] / plain:.2f}x"
    )
    counted = results.get("bytecodes/fault")
    if counted:
        y = counted["non-PAE"]["yardstick"]
        lines.append(
            "bytecodes a fault executes (exact, the same on any machine with this Python): "
            + "; ".join(f"{name} demand_page {b['page_tables'] + b['rest']:.0f} (the page_tables.c twins "
                        f"{b['page_tables']:.0f}, lgread/lgwrite and the modelled memory {b['rest']:.0f})"
                        for name, b in counted.items())
            + f"; the yardstick {y:.0f}.  At about the same time per bytecode, a third of the yardstick's "
            f"rate allows {3 * y:.0f} a fault")
    for name in ("non-PAE", "PAE"):
        theirs = c.get(name)
        if isinstance(theirs, dict):
            shown = ", ".join(f"{k} {v:,.0f}" for k, v in theirs.items())
            lines.append(f"compiled C ({name}, gcc -m32 -O1, the referee's driver): {shown} "
                         "(its touch is the driver's walk, which saves the signal mask each time)")
        elif theirs:
            lines.append(f"compiled C ({name}): {theirs}")
    m = results["memory"]
    lines.append(
        f"at scale: {m['pages']:,} guest pages ({m['pages'] * 4 // 1024} MiB): demand_page "
        f"{m['demand_page/s']:,.0f}/s, touch of present pages {m['touch/s']:,.0f}/s, faulting touch "
        f"{m['faulting touch/s']:,.0f}/s ({_ratio(m['demand_page/s'] / plain)}, {_ratio(m['touch/s'] / plain)}, "
        f"{_ratio(m['faulting touch/s'] / plain)} the yardstick); {m['seconds']} s of CPU; resident memory "
        f"grew {m['rss_growth_mb']} MB"
    )
    if quick:
        lines.append("* " + SMOKE)
    return "\n".join(lines)
