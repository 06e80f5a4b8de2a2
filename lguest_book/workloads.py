"""Seeded Guest workloads: what a small Unix-like Guest kernel does to its page tables.

A workload is a list of operations, generated from a :class:`WorkloadSpec` and a seed, and run
on a :class:`~lguest_book.guest.Guest` through its public API only (the same calls a Guest
kernel makes: hypercalls, its own stores, memory accesses).  Nothing here reaches into the
host.  The operations:

==============================  ==================================================================
``("fork", p)``                 process slot ``p`` gets a new address space; its pages are mapped
``("exit", p)``                 its pages are unmapped and its top level freed
``("switch", p)``               the scheduler runs process ``p`` (LHCALL_NEW_PGTABLE)
``("touch", vaddr, w, u)``      one memory access (write?, user mode?)
``("mmap", vaddr)``             a new page mapped in the current process (SET_PTE)
``("munmap", vaddr)``           a page of the current process unmapped (SET_PTE of 0)
``("kmap", vaddr, gpfn)``       a kernel mapping changed the way Linux's kmap_atomic() changes one
``("kunmap", vaddr)``           ... and its kunmap_atomic()
``("flush", all)``              LHCALL_FLUSH_TLB
==============================  ==================================================================

How the Guest sets Accessed/Dirty when it maps a page is a choice (``ad=``): ``"eager"`` sets
Accessed on every new PTE and Dirty on pages mapped for a write (what Linux does), ``"lazy"``
sets Accessed only, ``"none"`` sets neither (the hardware or the host must).

The kmap operations follow what a 32-bit paravirtualized Linux does for a highmem page (what
arch/x86/lguest/boot.c makes of kmap_atomic: a PTE set with no address to go with it, which the
Guest can only announce by flushing everything once it runs more than one address space; the
unmap is a PTE cleared with its address, then a single-address flush).  That sequence is the
model's reading of boot.c, stated in our words; the Guest kernel is the model's invention.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from . import hypercalls as _hc
from .guest import Guest
from .x86 import PAGE_SHIFT, PAGE_SIZE

USER_BASE = 0x08048000  # where each process's pages start
KMAP_BASE = 0xFF800000  # the model's kmap window (below the Switcher in both layouts)
KMAP_PTE_FLAGS = 0x063  # present, writable, accessed, dirty: what kmap_atomic writes

PATTERNS = ("sequential", "random", "working-set")
SCHEDULERS = ("round-robin", "random", "locality")
AD_POLICIES = ("eager", "lazy", "none")


@dataclass(frozen=True)
class WorkloadSpec:
    """What a workload does.  Every field has a default; ``replace(spec, field=value)``."""

    ops: int = 20_000  # operations after the initial forks
    processes: int = 6
    pages: int = 32  # pages mapped per process
    pattern: str = "working-set"  # how a process picks the page it touches
    working_set: int = 8  # pages of the working set (pattern "working-set")
    quantum: int = 40  # mean accesses between context switches
    scheduler: str = "round-robin"
    hot: int = 3  # processes the "locality" scheduler favours (80 % of its picks)
    write_fraction: float = 0.3
    kernel_fraction: float = 0.1  # accesses to kernel memory (its direct mapping)
    kernel_pages: int = 128  # kernel pages those accesses spread over
    mmap_fraction: float = 0.0  # chance per access of an munmap+mmap in the current process
    churn: float = 0.0  # chance that a context switch is an exit followed by a fork
    seed: int = 0

    def __post_init__(self):
        for name in ("ops", "processes", "pages", "working_set", "quantum", "hot", "kernel_pages"):
            value = getattr(self, name)
            if value.__class__ is not int or value < (0 if name == "ops" else 1):
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name in ("write_fraction", "kernel_fraction", "mmap_fraction", "churn"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name}={value!r} must be a fraction between 0 and 1")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern={self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")


def scheduler_trace(spec: WorkloadSpec, switches: int, rng: random.Random) -> list[int]:
    """Which process runs after each context switch."""
    n = spec.processes
    if spec.scheduler == "round-robin":
        return [i % n for i in range(1, switches + 1)]
    if spec.scheduler == "random":
        return [rng.randrange(n) for _ in range(switches)]
    hot = min(spec.hot, n)
    return [rng.randrange(hot) if rng.random() < 0.8 or hot == n else rng.randrange(hot, n) for _ in range(switches)]


def generate(spec: WorkloadSpec) -> list[tuple]:
    """The operations of ``spec``: forks of every process, then ``spec.ops`` operations."""
    rng = random.Random(spec.seed)
    ops: list[tuple] = [("fork", p) for p in range(spec.processes)]
    ops.append(("switch", 0))
    current, cursor = 0, [0] * spec.processes
    sets = [rng.sample(range(spec.pages), min(spec.working_set, spec.pages)) for _ in range(spec.processes)]
    switch_p = 1.0 / spec.quantum
    schedule = iter(scheduler_trace(spec, spec.ops + 1, rng))
    append, rand, randrange = ops.append, rng.random, rng.randrange
    done = 0
    while done < spec.ops:
        r = rand()
        if r < switch_p:
            nxt = next(schedule)
            if spec.churn and rand() < spec.churn:
                append(("exit", nxt))
                append(("fork", nxt))
                sets[nxt] = rng.sample(range(spec.pages), min(spec.working_set, spec.pages))
                cursor[nxt] = 0
                done += 2
            append(("switch", nxt))
            current = nxt
            done += 1
            continue
        if spec.mmap_fraction and rand() < spec.mmap_fraction:
            page = USER_BASE + randrange(spec.pages) * PAGE_SIZE
            append(("munmap", page))
            append(("mmap", page))
            done += 2
            continue
        write = rand() < spec.write_fraction
        if rand() < spec.kernel_fraction:
            append(("ktouch", randrange(spec.kernel_pages), write))
        else:
            if spec.pattern == "sequential":
                n = cursor[current]
                cursor[current] = (n + 1) % spec.pages
            elif spec.pattern == "random":
                n = randrange(spec.pages)
            else:
                ws = sets[current]
                n = ws[randrange(len(ws))] if rand() < 0.9 else randrange(spec.pages)
            append(("touch", USER_BASE + n * PAGE_SIZE, write, True))
        done += 1
    return ops


@dataclass
class Stats:
    """What a run cost.  Counts, all of them."""

    ops: int = 0
    accesses: int = 0
    faults: int = 0  # page faults the host handled (demand_page calls)
    guest_faults: int = 0  # faults reflected to the Guest
    hypercalls: dict = field(default_factory=dict)  # by name
    switches: int = 0
    first_touch_faults: int = 0  # faults on the first access after a page was mapped
    dead: str | None = None

    @property
    def exits(self) -> int:
        """Every trap into the host: faults plus hypercalls."""
        return self.faults + sum(self.hypercalls.values())

    def as_row(self) -> dict:
        row = {"ops": self.ops, "accesses": self.accesses, "faults": self.faults,
               "guest_faults": self.guest_faults, "switches": self.switches, "exits": self.exits}
        for name in sorted(self.hypercalls):
            row[f"hc_{name}"] = self.hypercalls[name]
        return row


_HC_NAMES = {
    _hc.LHCALL_NEW_PGTABLE: "new_pgtable", _hc.LHCALL_SET_PTE: "set_pte", _hc.LHCALL_SET_PGD: "set_pgd",
    _hc.LHCALL_FLUSH_TLB: "flush_tlb", _hc.LHCALL_SET_PMD: "set_pmd", _hc.LHCALL_SET_STACK: "set_stack",
    _hc.LHCALL_LGUEST_INIT: "lguest_init",
}


class Runner:
    """Runs workload operations on one Guest, counting what each costs.

    ``record_accesses=True`` keeps ``(process, vaddr)`` of every access in ``accesses`` (for
    the TLB model of the nested-paging experiment)."""

    def __init__(self, guest: Guest, ad: str = "eager", record_accesses: bool = False):
        if not isinstance(guest, Guest):
            raise TypeError(f"guest must be a Guest, not {type(guest).__name__}")
        if ad not in AD_POLICIES:
            raise ValueError(f"ad={ad!r} is not one of {', '.join(AD_POLICIES)}")
        self.g = guest
        self.ad = ad
        self.procs: dict[int, object] = {}
        self.mapped: dict[int, dict[int, int]] = {}  # slot -> vaddr -> gpfn
        self.kernel_vaddr = guest.kernel_address + 0x00400000  # above the kernel image
        self.stats = Stats()
        self.current: int | None = None
        self.accesses: list[tuple[int, int]] | None = [] if record_accesses else None
        self._fresh: set[tuple[int, int]] = set()
        self._hypercall_counting()

    # --- counting hypercalls: wrap the Guest's one door into the host -----------------------
    def _hypercall_counting(self) -> None:
        counts = self.stats.hypercalls
        do_hcall = _hc.do_hcall

        def counted(cpu, call, *args):
            name = _HC_NAMES.get(call, str(call))
            counts[name] = counts.get(name, 0) + 1
            return do_hcall(cpu, call, *args)

        self._counted = counted

    # --- the Guest kernel's operations -----------------------------------------------------
    def _map(self, slot: int, vaddr: int, write: bool) -> None:
        g = self.g
        gpfn = g.alloc_page()
        eager = self.ad == "eager"
        g.map(vaddr, gpfn, proc=self.procs[slot], accessed=self.ad != "none", dirty=eager and write)
        self.mapped[slot][vaddr] = gpfn
        self._fresh.add((slot, vaddr))

    def _fork(self, slot: int) -> None:
        g = self.g
        proc = g.new_process(f"p{slot}")
        self.procs[slot] = proc
        self.mapped[slot] = {}
        for n in range(self._pages):
            self._map(slot, USER_BASE + n * PAGE_SIZE, write=(n % 3 == 0))

    def _exit(self, slot: int) -> None:
        g = self.g
        proc = self.procs.pop(slot)
        for vaddr, gpfn in self.mapped.pop(slot).items():
            g.unmap(vaddr, proc=proc)
            g.free_page(gpfn)
        if self.current == slot:
            self.current = None

    def run(self, ops: list[tuple], pages: int = 32, progress=None) -> Stats:
        """Run ``ops`` (``pages``: pages a fork maps).  ``progress(done, total)`` is called
        now and then."""
        g, st = self.g, self.stats
        self._pages = pages
        saved = _hc.do_hcall
        _hc.do_hcall = self._counted  # every hypercall of the Guest is counted
        try:
            self._run(ops, progress)
        finally:
            _hc.do_hcall = saved
        st.dead = g.dead
        return st

    def _run(self, ops, progress) -> None:
        g, st = self.g, self.stats
        touch = g.touch
        kbase = self.kernel_vaddr
        record = self.accesses
        fresh = self._fresh
        total = len(ops)
        step = max(1, total // 100)
        for i, op in enumerate(ops):
            if g.dead is not None:
                break
            kind = op[0]
            if kind == "touch":
                if self.current is None:
                    continue
                a = touch(op[1], op[2], op[3])
                st.accesses += 1
                if a.faults:
                    st.faults += a.faults
                    if (self.current, op[1]) in fresh:
                        st.first_touch_faults += 1
                if fresh:
                    fresh.discard((self.current, op[1]))
                if a.outcome == "guest-fault":
                    st.guest_faults += 1
                if record is not None:
                    record.append((self.current, op[1]))
            elif kind == "ktouch":
                vaddr = kbase + op[1] * PAGE_SIZE
                a = touch(vaddr, op[2], False)
                st.accesses += 1
                st.faults += a.faults
                if record is not None:
                    record.append((-1, vaddr))
            elif kind == "switch":
                slot = op[1]
                if slot not in self.procs:
                    self._fork(slot)
                g.switch_to(self.procs[slot])
                self.current = slot
                st.switches += 1
            elif kind == "fork":
                self._fork(op[1])
            elif kind == "exit":
                if op[1] in self.procs:
                    self._exit(op[1])
            elif kind == "mmap":
                if self.current is not None and op[1] not in self.mapped[self.current]:
                    self._map(self.current, op[1], write=False)
            elif kind == "munmap":
                if self.current is not None:
                    gpfn = self.mapped[self.current].pop(op[1], None)
                    if gpfn is not None:
                        g.unmap(op[1])
                        g.free_page(gpfn)
            elif kind == "kmap":
                self.kmap(op[1], op[2])
            elif kind == "kunmap":
                self.kunmap(op[1])
            elif kind == "flush":
                g.flush_all() if op[1] else g.flush_user()
            else:
                raise ValueError(f"unknown workload operation {kind!r}")
            st.ops += 1
            if progress is not None and i % step == 0:
                progress(i, total)
        if progress is not None:
            progress(total, total)

    # --- highmem: kmap_atomic / kunmap_atomic ---------------------------------------------
    def kmap(self, vaddr: int, gpfn: int) -> None:
        """The Guest maps ``gpfn`` at kernel address ``vaddr`` without saying where: it
        writes its PTE, then (running several address spaces) asks for a full flush."""
        g = self.g
        g.write_entry(g.pte_address(vaddr), (gpfn << PAGE_SHIFT) | KMAP_PTE_FLAGS)
        g.flush_all()

    def kunmap(self, vaddr: int) -> None:
        """The Guest clears the kmap PTE with its address, then flushes that one address
        (which lguest's Guest does with a SET_PTE of 0 as well)."""
        g = self.g
        g.unmap(vaddr)
        g.hypercall(_hc.LHCALL_SET_PTE, g.current.gpgdir, vaddr, 0)


def run(spec: WorkloadSpec, *, pae: bool = False, ad: str = "eager", guest: Guest | None = None,
        progress=None, record_accesses: bool = False, **guest_kwargs) -> tuple[Stats, Runner]:
    """Generate ``spec``'s workload and run it on a new Guest (or ``guest``)."""
    g = guest if guest is not None else Guest(pae=pae, seed=spec.seed, **guest_kwargs)
    runner = Runner(g, ad=ad, record_accesses=record_accesses)
    stats = runner.run(generate(spec), pages=spec.pages, progress=progress)
    return stats, runner


__all__ = ["WorkloadSpec", "generate", "run", "Runner", "Stats", "scheduler_trace", "replace"]
