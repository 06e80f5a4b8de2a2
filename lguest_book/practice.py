"""Practice problems in the spirit of OSTEP's homework simulators.

Each generator takes a seed and returns a :class:`Problem`: ``print(problem)`` shows the
question (the same seed always gives the same question), ``problem.answer()`` works the answer
out by running the model — nothing is stored — and ``problem.check(your_answer)`` tells you
whether yours is right, and if not, what the model says.

Kinds (also ``lguest-book practice KIND --seed N [--answer]``):

* ``walk``     — walk this address through these Guest tables: which entries, which address?
* ``fault``    — which of these faults does ``demand_page()`` fix, and what does it write back?
* ``evict``    — which slot does ``new_pgdir()`` take, for these values of ``prandom_u32()``?
* ``set_pte``  — what does SET_PTE do to each cached top level?
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from . import fmt
from . import inspect as li
from .guest import Guest
from .lguest import PrandomSource

KINDS = ("walk", "fault", "evict", "set_pte")


@dataclass
class Problem:
    kind: str
    seed: int
    question: str
    _solve: Callable[[], object] = field(repr=False)
    _explain: Callable[[object], str] = field(repr=False)

    def __str__(self) -> str:
        return f"[{self.kind}, seed {self.seed}]\n{self.question}"

    def answer(self):
        """The answer, computed now by running the model."""
        return self._solve()

    def explain(self) -> str:
        return self._explain(self.answer())

    def check(self, answer) -> bool:
        """Is ``answer`` right?  Prints a verdict either way."""
        right = self.answer()
        ok = _normalise(answer) == _normalise(right)
        print("✓ right" if ok else f"✗ not quite: the model says {self.explain()}")
        return ok


def _normalise(x):
    if isinstance(x, (list, tuple)):
        return tuple(_normalise(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _normalise(v)) for k, v in x.items()))
    if isinstance(x, str):
        return x.strip().lower()
    return x


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    return seed


def _setup(rng: random.Random, pae: bool, pages: int):
    """A Guest with one process and ``pages`` random mappings; returns (guest, proc, maps)."""
    g = Guest(pae=pae, seed=rng.randrange(1 << 16))
    p = g.new_process("practice")
    g.switch_to(p)
    maps = {}
    for _ in range(pages):
        vaddr = rng.choice((0x08048000, 0x08400000, 0x40000000, 0xB7F00000)) + rng.randrange(16) * 0x1000
        if vaddr in maps:
            continue
        gpfn = 0x300 + rng.randrange(0x400)
        flags = rng.choice(((True, True), (True, False), (False, True), (False, False)))
        maps[vaddr] = g.map(vaddr, gpfn, writable=flags[0], user=flags[1], accessed=rng.random() < 0.5)
    return g, p, maps


# --- walk ----------------------------------------------------------------------------------
def walk(seed: int = 0) -> Problem:
    """Walk an address through the Guest's tables: answer (entry addresses read, final
    guest-physical address or None if the walk stops)."""
    seed = _check_seed(seed)
    rng = random.Random(seed)
    pae = rng.random() < 0.5
    g, p, maps = _setup(rng, pae, 4)
    vaddr = rng.choice(sorted(maps)) + rng.randrange(0x1000) if rng.random() < 0.8 else 0x50000000 + rng.randrange(1 << 20)
    L = g.x86
    lines = [f"A {L.name} Guest's top level is at guest-physical {fmt.paddr(p.gpgdir, L)}.  Its entries:"]
    for st in li.walk_guest(g, vaddr):
        lines.append(f"  {st.level} entry at {fmt.paddr(st.where, L)} holds {fmt.entry(st.value, L)}")
    lines.append(f"Walk {fmt.vaddr(vaddr)}: which entry addresses are read, in order, and what guest-physical")
    lines.append("address does it reach (None if the walk stops)?  Answer: ([addresses], paddr or None)")

    def solve():
        steps = li.walk_guest(g, vaddr)
        last = steps[-1]
        pa = (L.pte_pfn(last.value) << 12 | vaddr & 0xFFF) if last.level == "pte" and last.present else None
        return ([s.where for s in steps], fmt.as_paddr(pa, L))

    return Problem("walk", seed, "\n".join(lines), solve,
                   lambda a: f"entries at [{', '.join(fmt.paddr(x, L) for x in a[0])}], reaching {a[1]}")


# --- fault ---------------------------------------------------------------------------------
def fault(seed: int = 0) -> Problem:
    """Which of these faults does demand_page() fix, and what does each write back into the
    Guest's PTE?  Answer: a list of (fixed?, guest PTE after) per fault."""
    seed = _check_seed(seed)
    rng = random.Random(seed)
    pae = rng.random() < 0.5
    g, p, maps = _setup(rng, pae, 5)
    faults = []
    for _ in range(4):
        vaddr = rng.choice(sorted(maps))
        faults.append((vaddr, rng.random() < 0.5, rng.random() < 0.7))
    L = g.x86
    lines = [f"A {L.name} Guest (pfn_limit {fmt.frame(g.lg.pfn_limit, L)}) has these PTEs:"]
    for v, pte in sorted(maps.items()):
        lines.append(f"  {fmt.vaddr(v)}: {fmt.entry(pte, L)} ({L.describe(pte)})")
    lines.append("These faults happen in order (each on a freshly flushed shadow):")
    for v, w, u in faults:
        lines.append(f"  a {'write' if w else 'read'} from {'user' if u else 'kernel'} mode at {fmt.vaddr(v)}")
    lines.append("For each: does demand_page() fix it, and what is the Guest's PTE afterwards?")
    lines.append("Answer: [(True/False, pte), ...]")

    def solve():
        import copy

        from . import hypercalls as hc

        h = copy.deepcopy(g)
        out = []
        for v, w, u in faults:
            h.flush_user()
            outcome, _ = hc.page_fault(h.cpu, v, (2 if w else 0) | (4 if u else 0))
            out.append((outcome == "fixed", fmt.as_entry(h.guest_pte(v), L)))
        return out

    return Problem("fault", seed, "\n".join(lines), solve,
                   lambda a: "; ".join(f"{'fixed' if f else 'refused'}, PTE {fmt.entry(pte, L)}" for f, pte in a))


# --- evict ---------------------------------------------------------------------------------
def evict(seed: int = 0) -> Problem:
    """Which slot does each switch use?  Answer: the list of slots, one per switch."""
    seed = _check_seed(seed)
    rng = random.Random(seed)
    values = [rng.getrandbits(32) for _ in range(12)]
    g = Guest(pae=False, prandom=PrandomSource(values=list(values) + [0] * 64))
    boot_drawn = len(g.lg.prandom_u32.drawn)
    procs = [g.new_process(f"p{i}") for i in range(rng.randrange(3, 6))]
    order = [rng.randrange(len(procs)) for _ in range(6)]
    cache = li.pgdir_cache(g)
    lines = ["The four slots of the pgdir cache hold:"]
    for c in cache:
        lines.append(f"  slot {c['slot']}: " + (f"Guest top level {fmt.paddr(c['gpgdir'], g.x86)}" if c["allocated"] else "unused") +
                     ("  (current)" if c["current"] else ""))
    lines.append(f"The next values of prandom_u32() are: {', '.join(format(v, '#010x') for v in values[boot_drawn:boot_drawn + 6])}, ...")
    lines.append("The Guest switches to, in order: " + ", ".join(f"{procs[i].name} ({fmt.paddr(procs[i].gpgdir, g.x86)})" for i in order))
    lines.append("Which slot is current after each switch?  Answer: [slot, ...]")

    def solve():
        import copy

        h = copy.deepcopy(g)
        hp = [next(q for q in h.processes if q.gpgdir == pr.gpgdir) for pr in procs]
        out = []
        for i in order:
            h.switch_to(hp[i])
            out.append(li.current_slot(h))
        return out

    return Problem("evict", seed, "\n".join(lines), solve, lambda a: f"slots {a}")


# --- set_pte -------------------------------------------------------------------------------
def set_pte(seed: int = 0) -> Problem:
    """What does one SET_PTE do to each cached top level?  Answer: {slot: shadow PTE after}
    for every cached slot (0 where the entry is cleared or absent)."""
    seed = _check_seed(seed)
    rng = random.Random(seed)
    g = Guest(pae=False, seed=rng.randrange(1 << 16))
    procs = [g.new_process(f"p{i}") for i in range(3)]
    kernel = rng.random() < 0.5
    vaddr = (0xC0100000 if kernel else 0x08048000) + rng.randrange(8) * 0x1000
    for pr in procs:
        g.switch_to(pr)
        if not kernel:
            g.map(vaddr, 0x300 + rng.randrange(64))
        g.touch(vaddr, user=not kernel)
    target = rng.choice(procs)
    new = (0x500 + rng.randrange(64)) << 12 | rng.choice((0x07, 0x27, 0x67, 0x03, 0x23))
    if kernel:
        new = new & ~0x4 | 0x100
    L = g.x86
    lines = [f"Three processes have each touched {fmt.vaddr(vaddr)} ({'a kernel' if kernel else 'a user'} address).  The cache:"]
    for c in li.pgdir_cache(g):
        if c["allocated"]:
            spte = li.walk_shadow(g, vaddr, c["slot"])[-1].value
            lines.append(f"  slot {c['slot']} (Guest top level {fmt.paddr(c['gpgdir'], L)}): shadow PTE {fmt.entry(spte, L)}")
    lines.append(f"The Guest sets the PTE for {fmt.vaddr(vaddr)} in top level {fmt.paddr(target.gpgdir, L)} to "
                 f"{fmt.entry(new, L)} and makes SET_PTE.")
    lines.append("What is each slot's shadow PTE afterwards (host frames as the model allocates them)?")
    lines.append("Answer: {slot: pte, ...}")

    def solve():
        import copy

        h = copy.deepcopy(g)
        h.set_pte(vaddr, new, next(q for q in h.processes if q.gpgdir == target.gpgdir))
        return {c["slot"]: li.walk_shadow(h, vaddr, c["slot"])[-1].value
                for c in li.pgdir_cache(h) if c["allocated"]}

    return Problem("set_pte", seed, "\n".join(lines), solve,
                   lambda a: ", ".join(f"slot {s}: {fmt.entry(v, L)}" for s, v in sorted(a.items())))


GENERATORS = {"walk": walk, "fault": fault, "evict": evict, "set_pte": set_pte}


def problem(kind: str, seed: int = 0) -> Problem:
    if kind not in GENERATORS:
        raise ValueError(f"kind={kind!r}: choose one of {', '.join(KINDS)}")
    return GENERATORS[kind](seed)
