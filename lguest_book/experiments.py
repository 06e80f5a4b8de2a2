"""Experiments: the quantitative claims of page_tables.c's comments, measured on the model.

Each experiment takes one claim of the C's literate comments (H:410, H:420, H:435, M:007,
M:009, H:490), runs seeded Guest workloads (:mod:`lguest_book.workloads`) on the model and on
small variants of it, and returns a :class:`Result`: a table of numbers (CSV), figures (PNG),
``findings`` (the numbers a chapter asserts) and a summary in sentences computed from them.

    lguest-book experiment list
    lguest-book experiment run h435-eviction --quick --seed 0 --out results/

What the numbers can and cannot say.  The model counts *events* — page faults the host took,
hypercalls, calls into page_tables.c, pages pinned — not time.  Everything a real host spends
around those events (the world switch, caches, the Launcher) is outside the model, so the
experiments compare counts, and where a cost model is needed (H:490) it is stated and its
parameter swept rather than assumed.  The Guest kernel and its workloads are the model's
invention: a Linux Guest does far more, and the conclusions are only as general as the
workloads.

Variants of the C (a different eviction choice, a kernel part not kept, prefaulting) are
swapped into the model for the length of one run with :func:`lguest_book.exercises.use`, the
same mechanism the graded exercises use; a different size of the pgdir cache is the C
compiled with another ``ARRAY_SIZE(lg->pgdirs)``.
"""

from __future__ import annotations

import csv
import io
import random
import sys
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import exercises
from . import inspect as li
from . import lguest as _lguest
from . import page_tables as pt
from .guest import FIRST_FREE_PFN, Guest
from .lguest import PrandomSource
from .trace import CallCounter
from .workloads import KMAP_BASE, USER_BASE, Runner, WorkloadSpec, generate
from .x86 import PAGE_SHIFT, PAGE_SIZE, _PAGE_PRESENT

MIB = 1 << 20


# =============================================================================================
# Results
# =============================================================================================
class Figure:
    """A matplotlib figure that shows itself as a PNG (no pyplot, reproducible bytes)."""

    def __init__(self, fig, name: str):
        self.fig = fig
        self.name = name

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
        return buf.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        return f"<figure {self.name}>"


@dataclass
class Result:
    """What one experiment measured."""

    name: str
    quick: bool
    seed: int
    columns: list[str]
    rows: list[dict]
    findings: dict
    summary: list[str]
    figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row)
        return buf.getvalue()

    def write(self, out: Path | str) -> list[Path]:
        """Write ``NAME.csv``, ``NAME.txt`` (the summary) and ``NAME-*.png`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{self.name}.csv", out / f"{self.name}.txt"]
        paths[0].write_text(self.csv())
        size = "quick" if self.quick else "full"
        paths[1].write_text(f"{self.name} ({size} size, seed {self.seed})\n" + "\n".join(self.summary) + "\n")
        for figure in self.figures:
            path = out / f"{self.name}-{figure.name}.png"
            path.write_bytes(figure.png())
            paths.append(path)
        return paths

    def table(self, columns: list[str] | None = None) -> str:
        """The numbers as a fixed-width text table."""
        columns = columns or self.columns
        cells = [[_cell(row.get(c, "")) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{self.name}: {len(self.rows)} rows\n" + "\n".join(self.summary)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


class Progress:
    """A progress bar on a stream (stderr): redrawn in place on a terminal, a line every
    10 % otherwise.  ``Progress(None)`` is silent."""

    def __init__(self, stream=sys.stderr, label: str = ""):
        self.stream = stream
        self.label = label
        self._shown = -1
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def __call__(self, done: float, total: float) -> None:
        if self.stream is None or total <= 0:
            return
        pct = int(100 * min(done, total) / total)
        if self._tty:
            if pct != self._shown:
                bar = "#" * (pct // 4)
                self.stream.write(f"\r{self.label:<22} [{bar:<25}] {pct:3d}%")
                if pct == 100:
                    self.stream.write("\n")
                self.stream.flush()
        elif pct // 10 != self._shown // 10 or (pct == 100 and self._shown != 100):
            self.stream.write(f"{self.label}: {pct}%\n")
            self.stream.flush()
        self._shown = pct


# =============================================================================================
# Variants of the C, and a pgdir cache of another size
# =============================================================================================
@contextmanager
def pgdir_slots(n: int):
    """The C compiled with ``struct pgdir pgdirs[n]``: Guests made inside the block have ``n``
    cached top levels, and the port's loops run over ``n``."""
    if n.__class__ is not int or not 1 <= n <= 64:
        raise ValueError(f"pgdir slots={n!r} must be an integer from 1 to 64")
    saved = pt.PGDIR_SLOTS, _lguest.PGDIR_SLOTS
    pt.PGDIR_SLOTS = _lguest.PGDIR_SLOTS = n
    try:
        yield n
    finally:
        pt.PGDIR_SLOTS, _lguest.PGDIR_SLOTS = saved


def rebuilding_new_pgdir(reference: Callable) -> Callable:
    """``new_pgdir`` as if kernel parts were not shared (H:410's alternative): a reused slot
    loses its kernel part too, and is treated as blank (the stack and Switcher re-pinned)."""

    def new_pgdir(cpu, gpgdir):
        slot, blank = reference(cpu, gpgdir)
        if not blank:
            lg = cpu.lg
            host = lg.host
            for j in range(lg.x86.PTRS_PER_PGD):
                pt.release_pgd(host, host.entry_ptr(lg.pgdirs[slot].pgdir, j))
            lg.pgdirs[slot].switcher_mapped = False
            blank = True
        return slot, blank

    return new_pgdir


class PolicySource(PrandomSource):
    """A ``prandom_u32`` that answers new_pgdir's draw with the slot a policy chooses.

    new_pgdir draws exactly one number per miss and evicts ``draw % slots``, so answering
    with a slot index makes the C itself evict what the policy wants: nothing else of the
    model changes.  The runner tells the source each switch (:meth:`switching`) so it can keep
    its mirror of the cache and, for the optimal policy, look ahead."""

    POLICIES = ("random", "lru", "fifo", "optimal")

    def __init__(self, policy: str, slots: int, seed: int = 0, future: list[int] | None = None):
        if policy not in self.POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {', '.join(self.POLICIES)}")
        super().__init__(seed=seed)
        self.policy = policy
        self.slots = slots
        self.cache: list[int | None] = [None] * slots  # gpgdir cached in each slot (mirror)
        self.used: list[int] = [0] * slots  # last use (LRU)
        self.filled: list[int] = [0] * slots  # when it was filled (FIFO)
        self.future = future or []
        self.pos = 0  # index into future of the switch being made
        self.clock = 0
        self.target: int | None = None
        self.misses = 0

    def switching(self, gpgdir: int) -> None:
        self.clock += 1
        self.target = gpgdir
        if gpgdir in self.cache:
            self.used[self.cache.index(gpgdir)] = self.clock
        self.pos += 1

    def __call__(self) -> int:
        if self.target is None:  # boot: the C's own random draw
            value = super().__call__()
            slot = value % self.slots
        else:
            self.misses += 1
            slot = self._choose()
            value = slot
            self.drawn.append(value)
        self.cache[slot] = self.target
        self.used[slot] = self.filled[slot] = self.clock
        return value

    def _choose(self) -> int:
        if self.policy == "random":
            return self._rng.getrandbits(32) % self.slots
        empty = [i for i, g in enumerate(self.cache) if g is None]
        if empty:
            return empty[0]
        if self.policy == "lru":
            return min(range(self.slots), key=self.used.__getitem__)
        if self.policy == "fifo":
            return min(range(self.slots), key=self.filled.__getitem__)
        nxt = {}
        for i, g in enumerate(self.cache):  # optimal: the one needed furthest in the future
            try:
                nxt[i] = self.future.index(g, self.pos)
            except ValueError:
                return i
        return max(nxt, key=nxt.__getitem__)


def prefaulting_demand_page(reference: Callable, batch: int, log: list) -> Callable:
    """``demand_page`` that, having fixed a fault, also maps the next ``batch - 1`` pages of
    the same PTE page whose Guest entries are present (M:007's batching of get_pfn).  Each
    prefaulted ``(gpgdir, vaddr)`` is appended to ``log``."""

    def demand_page(cpu, vaddr, errcode):
        fixed, iomem = reference(cpu, vaddr, errcode)
        if fixed:
            L = cpu.lg.x86
            host = cpu.lg.host
            base = vaddr & ~(PAGE_SIZE - 1)
            room = L.PTRS_PER_PTE - 1 - L.pte_index(vaddr)
            for k in range(1, min(batch, room + 1)):
                nb = base + k * PAGE_SIZE
                ok, _ = pt.__guest_pa(cpu, nb)
                if not ok:  # the Guest does not map it: never touch what it did not ask for
                    continue
                spte = pt.find_spte(cpu, nb, False, 0, 0)
                if spte is not None and host.deref(spte) & _PAGE_PRESENT:
                    continue
                if reference(cpu, nb, errcode & ~2)[0]:
                    log.append((cpu.lg.pgdirs[cpu.cpu_pgd].gpgdir, nb))
        return fixed, iomem

    return demand_page


# =============================================================================================
# The experiments
# =============================================================================================
@dataclass(frozen=True)
class Experiment:
    name: str
    marker: str
    question: str
    run: Callable  # (quick, seed, progress) -> Result


EXPERIMENTS: dict[str, Experiment] = {}


def _experiment(name: str, marker: str, question: str):
    def register(fn):
        EXPERIMENTS[name] = Experiment(name, marker, question, fn)
        return fn

    return register


def _figure(size=(7.0, 3.6), ncols=1):
    from .plots import new_figure

    fig = new_figure(size)
    axes = fig.subplots(1, ncols)
    return fig, (axes if ncols > 1 else [axes])


def _counting(fn):
    with CallCounter() as counter:
        stats = fn()
    return stats, sum(counter.counts.values()), counter.counts


# --- 1. H:410 -----------------------------------------------------------------------------
@_experiment("h410-kernel-sharing", "H:410",
             "How much does keeping the kernel part across cached top levels save on a context switch?")
def _kernel_sharing(quick: bool, seed: int, progress) -> Result:
    processes = [2, 8] if quick else [2, 4, 6, 8, 12, 16]
    slot_counts = [1, 4] if quick else [1, 2, 4, 8, 16]
    ops = 500 if quick else 12_000
    rows = []
    total = len(processes) * len(slot_counts) * 2
    for variant in ("kept", "rebuilt"):
        for slots in slot_counts:
            for procs in processes:
                spec = WorkloadSpec(ops=ops, processes=procs, pages=8, working_set=4, quantum=12,
                                    kernel_fraction=0.5, kernel_pages=48, scheduler="round-robin", seed=seed)
                with ExitStack() as stack:
                    stack.enter_context(pgdir_slots(slots))
                    g = Guest(pae=False, seed=seed)
                    if variant == "rebuilt":
                        stack.enter_context(exercises.use("new_pgdir", rebuilding_new_pgdir(pt.new_pgdir)))
                    runner = Runner(g)
                    stats, calls, counts = _counting(lambda: runner.run(generate(spec), pages=spec.pages))
                rows.append({
                    "variant": variant, "slots": slots, "processes": procs, "switches": stats.switches,
                    "misses": counts.get("new_pgdir", 0), "faults": stats.faults,
                    "faults_per_switch": stats.faults / stats.switches,
                    "host_calls_per_switch": calls / stats.switches,
                })
                progress(len(rows), total)
    by = {(r["variant"], r["slots"], r["processes"]): r for r in rows}
    evicting = [(s, p) for s in slot_counts for p in processes if p + 1 > s]  # swapper takes a slot too
    fitting = [(s, p) for s in slot_counts for p in processes if p + 1 <= s]
    saved = {f"{s}/{p}": by["rebuilt", s, p]["faults_per_switch"] / by["kept", s, p]["faults_per_switch"]
             for s, p in evicting}
    findings = {
        "kept_cheaper_when_evicting": all(by["kept", s, p]["faults"] < by["rebuilt", s, p]["faults"] for s, p in evicting),
        "same_when_all_fit": all(by["kept", s, p]["faults"] == by["rebuilt", s, p]["faults"] for s, p in fitting),
        "max_ratio": max(saved.values()) if saved else 1.0,
        "min_ratio": min(saved.values()) if saved else 1.0,
    }
    summary = [
        f"When the processes outnumber the cached slots, rebuilding the kernel part costs "
        f"{findings['min_ratio']:.1f}x to {findings['max_ratio']:.1f}x the faults per context switch "
        f"of keeping it (workloads whose accesses are half kernel).",
        "When every address space fits in the cache, nothing is ever evicted and the two are identical: "
        "the saving of H:410 is a saving on *reused* slots." if fitting else
        "Every configuration here evicts.",
    ]
    fig, (ax,) = _figure((8.0, 3.6))
    for k, slots in enumerate(slot_counts):
        for variant, style in (("kept", "-"), ("rebuilt", "--")):
            ys = [by[variant, slots, p]["faults_per_switch"] for p in processes]
            ax.plot(processes, ys, style, marker="o" if variant == "kept" else "x", color=f"C{k}",
                    label=f"{slots} slot{'s' * (slots > 1)}, kernel part {variant}")
    ax.set_xlabel("processes (round-robin)")
    ax.set_ylabel("faults per context switch")
    ax.set_title("H:410: keeping the kernel part across cached top levels")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return Result("h410-kernel-sharing", quick, seed,
                  ["variant", "slots", "processes", "switches", "misses", "faults", "faults_per_switch",
                   "host_calls_per_switch"], rows, findings, summary, [Figure(fig, "faults")])


# --- 2. H:435 -----------------------------------------------------------------------------
def _switch_targets(spec: WorkloadSpec) -> list[int]:
    return [op[1] for op in generate(spec) if op[0] == "switch"]


class _PolicyRunner(Runner):
    """A runner that tells a :class:`PolicySource` about every switch before it happens."""

    def __init__(self, guest, source: PolicySource, **kw):
        super().__init__(guest, **kw)
        self.source = source

    def run(self, ops, pages=32, progress=None):
        switch_to = self.g.switch_to

        def announced(proc):
            self.source.switching(proc.gpgdir)
            return switch_to(proc)

        self.g.switch_to = announced
        try:
            return super().run(ops, pages, progress)
        finally:
            del self.g.switch_to


def _eviction_run(spec: WorkloadSpec, policy: str, slots: int, seed: int) -> dict:
    with pgdir_slots(slots):
        source = PolicySource(policy, slots, seed=seed)
        g = Guest(pae=False, prandom=source)
        # The Guest's boot drew from prandom (init, the first switch): start from what it did.
        source.cache = [e["gpgdir"] if e["allocated"] else None for e in li.pgdir_cache(g)]
        runner = _PolicyRunner(g, source)
        ops = generate(spec)
        # The optimal policy needs the future: the gpgdirs of the switches to come, which are
        # known once the processes exist.  Fork them first (the workload starts with forks).
        forks = [op for op in ops if op[0] == "fork"]
        runner._pages = spec.pages
        for op in forks:
            runner._fork(op[1])
        rest = [op for op in ops if op[0] != "fork"]
        source.future = [runner.procs[op[1]].gpgdir for op in rest if op[0] == "switch"]
        source.pos = 0
        stats = runner.run(rest, pages=spec.pages)
    switches = stats.switches
    return {"policy": policy, "slots": slots, "switches": switches, "misses": source.misses,
            "miss_ratio": source.misses / switches, "faults": stats.faults,
            "faults_per_switch": stats.faults / switches}


@_experiment("h435-eviction", "H:435",
             "Random eviction (the C) against LRU, FIFO and the optimal choice: how close, and when does the cache size matter more?")
def _eviction(quick: bool, seed: int, progress) -> Result:
    ops = 1500 if quick else 20_000
    traces = {
        "round-robin": WorkloadSpec(ops=ops, processes=5, pages=8, working_set=4, quantum=10, scheduler="round-robin", seed=seed),
        "random": WorkloadSpec(ops=ops, processes=6, pages=8, working_set=4, quantum=10, scheduler="random", seed=seed),
        "locality": WorkloadSpec(ops=ops, processes=8, pages=8, working_set=4, quantum=10, scheduler="locality", hot=3, seed=seed),
    }
    policies = list(PolicySource.POLICIES)
    sizes = [2, 4, 8] if quick else [1, 2, 3, 4, 6, 8, 12, 16]
    jobs = [(t, p, 4) for t in traces for p in policies] + [("locality", p, s) for s in sizes if s != 4 for p in policies]
    rows = []
    for trace, policy, slots in jobs:
        row = _eviction_run(traces[trace], policy, slots, seed)
        row["trace"] = trace
        rows.append(row)
        progress(len(rows), len(jobs))
    by = {(r["trace"], r["policy"], r["slots"]): r for r in rows}
    findings = {}
    for t in traces:
        findings[f"{t}_random"] = by[t, "random", 4]["miss_ratio"]
        findings[f"{t}_lru"] = by[t, "lru", 4]["miss_ratio"]
        findings[f"{t}_optimal"] = by[t, "optimal", 4]["miss_ratio"]
    bigger = min(s for s in sizes if s > 4)
    findings["policy_gap_locality"] = by["locality", "random", 4]["miss_ratio"] - by["locality", "lru", 4]["miss_ratio"]
    findings["size_gap_locality"] = by["locality", "random", 4]["miss_ratio"] - by["locality", "random", bigger]["miss_ratio"]
    findings["optimal_is_best"] = all(by[t, "optimal", s]["misses"] <= by[t, p, s]["misses"]
                                      for (t, p, s) in by for _ in [0] if (t, "optimal", s) in by)
    rr = traces["round-robin"].processes
    summary = [
        f"Round-robin over {rr} processes (+ the kernel's own top level) with 4 slots: LRU and FIFO miss on "
        f"{findings['round-robin_lru']:.0%} of switches, random on {findings['round-robin_random']:.0%}: "
        "a cyclic schedule one larger than the cache is LRU's worst case, and random eviction is better there.",
        f"With locality (80 % of switches among 3 processes), random misses {findings['locality_random']:.0%} against "
        f"LRU's {findings['locality_lru']:.0%} and the optimal {findings['locality_optimal']:.0%}.",
        f"Going from 4 to {bigger} slots cuts random's misses by {findings['size_gap_locality']:.0%} of switches; "
        f"switching random to LRU at 4 slots cuts {findings['policy_gap_locality']:.0%}: "
        + ("the cache size matters more than the policy." if findings["size_gap_locality"] > findings["policy_gap_locality"]
           else "the policy matters more than this step in size."),
    ]
    fig, (ax1, ax2) = _figure((8.0, 3.4), ncols=2)
    width = 0.2
    for k, policy in enumerate(policies):
        ax1.bar([i + (k - 1.5) * width for i in range(len(traces))],
                [by[t, policy, 4]["miss_ratio"] for t in traces], width, label=policy)
    ax1.set_xticks(range(len(traces)), list(traces))
    ax1.set_ylabel("misses per switch (4 slots)")
    ax1.legend(fontsize=7)
    ax1.set_title("H:435: which slot to evict")
    for policy in policies:
        xs = sorted(s for (t, p, s) in by if t == "locality" and p == policy)
        ax2.plot(xs, [by["locality", policy, s]["miss_ratio"] for s in xs], marker="o", label=policy)
    ax2.set_xlabel("cached top levels (locality trace)")
    ax2.set_ylabel("misses per switch")
    ax2.legend(fontsize=7)
    return Result("h435-eviction", quick, seed,
                  ["trace", "policy", "slots", "switches", "misses", "miss_ratio", "faults", "faults_per_switch"],
                  rows, findings, summary, [Figure(fig, "misses")])


# --- 3. H:420 -----------------------------------------------------------------------------
@_experiment("h420-accessed-dirty", "H:420",
             "How many faults does a Guest save by setting Accessed/Dirty itself when it maps a page?")
def _accessed_dirty(quick: bool, seed: int, progress) -> Result:
    ops = 3000 if quick else 60_000
    rows = []
    patterns = ["working-set", "random"] if quick else ["sequential", "working-set", "random"]
    jobs = [(pae, pat, ad) for pae in (False, True) for pat in patterns for ad in ("eager", "lazy", "none")]
    for pae, pattern, ad in jobs:
        spec = WorkloadSpec(ops=ops, processes=3, pages=24, pattern=pattern, mmap_fraction=0.05, quantum=60,
                            write_fraction=0.3, kernel_fraction=0.0, seed=seed)
        g = Guest(pae=pae, seed=seed)
        stats = Runner(g, ad=ad).run(generate(spec), pages=spec.pages)
        rows.append({"layout": g.x86.name, "pattern": pattern, "ad": ad, "accesses": stats.accesses,
                     "faults": stats.faults, "faults_per_1000": 1000 * stats.faults / stats.accesses,
                     "first_touch_faults": stats.first_touch_faults})
        progress(len(rows), len(jobs))
    by = {(r["layout"], r["pattern"], r["ad"]): r for r in rows}
    keys = {(r["layout"], r["pattern"]) for r in rows}
    findings = {
        "eager_fewest": all(by[k + ("eager",)]["faults"] <= by[k + ("lazy",)]["faults"] <= by[k + ("none",)]["faults"] for k in keys),
        "saved_vs_none": min(1 - by[k + ("eager",)]["faults"] / by[k + ("none",)]["faults"] for k in keys),
    }
    summary = [
        "Eager Accessed/Dirty (Linux's habit, which H:420 relies on) takes the fewest faults, lazy (Accessed only) more, "
        "none the most, in every layout and pattern here: "
        + ("true." if findings["eager_fewest"] else "NOT true here."),
        f"Eager saves at least {findings['saved_vs_none']:.0%} of the faults of a Guest that sets neither bit "
        "(workloads with 5 % of accesses remapping a page).",
    ]
    fig, (ax,) = _figure()
    labels = sorted(keys)
    width = 0.27
    for k, ad in enumerate(("eager", "lazy", "none")):
        ax.bar([i + (k - 1) * width for i in range(len(labels))], [by[l + (ad,)]["faults_per_1000"] for l in labels], width, label=ad)
    ax.set_xticks(range(len(labels)), [f"{a}\n{b}" for a, b in labels], fontsize=7)
    ax.set_ylabel("faults per 1000 accesses")
    ax.set_title("H:420: the Guest sets Accessed/Dirty when it maps")
    ax.legend(fontsize=7, title="A/D at map time")
    return Result("h420-accessed-dirty", quick, seed,
                  ["layout", "pattern", "ad", "accesses", "faults", "faults_per_1000", "first_touch_faults"],
                  rows, findings, summary, [Figure(fig, "faults")])


# --- 4. M:009 -----------------------------------------------------------------------------
VMALLOC_RESERVE = 128 * MIB  # what a 32-bit Linux keeps above lowmem for vmalloc
FIXMAP_RESERVE = 8 * MIB  # fixmap and kmap areas (the model's round figure)


def lowmem_limit(g: Guest) -> int:
    """How much RAM a 32-bit Guest can map directly: from kernel_address up to what the
    Switcher leaves, less the vmalloc and fixmap reserves (the model's figure)."""
    return g.host.switcher_addr - g.kernel_address - VMALLOC_RESERVE - FIXMAP_RESERVE


def _highmem_guest(ram_mib: int, seed: int) -> tuple[Guest, int]:
    g = Guest(pae=False, mem_pages=ram_mib * MIB // PAGE_SIZE, seed=seed, device_pages=0)
    lowmem_pages = min(g.lg.pfn_limit, lowmem_limit(g) // PAGE_SIZE)
    # The Guest's boot mapped as much as fits below the Switcher; Linux maps only lowmem.
    # Clear the rest of the direct mapping with the Guest's own stores, then one full flush.
    L = g.x86
    mapped_top = min(g.lg.pfn_limit, (g.host.switcher_addr - g.kernel_address) // PAGE_SIZE)
    n = lowmem_pages
    while n < mapped_top:
        vaddr = g.kernel_address + n * PAGE_SIZE
        count = min(mapped_top - n, L.PTRS_PER_PTE - L.pte_index(vaddr))
        g.write_phys(g.pte_address(vaddr), bytes(count * L.entry_bytes))
        n += count
    g.flush_all()
    return g, lowmem_pages


@_experiment("m009-highmem", "M:009",
             "Does a Guest with more RAM than its kernel can map (highmem) run slower, and where is the knee?")
def _highmem(quick: bool, seed: int, progress) -> Result:
    sizes = [512, 1024] if quick else [256, 384, 512, 640, 768, 832, 896, 960, 1024, 1280, 1536, 2048]
    ops = 2000 if quick else 20_000
    rows = []
    lowmem_mib = 0
    for ram in sizes:
        g, lowmem_pages = _highmem_guest(ram, seed)
        lowmem_mib = lowmem_limit(g) // MIB
        rng = random.Random(seed)
        ops_list: list[tuple] = [("fork", 0), ("switch", 0), ("fork", 1)]
        ram_pages = g.lg.pfn_limit
        first = FIRST_FREE_PFN + 4096  # page-cache pages: above what the Guest allocates itself
        current = 0
        for i in range(ops):
            r = rng.random()
            if r < 0.02:
                current = 1 - current
                ops_list.append(("switch", current))
            elif r < 0.30:  # the kernel reads a page-cache page, anywhere in RAM
                gpfn = rng.randrange(first, ram_pages)
                if gpfn < lowmem_pages:
                    ops_list.append(("ktouch_pfn", gpfn))
                else:
                    ops_list += [("kmap", KMAP_BASE, gpfn), ("ktouch_va", KMAP_BASE), ("kunmap", KMAP_BASE)]
            else:
                ops_list.append(("touch", USER_BASE + rng.randrange(16) * PAGE_SIZE, rng.random() < 0.3, True))
        runner = _HighmemRunner(g)
        stats = runner.run(ops_list, pages=16)
        highmem = max(0, ram_pages - lowmem_pages)
        rows.append({"ram_mib": ram, "lowmem_mib": lowmem_mib, "highmem_fraction": highmem / ram_pages,
                     "ops": ops, "faults": stats.faults, "exits": stats.exits,
                     "flushes": stats.hypercalls.get("flush_tlb", 0),
                     "faults_per_op": stats.faults / ops, "exits_per_op": stats.exits / ops,
                     "dead": stats.dead or ""})
        progress(len(rows), len(sizes))
    below = [r for r in rows if r["ram_mib"] <= lowmem_mib]
    above = [r for r in rows if r["ram_mib"] > lowmem_mib]
    knee = above[0]["ram_mib"] if above else None
    findings = {
        "lowmem_mib": lowmem_mib,
        "knee_mib": knee,
        "flat_below": (max(r["faults_per_op"] for r in below) - min(r["faults_per_op"] for r in below) < 0.05) if below else True,
        "slower_above": all(r["faults_per_op"] > max(b["faults_per_op"] for b in below) for r in above) if below and above else False,
        "growth": (above[-1]["faults_per_op"] / max(below[-1]["faults_per_op"], 1e-9)) if below and above else 1.0,
    }
    summary = [
        f"The model's Guest maps {lowmem_mib} MiB directly (kernel_address 0xc0000000, less the Switcher, "
        f"vmalloc and fixmap reserves); every page-cache access beyond it is a kmap, and every kmap a full flush.",
        f"Faults per operation stay flat up to {lowmem_mib} MiB and rise beyond it"
        + (f" (the knee: first size above, {knee} MiB); at the largest size, {findings['growth']:.1f}x the lowmem figure." if knee else "."),
        "The C's 'more than about 700MB' is a rough figure of a real kernel (whose lowmem is smaller than 896 MiB once "
        "its reserves are counted, and whose page cache fills highmem first); the model reproduces the shape, "
        "with the knee where its own lowmem ends.",
    ]
    fig, (ax,) = _figure()
    ax.plot([r["ram_mib"] for r in rows], [r["faults_per_op"] for r in rows], marker="o", label="faults per operation")
    ax.axvline(lowmem_mib, linestyle=":", color="grey")
    ax.text(lowmem_mib, ax.get_ylim()[1] * 0.9, f" lowmem ends ({lowmem_mib} MiB)", fontsize=7)
    ax.axvline(700, linestyle="--", color="tab:red", alpha=0.5)
    ax.text(700, ax.get_ylim()[1] * 0.75, " 'about 700MB' (M:009)", fontsize=7, color="tab:red")
    ax.set_xlabel("Guest RAM (MiB)")
    ax.set_ylabel("faults per operation")
    ax.set_title("M:009: highmem and full flushes")
    ax.legend(fontsize=7)
    return Result("m009-highmem", quick, seed,
                  ["ram_mib", "lowmem_mib", "highmem_fraction", "ops", "faults", "exits", "flushes", "faults_per_op",
                   "exits_per_op", "dead"], rows, findings, summary, [Figure(fig, "faults")])


class _HighmemRunner(Runner):
    """Adds kernel accesses by page frame (direct map) and by address (the kmap window)."""

    def _run(self, ops, progress):
        g, st = self.g, self.stats
        plain = []
        for op in ops:
            if op[0] == "ktouch_pfn":
                plain.append(("ktouch_abs", g.kernel_address + op[1] * PAGE_SIZE))
            elif op[0] == "ktouch_va":
                plain.append(("ktouch_abs", op[1]))
            else:
                plain.append(op)
        normal = []
        for op in plain:
            if op[0] == "ktouch_abs":
                if normal:
                    super()._run(normal, None)
                    normal = []
                a = g.touch(op[1], False, False)
                st.accesses += 1
                st.faults += a.faults
                st.ops += 1
            else:
                normal.append(op)
        if normal:
            super()._run(normal, None)


# --- 5. M:007 -----------------------------------------------------------------------------
@_experiment("m007-prefault", "M:007",
             "Prefaulting N neighbouring pages on a fault: faults saved against pages pinned needlessly.")
def _prefault(quick: bool, seed: int, progress) -> Result:
    batches = [1, 4, 16] if quick else [1, 2, 4, 8, 16, 32]
    patterns = ["sequential", "random"] if quick else ["sequential", "working-set", "random"]
    ops = 2000 if quick else 30_000
    rows = []
    jobs = [(p, b) for p in patterns for b in batches]
    for pattern, batch in jobs:
        spec = WorkloadSpec(ops=ops, processes=3, pages=64, pattern=pattern, working_set=6, quantum=200,
                            mmap_fraction=0.02, kernel_fraction=0.0, seed=seed)
        g = Guest(pae=False, seed=seed)
        log: list = []
        runner = Runner(g, ad="none", record_accesses=True)
        with exercises.use("demand_page", prefaulting_demand_page(pt.demand_page, batch, log)):
            stats = runner.run(generate(spec), pages=spec.pages)
        gpgdir_of = {slot: proc.gpgdir for slot, proc in runner.procs.items()}
        touched = {(gpgdir_of.get(p, -1), vaddr & ~(PAGE_SIZE - 1)) for p, vaddr in runner.accesses}
        wasted = sum(1 for key in log if key not in touched)
        rows.append({"pattern": pattern, "batch": batch, "accesses": stats.accesses, "faults": stats.faults,
                     "prefaulted": len(log), "never_touched": wasted,
                     "faults_per_1000": 1000 * stats.faults / stats.accesses})
        progress(len(rows), len(jobs))
    by = {(r["pattern"], r["batch"]): r for r in rows}
    big = max(batches)
    findings = {
        "sequential_saved": 1 - by["sequential", big]["faults"] / by["sequential", 1]["faults"],
        "random_saved": 1 - by["random", big]["faults"] / by["random", 1]["faults"],
        "random_wasted": by["random", big]["never_touched"] / max(1, by["random", big]["prefaulted"]),
        "sequential_wasted": by["sequential", big]["never_touched"] / max(1, by["sequential", big]["prefaulted"]),
    }
    summary = [
        f"Prefaulting {big} pages saves {findings['sequential_saved']:.0%} of the faults of a sequential workload "
        f"and {findings['random_saved']:.0%} of a random one.",
        f"Of the pages prefaulted, {findings['sequential_wasted']:.0%} (sequential) and {findings['random_wasted']:.0%} "
        "(random) were never touched: each is a host page pinned (and a Guest Accessed bit set) for nothing.",
        "Prefaulted entries are read-only (the Host cannot know the Guest will write), so a first write still "
        "faults: prefaulting saves read faults only.",
        "A prefaulting host must also take care never to kill a Guest for an entry it did not use: this variant "
        "only prefaults neighbours whose Guest entries are present.",
    ]
    fig, (ax1, ax2) = _figure((8.0, 3.4), ncols=2)
    for pattern in patterns:
        ax1.plot(batches, [by[pattern, b]["faults_per_1000"] for b in batches], marker="o", label=pattern)
        ax2.plot(batches, [by[pattern, b]["never_touched"] for b in batches], marker="o", label=pattern)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pages per fault (batch)")
        ax.legend(fontsize=7)
    ax1.set_ylabel("faults per 1000 accesses")
    ax1.set_title("M:007: faults saved")
    ax2.set_ylabel("pages prefaulted, never touched")
    ax2.set_title("pages pinned needlessly")
    return Result("m007-prefault", quick, seed,
                  ["pattern", "batch", "accesses", "faults", "prefaulted", "never_touched", "faults_per_1000"],
                  rows, findings, summary, [Figure(fig, "tradeoff")])


# --- 6. H:490 -----------------------------------------------------------------------------
TLB_ENTRIES = 64


def tlb_misses(accesses: list[tuple[int, int]], switch_marks: set[int], keep_kernel: bool, entries: int = TLB_ENTRIES) -> int:
    """Misses of a fully associative LRU TLB of ``entries`` over ``accesses`` ((process,
    vaddr); process -1 is the kernel), flushed at every index in ``switch_marks`` — all of it,
    or (``keep_kernel``: Global pages) all but the kernel's entries."""
    tlb: OrderedDict = OrderedDict()
    misses = 0
    for i, (proc, vaddr) in enumerate(accesses):
        if i in switch_marks:
            if keep_kernel:
                for key in [k for k in tlb if k[0] != -1]:
                    del tlb[key]
            else:
                tlb.clear()
        key = (proc, vaddr >> PAGE_SHIFT)
        if key in tlb:
            tlb.move_to_end(key)
        else:
            misses += 1
            tlb[key] = True
            if len(tlb) > entries:
                tlb.popitem(last=False)
    return misses


class _MarkingRunner(Runner):
    """Records at which access index each context switch or full flush happened."""

    def _run(self, ops, progress):
        self.marks = set()
        for op in ops:
            if op[0] in ("switch", "flush", "kmap"):
                self.marks.add(len(self.accesses))
            super()._run([op], None)


@_experiment("h490-nested", "H:490",
             "Shadow paging against nested paging (EPT/NPT): exits into the host against memory references per TLB miss.")
def _nested(quick: bool, seed: int, progress) -> Result:
    ops = 2000 if quick else 30_000
    workloads = {
        "switch-heavy": WorkloadSpec(ops=ops, processes=8, pages=16, quantum=8, kernel_fraction=0.3, churn=0.05, seed=seed),
        "mmap-heavy": WorkloadSpec(ops=ops, processes=3, pages=32, quantum=100, mmap_fraction=0.1, seed=seed),
        "compute": WorkloadSpec(ops=ops, processes=2, pages=48, working_set=24, quantum=2000, kernel_fraction=0.05, seed=seed),
        "big-random": WorkloadSpec(ops=ops, processes=2, pages=512, pattern="random", quantum=2000, kernel_fraction=0.0, seed=seed),
    }
    rows = []
    jobs = [(name, pae) for name in workloads for pae in (False, True)]
    for name, pae in jobs:
        spec = workloads[name]
        g = Guest(pae=pae, seed=seed)
        runner = _MarkingRunner(g, record_accesses=True)
        stats = runner.run(generate(spec), pages=spec.pages)
        n = g.x86.levels
        m = n  # the host's own tables: lguest insists Host and Guest share the layout
        walk_nested = (n + 1) * (m + 1) - 1
        walk_shadow = n
        miss_shadow = tlb_misses(runner.accesses, runner.marks, keep_kernel=False)
        miss_nested = tlb_misses(runner.accesses, runner.marks, keep_kernel=True)
        frames = {(p, v >> PAGE_SHIFT) for p, v in runner.accesses}
        ept_exits = len(frames)  # first touch of each page the host must back (an EPT/NPT violation)
        shadow_refs = miss_shadow * walk_shadow
        nested_refs = miss_nested * walk_nested
        exits = stats.exits
        crossover = (nested_refs - shadow_refs) / (exits - ept_exits) if exits > ept_exits else float("inf")
        rows.append({"workload": name, "layout": g.x86.name, "accesses": stats.accesses, "shadow_exits": exits,
                     "nested_exits": ept_exits, "shadow_tlb_misses": miss_shadow, "nested_tlb_misses": miss_nested,
                     "refs_per_miss_shadow": walk_shadow, "refs_per_miss_nested": walk_nested,
                     "crossover_exit_cost": crossover})
        progress(len(rows), len(jobs))
    findings = {
        "nested_fewer_exits": all(r["nested_exits"] < r["shadow_exits"] for r in rows),
        "crossover": {f"{r['workload']}/{r['layout']}": r["crossover_exit_cost"] for r in rows},
        "lowest_crossover": min(r["crossover_exit_cost"] for r in rows),
        "highest_crossover": max(r["crossover_exit_cost"] for r in rows),
    }
    order = sorted(rows, key=lambda r: r["crossover_exit_cost"])
    summary = [
        "Nested paging takes fewer exits than shadow paging on every workload here "
        + ("(true)." if findings["nested_fewer_exits"] else "(NOT true here)."),
        "Each of its TLB misses costs up to (n+1)(m+1)-1 memory references: 8 without PAE, 15 with PAE, against 2 or 3.",
        f"Nested paging wins once an exit costs more than {order[0]['crossover_exit_cost']:.1f} memory references "
        f"({order[0]['workload']}, {order[0]['layout']}) to {order[-1]['crossover_exit_cost']:.1f} "
        f"({order[-1]['workload']}, {order[-1]['layout']}). The exit cost is a parameter of the hardware, not "
        "of the model: the busier a workload is with page tables (switches, mappings), the lower the "
        "crossover; the more its working set overflows the TLB, the higher.",
    ]
    fig, (ax,) = _figure((7.5, 3.8))
    costs = [0, 5, 10, 20, 50, 100, 200, 500, 1000]
    for r in rows:
        if r["layout"] != "non-PAE":
            continue
        shadow = [r["shadow_exits"] * c + r["shadow_tlb_misses"] * r["refs_per_miss_shadow"] for c in costs]
        nested = [r["nested_exits"] * c + r["nested_tlb_misses"] * r["refs_per_miss_nested"] for c in costs]
        line, = ax.plot(costs, [s / r["accesses"] for s in shadow], marker="o", label=f"{r['workload']}: shadow")
        ax.plot(costs, [x / r["accesses"] for x in nested], linestyle="--", color=line.get_color(), label=f"{r['workload']}: nested")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    ax.set_xlabel("cost of one exit, in memory references (model parameter)")
    ax.set_ylabel("memory references per access (non-PAE)")
    ax.set_title("H:490: shadow against nested paging")
    ax.legend(fontsize=6, ncol=2)
    return Result("h490-nested", quick, seed,
                  ["workload", "layout", "accesses", "shadow_exits", "nested_exits", "shadow_tlb_misses",
                   "nested_tlb_misses", "refs_per_miss_shadow", "refs_per_miss_nested", "crossover_exit_cost"],
                  rows, findings, summary, [Figure(fig, "cost")])


# =============================================================================================
# Running
# =============================================================================================
def names() -> list[str]:
    return list(EXPERIMENTS)


def run(name: str, *, quick: bool = False, seed: int = 0, progress=None) -> Result:
    """Run experiment ``name`` (see :func:`names`); ``quick`` sizes take about a second."""
    if name not in EXPERIMENTS:
        raise ValueError(f"no experiment named {name!r}; there are: {', '.join(EXPERIMENTS)}")
    if seed.__class__ is not int or not 0 <= seed < 1 << 32:
        raise ValueError(f"seed={seed!r} must be an integer from 0 to 2**32-1")
    started = time.perf_counter()
    result = EXPERIMENTS[name].run(quick, seed, progress or (lambda done, total: None))
    result.seconds = time.perf_counter() - started
    return result


def bench_workload(ops: int = 1_000_000, seed: int = 0, pae: bool = False, progress=None) -> dict:
    """The workload generator's rate: ``ops`` Guest operations generated and run."""
    spec = WorkloadSpec(ops=ops, processes=8, pages=64, quantum=50, mmap_fraction=0.01, churn=0.01, seed=seed)
    started = time.perf_counter()
    work = generate(spec)
    generated = time.perf_counter()
    stats = Runner(Guest(pae=pae, seed=seed)).run(work, pages=spec.pages, progress=progress)
    finished = time.perf_counter()
    return {"ops": stats.ops, "generate_s": generated - started, "run_s": finished - generated,
            "total_s": finished - started, "ops_per_s": stats.ops / (finished - started), "faults": stats.faults,
            "exits": stats.exits, "dead": stats.dead}


__all__ = ["EXPERIMENTS", "Experiment", "Result", "run", "names", "bench_workload", "pgdir_slots",
           "PolicySource", "rebuilding_new_pgdir", "prefaulting_demand_page", "tlb_misses", "lowmem_limit"]


# =============================================================================================
# A widget: pick a schedule and a cache, see what each policy does
# =============================================================================================
def eviction_explorer(seed: int = 0, ops: int = 300):
    """An ipywidgets panel for H:435: choose the scheduler, the number of processes and of
    cached top levels; it runs the four policies on the model and tabulates their misses."""
    import ipywidgets as w

    scheduler = w.Dropdown(options=["round-robin", "random", "locality"], value="round-robin", description="schedule")
    processes = w.IntSlider(value=5, min=2, max=12, description="processes")
    slots = w.IntSlider(value=4, min=1, max=8, description="slots")
    table = w.HTML()

    def redraw(*_):
        spec = WorkloadSpec(ops=ops, processes=processes.value, pages=4, working_set=2, quantum=6,
                            scheduler=scheduler.value, hot=min(3, processes.value), seed=seed)
        rows = [_eviction_run(spec, policy, slots.value, seed) for policy in PolicySource.POLICIES]
        best = min(r["misses"] for r in rows)
        cells = "".join(
            f"<tr><td>{r['policy']}</td><td style='text-align:right'>{r['misses']}</td>"
            f"<td style='text-align:right'>{r['miss_ratio']:.0%}</td>"
            f"<td style='text-align:right'>{r['faults_per_switch']:.2f}</td>"
            f"<td>{'fewest' if r['misses'] == best else ''}</td></tr>" for r in rows)
        table.value = ("<table><tr><th>policy</th><th>misses</th><th>per switch</th><th>faults per switch</th><th></th></tr>"
                       f"{cells}</table><p>{rows[0]['switches']} switches; the kernel's own top level also holds a slot.</p>")
        panel.description = (f"Eviction explorer: {scheduler.value}, {processes.value} processes, {slots.value} slots — "
                             + ", ".join(f"{r['policy']} {r['misses']} misses" for r in rows))

    panel = w.VBox([w.HBox([scheduler, processes, slots]), table])
    for control in (scheduler, processes, slots):
        control.observe(redraw, names="value")
    redraw()
    return _Described(panel)


class _Described:
    """Shows a widget in Jupyter, and a one-line description of it elsewhere (a forge)."""

    def __init__(self, widget):
        self.widget = widget

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.widget.description
        return bundle

    def __repr__(self) -> str:
        return self.widget.description
