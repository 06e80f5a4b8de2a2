"""The hostile-guest lab: attack the hypervisor, and let its promises be checked after every step.

page_tables.c begins by saying that the Guest can be neither trusted nor used.  This module
turns the reader into that Guest.

* :class:`Attacker` is a Guest kernel with no scruples: it can store any value anywhere in its
  own memory (its page tables included), make any hypercall with any arguments, and touch any
  address in user or kernel mode — and nothing a Guest cannot do: there is no way from it into
  the Host.  Every action is a *step*, recorded as plain data (a name and integers), so an
  attack can be replayed exactly, shrunk to a minimal replay, or graded somewhere the
  attacker's own code never runs.
* After every step the Host's :data:`PROMISES` are checked (no page leaked or freed while
  mapped; the Guest reaches only its own memory; the Switcher stays mapped and out of the
  Guest's hands; the Host never oopses; a dead Guest stays dead).  A broken promise is
  reported with the step that broke it, the evidence and a minimal replay.
* :data:`CHALLENGES` are goals with hint ladders and checkers; one of them is impossible, and
  the reader is asked to argue why from the C.
* :func:`reattack` re-runs every known attack and a fuzzing campaign against a patched
  hypervisor (your fix of a port function swapped in), and says which promises the patch
  restores and whether it changes anything else.
* :func:`fuzz` runs random hostile Guests for a while and shows what broke.
* Grading an attack (chapter 11's graded cell under nbgrader, and ``lguest-book lab grade``) is
  :mod:`lguest_book.grading`'s: the attack runs in its sandbox, which reports only the steps the
  Attacker took; they are replayed here, with :func:`attempt`, on a pristine Host.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable

from . import exercises
from . import fmt
from . import hypercalls as hc
from . import inspect as li
from .guest import Guest
from .x86 import PAGE_SHIFT, PAGE_SIZE, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER

MAX_STEPS = 20_000  # an attack longer than this is cut short (and a grade refused)


# =============================================================================================
# The attacker
# =============================================================================================
@dataclass(frozen=True)
class Step:
    """One action of the Guest: a name and its integer arguments.  ``pae`` says which layout's
    widths it prints with (the Attacker that took it sets it); it is not part of the step's
    identity, so the same action compares equal in either layout."""

    name: str
    args: tuple
    pae: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        kinds = _ARG_KINDS.get(self.name, ())
        shown = (_show_arg(a, kinds[i] if i < len(kinds) else "reg", self.pae) for i, a in enumerate(self.args))
        return f"{self.name}({', '.join(shown)})"


# How each step's arguments print (fmt's rule, by the step's layout: addresses and registers 8
# hex digits; a physical address and an entry 8 digits without PAE, 16 with; a frame 5 digits
# without PAE, 8 with (a value too wide for its layout prints at the wider width); flags and
# call numbers short; counts decimal).
_ARG_KINDS = {
    "poke": ("paddr", "entry"), "hypercall": ("call", "reg", "reg", "reg", "reg"),
    "touch": ("vaddr", "bool", "bool"), "switch_to": ("count",), "map": ("vaddr", "frame", "flags"),
}


def _show_arg(a, kind: str, pae: bool = False) -> str:
    if isinstance(a, bool) or kind == "bool":
        return str(bool(a))
    if kind == "count":
        return str(a)
    if kind == "call" or kind == "flags":
        return f"{a:#x}"
    if kind == "frame":
        return fmt.frame(a, pae=pae or a >= 1 << 20)
    if kind == "paddr":
        return fmt.paddr(a, pae=pae or a > 0xFFFFFFFF)
    if kind == "entry":
        return fmt.entry(a, pae=pae or a > 0xFFFFFFFF)
    return fmt.vaddr(a) if a <= 0xFFFFFFFF else fmt.entry(a, pae=True)


HYPERCALLS = {
    "LGUEST_INIT": hc.LHCALL_LGUEST_INIT, "NEW_PGTABLE": hc.LHCALL_NEW_PGTABLE, "FLUSH_TLB": hc.LHCALL_FLUSH_TLB,
    "SET_STACK": hc.LHCALL_SET_STACK, "SET_PTE": hc.LHCALL_SET_PTE, "SET_PGD": hc.LHCALL_SET_PGD,
    "SET_PMD": hc.LHCALL_SET_PMD,
}


class Attacker:
    """A hostile Guest kernel on a fresh, booted lguest guest.

    Its actions (each one a recorded :class:`Step`, each followed by the Host entering the
    Guest again and the promises being checked):

    * ``poke(paddr, value)`` — store an entry-sized value anywhere in its own memory;
    * ``hypercall(call, a1, a2, a3, a4)`` — any hypercall, any registers; shorthands
      ``set_pte(gpgdir, vaddr, pte)``, ``set_pgd(gpgdir, idx)``, ``set_pmd(pmdp, idx)``,
      ``new_pgtable(gpgdir)``, ``flush(all)``, ``set_stack(seg, esp, pages)``,
      ``lguest_init(paddr)``;
    * ``touch(vaddr, write=False, user=False)`` — one memory access;
    * what a Linux Guest does with those, for convenience: ``new_process()`` (a top level
      sharing the kernel part), ``switch_to(proc)``, ``map(vaddr, gpfn, flags)`` (store and
      SET_PTE), ``unmap(vaddr)``, ``alloc_page()`` (a free page of its own memory).

    Reading its own memory and tables is free (not a step): ``peek(paddr)``,
    ``entry_address(vaddr)`` (where its PTE for an address lives), ``limits()``.
    """

    def __init__(self, pae: bool = False, *, mem_pages: int = 1024, seed: int = 0, check: bool = True, **host):
        unknown = set(host) - {"switcher_addr", "prandom", "nr_cpus", "kernel_address"}
        if unknown:
            raise ValueError(f"unknown Host setting(s): {', '.join(sorted(unknown))}")
        self.guest = Guest(pae=pae, mem_pages=mem_pages, seed=seed, **host)
        self.pae = pae
        self.steps: list[Step] = []
        self.check = check
        self.watch = PromiseWatch(self.guest)
        self.broken: list[Broken] = []
        self.processes = [self.guest.swapper]

    # --- reading its own memory (free) --------------------------------------------------
    def peek(self, paddr: int) -> int:
        return self.guest.read_entry(paddr)

    def entry_address(self, vaddr: int, proc: int | None = None) -> int:
        """Guest-physical address of the PTE for ``vaddr`` in process ``proc`` (an index
        into ``processes``; default the current one); the PTE page is made if missing."""
        space = self.processes[proc] if proc is not None else None
        return self.guest.pte_address(vaddr, space)

    def limits(self) -> dict:
        return li.limits(self.guest)

    @property
    def current(self) -> int:
        return self.processes.index(self.guest.current)

    # --- steps ------------------------------------------------------------------------------
    def do(self, name: str, *args) -> object:
        """Perform one step by name (what replay calls)."""
        if name not in _STEPS:
            raise ValueError(f"{name!r} is not an action of the Guest (one of {', '.join(sorted(_STEPS))})")
        if len(self.steps) >= MAX_STEPS:
            raise RuntimeError(f"an attack is limited to {MAX_STEPS} steps")
        for a in args:
            if isinstance(a, bool):
                continue
            if not isinstance(a, int) or a < 0 or a >= 1 << 64:
                raise ValueError(f"{name}: argument {a!r} is not a register value (an integer from 0 to 2**64-1)")
        step = Step(name, tuple(args), self.pae)
        self.steps.append(step)
        before = self.watch.before_step()
        if self.guest.dead is not None and name in ("poke", "alloc_page", "new_process"):
            return None  # a dead Guest never runs again: it stores nothing
        result = _STEPS[name](self, *args)
        if self.guest.dead is None:
            hc.enter_guest(self.guest.cpu)  # the Guest runs again after every action
        if self.check:
            for b in self.watch.after_step(before, len(self.steps) - 1, step):
                self.broken.append(b)
        return result

    def poke(self, paddr: int, value: int):
        return self.do("poke", paddr, value)

    def hypercall(self, call: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0):
        return self.do("hypercall", call, a1, a2, a3, a4)

    def touch(self, vaddr: int, write: bool = False, user: bool = False):
        return self.do("touch", vaddr, bool(write), bool(user))

    def new_process(self) -> int:
        return self.do("new_process")

    def switch_to(self, proc: int):
        return self.do("switch_to", proc)

    def map(self, vaddr: int, gpfn: int, flags: int = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED):
        return self.do("map", vaddr, gpfn, flags)

    def unmap(self, vaddr: int):
        return self.do("map", vaddr, 0, 0)

    def alloc_page(self) -> int:
        return self.do("alloc_page")

    # hypercall shorthands
    def set_pte(self, gpgdir: int, vaddr: int, pte: int):
        if self.pae:
            return self.hypercall(hc.LHCALL_SET_PTE, gpgdir, vaddr, pte & 0xFFFFFFFF, pte >> 32)
        return self.hypercall(hc.LHCALL_SET_PTE, gpgdir, vaddr, pte)

    def set_pgd(self, gpgdir: int, idx: int):
        return self.hypercall(hc.LHCALL_SET_PGD, gpgdir, idx)

    def set_pmd(self, pmdp: int, idx: int):
        return self.hypercall(hc.LHCALL_SET_PMD, pmdp, idx)

    def new_pgtable(self, gpgdir: int):
        return self.hypercall(hc.LHCALL_NEW_PGTABLE, gpgdir)

    def flush(self, everything: bool = False):
        return self.hypercall(hc.LHCALL_FLUSH_TLB, int(bool(everything)))

    def set_stack(self, seg: int, esp: int, pages: int):
        return self.hypercall(hc.LHCALL_SET_STACK, seg, esp, pages)

    def lguest_init(self, paddr: int):
        return self.hypercall(hc.LHCALL_LGUEST_INIT, paddr)

    def gpgdir(self, proc: int | None = None) -> int:
        """The guest-physical address of a process's top level (default: current)."""
        return (self.processes[proc] if proc is not None else self.guest.current).gpgdir

    # --- the end ----------------------------------------------------------------------------
    def teardown(self) -> list["Broken"]:
        """The Launcher closes the Guest; the teardown promises are checked."""
        self.guest.shutdown()
        found = self.watch.after_teardown(len(self.steps))
        self.broken.extend(found)
        return found

    def __repr__(self) -> str:
        state = f"dead: {self.guest.dead}" if self.guest.dead else "alive"
        return f"<Attacker {self.guest.x86.name}, {len(self.steps)} steps, {state}, {len(self.broken)} broken promise(s)>"


def _step_poke(a: Attacker, paddr: int, value: int):
    g = a.guest
    size = g.x86.entry_bytes
    limit = g.lg.pfn_limit * PAGE_SIZE
    if paddr > limit - size or value > g.x86.entry_mask:
        return None  # outside its memory, or wider than an entry: a Guest cannot store it
    g.write_entry(paddr, value)


def _step_hypercall(a: Attacker, call, a1, a2, a3, a4):
    a.guest.hypercall(call & 0xFFFFFFFF, a1 & 0xFFFFFFFF, a2 & 0xFFFFFFFF, a3 & 0xFFFFFFFF, a4 & 0xFFFFFFFF)


def _step_touch(a: Attacker, vaddr, write, user):
    return a.guest.touch(vaddr & 0xFFFFFFFF, write=bool(write), user=bool(user))


def _step_new_process(a: Attacker):
    if a.guest._next_free >= a.guest.lg.pfn_limit - 8:
        return None
    a.processes.append(a.guest.new_process(f"p{len(a.processes)}"))
    return len(a.processes) - 1


def _step_switch_to(a: Attacker, proc):
    if a.guest.dead is None:
        a.guest.switch_to(a.processes[proc % len(a.processes)])


def _step_map(a: Attacker, vaddr, gpfn, flags):
    g = a.guest
    if g.dead is not None or vaddr >= g.host.switcher_addr:
        return None
    pte = ((gpfn << PAGE_SHIFT) | flags) & g.x86.entry_mask
    g.set_pte(vaddr & ~(PAGE_SIZE - 1), pte)
    return pte


def _step_alloc_page(a: Attacker):
    try:
        return a.guest.alloc_page()
    except MemoryError:
        return None


_STEPS: dict[str, Callable] = {
    "poke": _step_poke, "hypercall": _step_hypercall, "touch": _step_touch, "new_process": _step_new_process,
    "switch_to": _step_switch_to, "map": _step_map, "alloc_page": _step_alloc_page,
}


def replay(steps: list[Step] | list[tuple], *, pae: bool = False, mem_pages: int = 1024, seed: int = 0,
           check: bool = True, teardown: bool = True, **host) -> Attacker:
    """Run ``steps`` on a fresh Attacker (the same machine, the same outcome)."""
    a = Attacker(pae=pae, mem_pages=mem_pages, seed=seed, check=check, **host)
    for step in steps:
        name, args = (step.name, step.args) if isinstance(step, Step) else (step[0], tuple(step[1]))
        a.do(name, *args)
    if teardown:
        a.teardown()
    return a


# =============================================================================================
# The promises
# =============================================================================================
PROMISES = {
    "no-leak": "no host page is leaked, or freed while something still maps it",
    "own-memory": "the Guest reaches only its own memory (and the Switcher's pages the Host gives it)",
    "switcher": "the Switcher stays mapped, read-only where it must be, and out of user mode's reach",
    "no-oops": "the Host never oopses",
    "dead-stays-dead": "a dead Guest stays dead: once killed, nothing of the Host's changes until teardown",
}


@dataclass
class Broken:
    """A promise broken at a step, with the evidence."""

    promise: str
    step: int  # index of the step that broke it (len(steps) for teardown)
    action: str  # the step, as text
    evidence: list[str]
    replay: list[Step] | None = None

    def __str__(self) -> str:
        where = "at teardown" if self.action == "teardown" else f"at step {self.step}: {self.action}"
        lines = [f"promise broken — {PROMISES[self.promise]} — {where}"]
        lines += [f"  evidence: {e}" for e in self.evidence[:6]]
        if len(self.evidence) > 6:
            lines.append(f"  ... and {len(self.evidence) - 6} more")
        if self.replay is not None:
            n = len(self.replay)
            lines.append(f"  minimal replay ({fmt.count(n, 'step')}): " + "; ".join(str(s) for s in self.replay))
        return "\n".join(lines)

    __repr__ = __str__


class PromiseWatch:
    """Checks the promises around each step of one Guest."""

    def __init__(self, guest: Guest):
        self.g = guest
        self.dead_state = None
        self.seen_oopses = 0
        self.seen_anomalies = 0
        self.last_refcounts = None
        self.last_maps = None

    def before_step(self):
        if self.last_refcounts is None:
            self.last_refcounts = li.refcounts(self.g)
        return self.last_refcounts

    def after_step(self, before, index: int, step: Step) -> list[Broken]:
        g = self.g
        found: list[Broken] = []
        health = li.health(g)
        new_anomalies = health["anomalies"][self.seen_anomalies:]
        self.seen_anomalies = len(health["anomalies"])
        after = li.refcounts(g)  # {frame: (count, owner)} for every frame in use: one pass
        slots = li.pgdir_cache(g)
        maps = {e["slot"]: li.shadow_mappings(g, e["slot"]) for e in slots if e["allocated"]}
        evidence = list(new_anomalies)
        switcher_addr = li.limits(g)["switcher_addr"]
        foreign = []
        mapped: dict[int, int] = {}
        for slot, mapping in maps.items():
            for vaddr, pte in mapping.items():
                frame = g.x86.pte_pfn(pte)
                mapped[frame] = mapped.get(frame, 0) + 1
                kind = after[frame][1][0] if frame in after else "free"
                if kind == "guest":
                    continue
                if kind == "free":
                    evidence.append(f"slot {slot} maps {fmt.vaddr(vaddr)} to frame {fmt.frame(frame, g.x86)}, which is free")
                elif not (vaddr >= switcher_addr and kind in ("switcher", "regs")):
                    foreign.append(f"slot {slot}: {fmt.vaddr(vaddr)} -> frame {fmt.frame(frame, g.x86)} ({kind})")
        # Every reference the Host holds is accounted for: one per shadow PTE that maps the
        # frame, plus the one the Launcher (guest pages), lguest (Switcher pages) or the CPU
        # (its register page) keeps.  Fewer, and a frame can be freed while still mapped.
        for frame, count in mapped.items():
            have, owner = after.get(frame, (0, ("free", None)))
            held = 1 if owner[0] in ("guest", "switcher", "regs") else 0
            if have < count + held:
                evidence.append(f"{owner[0]} frame {fmt.frame(frame, g.x86)} has {have} references, but {count} "
                                f"shadow entr{'y maps' if count == 1 else 'ies map'} it" + (" (+1 its owner keeps)" if held else ""))
        for frame, (have, owner) in after.items():
            if owner[0] in ("switcher", "regs") and frame not in mapped and have < 1:
                evidence.append(f"{owner[0]} frame {fmt.frame(frame, g.x86)} has {have} references (its owner keeps 1)")
        if evidence:
            found.append(Broken("no-leak", index, str(step), evidence))
        if foreign:
            found.append(Broken("own-memory", index, str(step), foreign))
        switcher = self._switcher(slots, maps, switcher_addr)
        if switcher:
            found.append(Broken("switcher", index, str(step), switcher))
        if len(health["oopses"]) > self.seen_oopses:
            found.append(Broken("no-oops", index, str(step), health["oopses"][self.seen_oopses:]))
            self.seen_oopses = len(health["oopses"])
        if g.dead is not None:
            state = (tuple((e["gpgdir"], e["allocated"]) for e in slots),
                     tuple(tuple(sorted(m.items())) for m in maps.values()),
                     tuple(sorted((f, c) for f, (c, o) in after.items() if o[0] != "guest")))
            if self.dead_state is None:
                self.dead_state = state
            elif state != self.dead_state:
                found.append(Broken("dead-stays-dead", index, str(step), [f"the Host's tables changed after: {g.dead}"]))
                self.dead_state = state
        self.last_refcounts = after
        self.last_maps = maps
        return found

    def _switcher(self, slots, maps, base) -> list[str]:
        g = self.g
        out = []
        for e in slots:
            if not e["allocated"]:
                continue
            mapping = maps[e["slot"]]
            if e["switcher_mapped"] and g.dead is None and base not in mapping:
                out.append(f"slot {e['slot']}: says the Switcher is mapped, but {fmt.vaddr(base)} is not")
            for vaddr, pte in mapping.items():
                if vaddr < base:
                    continue
                if pte & _PAGE_USER:
                    out.append(f"slot {e['slot']}: Switcher page {fmt.vaddr(vaddr)} is user-accessible")
                if vaddr == base and pte & _PAGE_RW:
                    out.append(f"slot {e['slot']}: the Switcher's code page is writable")
        current = li.current_slot(g)
        if g.dead is None and slots[current]["allocated"] and base not in maps[current]:
            out.append(f"the current top level does not map the Switcher at {fmt.vaddr(base)}")
        return out

    def after_teardown(self, index: int) -> list[Broken]:
        g = self.g
        found = []
        health = li.health(g)
        evidence = health["anomalies"][self.seen_anomalies:]
        counts = li.refcounts(g)
        for gpfn, frame in li.guest_frames(g).items():
            if frame not in counts:
                evidence.append(f"guest page {fmt.frame(gpfn, g.x86)} (frame {fmt.frame(frame, g.x86)}) was freed "
                                "while the Launcher still maps it")
        for frame, (count, owner) in counts.items():
            kind = owner[0]
            if kind == "guest" and count != 1:
                evidence.append(f"guest page {fmt.frame(owner[1], g.x86)} (frame {fmt.frame(frame, g.x86)}) "
                                f"has {count} references after teardown (the Launcher's alone is 1)")
            elif kind == "switcher" and count != 1:
                evidence.append(f"Switcher page {owner[1]} has {count} references after teardown")
            elif kind not in ("guest", "switcher"):
                evidence.append(f"frame {fmt.frame(frame, g.x86)} ({kind}) leaked with {count} references")
        if evidence:
            found.append(Broken("no-leak", index, "teardown", evidence))
        if len(health["oopses"]) > self.seen_oopses:
            found.append(Broken("no-oops", index, "teardown", health["oopses"][self.seen_oopses:]))
        return found


def first_broken(steps, promise: str | None = None, **kw) -> Broken | None:
    a = replay(steps, **kw)
    for b in a.broken:
        if promise is None or b.promise == promise:
            return b
    return None


def shrink(steps: list[Step], promise: str, *, tries: int = 300, **kw) -> list[Step]:
    """A shorter list of steps that still breaks ``promise`` (delta debugging: drop chunks
    while the promise still breaks; at most ``tries`` replays, so the answer is the same on
    every machine)."""
    steps = list(steps)
    b = first_broken(steps, promise, **kw)
    if b is None:
        return steps
    steps = steps[: b.step + 1] if b.action != "teardown" else steps
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and tries > 0:
        i, changed = 0, False
        while i < len(steps) and tries > 0:
            candidate = steps[:i] + steps[i + chunk:]
            tries -= 1
            if candidate and first_broken(candidate, promise, **kw) is not None:
                steps, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return steps


def picture(b: Broken, steps: list[Step] | None = None, **kw):
    """Reference counts just before and just after the step that broke the promise, for
    every frame the step changed (a figure).

    The steps drawn are ``steps`` when given — the whole attack, cut at the breaking step
    ``b.step`` — and otherwise the minimal replay ``b.replay`` (whose last step breaks it).
    ``fig.frames``, ``fig.after_counts`` ({frame: count}) and ``fig.owners`` ({frame: (kind,
    which)}, as :func:`inspect.refcounts` names owners) say what the picture shows."""
    import textwrap

    from matplotlib.patches import Patch

    from .plots import BLUE, ORANGE, VERMILION, new_figure

    if steps is not None:
        steps = list(steps) if b.action == "teardown" else list(steps)[: b.step + 1]
    elif b.replay is not None:
        steps = list(b.replay)
    else:
        raise ValueError("picture: give the steps (the Broken has no minimal replay)")
    upto = len(steps) - 1 if b.action != "teardown" else len(steps)
    before = replay(steps[:upto], check=False, teardown=False, **kw)
    after = replay(steps[:upto], check=False, teardown=False, **kw)
    counts_before = li.refcounts(before.guest)
    if b.action == "teardown":
        after.guest.shutdown()
        head, action = f"{b.promise} broken at teardown", ""
    else:
        after.do(steps[upto].name, *steps[upto].args)
        head, action = f"{b.promise} broken at step {upto}:", str(after.steps[-1])
    counts_after = li.refcounts(after.guest)
    L = before.guest.x86
    frames = sorted(f for f in set(counts_before) | set(counts_after)
                    if counts_before.get(f, (0,))[0] != counts_after.get(f, (0,))[0])
    for gpfn, frame in li.guest_frames(after.guest).items():
        if frame not in counts_after and frame not in frames:
            frames.append(frame)

    def owner(f):
        return (counts_before.get(f) or counts_after.get(f) or (0, ("free", None)))[1]

    def label(f):
        kind, which = owner(f)
        who = kind if which is None else f"{kind} {which if kind != 'guest' else fmt.frame(which, L)}"
        return f"{fmt.frame(f, L)}\n{who}"

    fig = new_figure((max(4.8, 0.9 * len(frames) + 2.4), 3.4))
    ax = fig.add_subplot()
    xs = range(len(frames))
    ax.bar([x - 0.2 for x in xs], [counts_before.get(f, (0,))[0] for f in frames], 0.4, color=BLUE)
    after_counts = [counts_after.get(f, (0,))[0] for f in frames]
    ax.bar([x + 0.2 for x in xs], after_counts, 0.4, color=[VERMILION if c <= 0 else ORANGE for c in after_counts])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs), [label(f) for f in frames], fontsize=7)
    ax.set_ylabel("reference count")
    # The breaking step's text is long (a hypercall prints five registers): wrapped, so the
    # title fits the figure.
    ax.set_title("\n".join([head, *textwrap.wrap(action, 48)]), fontsize=9)
    handles = [Patch(color=BLUE, label="before the step")]
    if any(c > 0 for c in after_counts):
        handles.append(Patch(color=ORANGE, label="after it"))
    if any(c <= 0 for c in after_counts):
        handles.append(Patch(color=VERMILION, label="after it: zero or below"))
    ax.legend(handles=handles, fontsize=7)
    fig.frames = frames  # what the picture shows, for a cell to assert
    fig.after_counts = dict(zip(frames, after_counts))
    fig.owners = {f: owner(f) for f in frames}
    return fig


# =============================================================================================
# Challenges
# =============================================================================================
@dataclass(frozen=True)
class Challenge:
    id: str
    goal: str
    hints: tuple[str, ...]
    check: Callable  # (Attacker after teardown) -> (bool, why)
    possible: bool = True
    where: str = ""  # where the book teaches it (or "not yet in the book")
    pae: bool = False
    host: tuple = ()  # the Host this challenge runs on: (("switcher_addr", 0xFFFFD000), ...)
    setting: str = ""  # that Host, in words


def _broke(promise: str, text: str | None = None):
    def check(a: Attacker):
        for b in a.broken:
            if b.promise == promise and (text is None or any(text in e for e in b.evidence)):
                return True, str(b)
        return False, f"no step broke the promise '{PROMISES[promise]}'"

    return check


def _foreign_put(a: Attacker):
    for b in a.broken:
        if b.promise == "no-leak" and b.action != "teardown":
            if any("references" in e and ("switcher" in e or "host" in e or "regs" in e) or "whose count was already" in e
                   for e in b.evidence):
                return True, str(b)
    return False, "no frame the Guest does not own lost a reference during the attack"


def _pinned_after_teardown(a: Attacker):
    for b in a.broken:
        if b.promise == "no-leak" and b.action == "teardown" and any("references after teardown" in e for e in b.evidence):
            return True, str(b)
    return False, "after teardown every guest page was back to the Launcher's one reference"


def _clean_writable(a: Attacker):
    g = a.guest
    for step_index, (vaddr, gpte, spte) in enumerate(a.watch_clean):
        return True, (f"shadow PTE {fmt.entry(spte, g.x86)} for {fmt.vaddr(vaddr)} is writable, but the Guest's "
                      f"{fmt.entry(gpte, g.x86)} is not dirty")
    return False, "no shadow PTE was ever writable while its Guest PTE was clean"


AMPLIFY = 64  # shadow table pages the "amplify" challenge asks for


def _amplify(a: Attacker):
    peak, most = a.watch_peak_shadow, a.watch_most_user
    pages = f"{fmt.count(peak, 'more shadow table page', 'more shadow table pages')} than at boot"
    if peak >= AMPLIFY:
        return True, f"the Host held {pages} while your user space mapped a single page"
    if most <= 1:
        return False, f"the Host held at most {pages} while your user space mapped at most one page ({AMPLIFY} is the goal)"
    return False, (f"your user space mapped up to {most} pages; only the moments when it mapped at most one "
                   f"count, and then the Host held at most {pages} ({AMPLIFY} is the goal)")


CHALLENGES: dict[str, Challenge] = {c.id: c for c in [
    Challenge(
        "foreign-put", "Make the Host drop a reference on a frame you do not own.",
        ("Which hypercall takes an index, and how is the index bounded?",
         "Compare the bound guest_set_pgd tests (H:400) with the number of entries in a top level.",
         "Without PAE, the entry one past the end of a top-level page is the first entry of the next "
         "physical frame. What is in the frame after one of your top levels?",
         "Put a shadow-looking entry there that names a frame of the Host's (say a Switcher page), then "
         "SET_PGD your top level with index PTRS_PER_PGD."),
        _foreign_put, where="chapter 4 (set_pgd_bound)",
        host=(("switcher_addr", 0xFFFFD000), ("prandom", (0,) * 64)),
        setting="a Host whose Switcher sits near the very top (0xffffd000) and whose random slot choices all come out 0"),
    Challenge(
        "pinned-after-teardown", "Keep one of your pages pinned after the Guest is torn down.",
        ("Which function takes a reference to a guest page? Which gives it back?",
         "release_pte (H:460) only gives back what a *present* shadow entry holds.",
         "What does __guest_set_pte (H:420) do with a Guest PTE that is not present but has Accessed set?"),
        _pinned_after_teardown, where="chapter 4 (pinned_not_present)"),
    Challenge(
        "crash-host", "Crash the Host (an oops) from a live Guest.",
        ("The Host oopses on a NULL pointer. Which function assumes a page-table page exists without checking?",
         "remove_switcher_percpu_map (H:481) trusts find_spte to find the Switcher's PTE page.",
         "When does a slot's switcher_mapped stay true although its Switcher mapping is gone? Think of a slot "
         "that is cached but not current."),
        _broke("no-oops"), where="chapter 7 (switcher_oops)"),
    Challenge(
        "clean-writable", "Make the Host install a writable shadow PTE for a page your PTE says is clean.",
        ("Dirty is how the Guest learns a page was written. When may the Host make a shadow entry writable?",
         "demand_page only does so on a write fault. Is there another place shadow entries are born?",
         "__guest_set_pte's shortcut (H:420) for a PTE with Accessed already set: what flags does it copy?"),
        _clean_writable, where="chapter 4 (writable_not_dirty)"),
    Challenge(
        "freed-while-mapped", "Make the Host release one of your pages more times than it took it.",
        ("Look for a path that releases an old shadow entry and then does not replace it.",
         "In __guest_set_pte, what happens to the old entry when check_gpte kills the Guest?",
         "Teardown releases every shadow entry it finds, stale or not."),
        _broke("no-leak", "freed while the Launcher still maps it"), where="chapter 4 (double_release)"),
    Challenge(
        "amplify", f"Make the Host hold {AMPLIFY} more pages of shadow tables than at boot, while your user "
        "space maps one single page of memory.",
        ("A shadow PTE page exists for every top-level entry the Host shadows, per cached top level.",
         "Nothing stops many of your top-level entries from pointing at the same PTE page of yours.",
         "Point many user top-level entries at one PTE page whose entry 0 maps your one page, then touch "
         "one address under each of them."),
        _amplify, where="not yet in the book"),
    Challenge(
        "foreign-map", "Get a shadow PTE that maps a host frame outside your memory (not a Switcher page).",
        ("Where does every shadow PTE's frame come from? Read gpte_to_spte (H:340) and get_pfn (H:350).",
         "What does check_gpte (H:330) refuse, and what does the Launcher's mapping cover?",
         "This one cannot be done: say why, from the C, in your answer; the lab's fuzzing and the project's "
         "property tests (promise 2) back you up."),
        _broke("own-memory"), possible=False, where="impossible: argue it from the C"),
]}


class _ChallengeAttacker(Attacker):
    """Adds the observations two checkers need: writable-but-clean shadow PTEs, and the peak
    number of shadow table pages."""

    def __init__(self, *a, **kw):
        self.watch_clean: list = []
        self.watch_peak_shadow = 0  # most shadow table pages over boot's, at a moment of <= 1 user page
        self.watch_most_user = 0  # most user pages (distinct frames) the shadow tables ever mapped
        super().__init__(*a, **kw)
        self.baseline_lower = sum(1 for _, owner in li.refcounts(self.guest).values() if owner == ("shadow", None))

    def do(self, name, *args):
        result = super().do(name, *args)
        g = self.guest
        watch = self.watch
        if g.dead is None and watch.last_maps is not None:
            lower = sum(1 for _, owner in watch.last_refcounts.values() if owner == ("shadow", None))
            if self.baseline_lower is None:
                self.baseline_lower = lower
            kernel = g.kernel_address
            user_frames = {g.x86.pte_pfn(pte) for m in watch.last_maps.values() for v, pte in m.items() if v < kernel}
            self.watch_most_user = max(self.watch_most_user, len(user_frames))
            if len(user_frames) <= 1:
                self.watch_peak_shadow = max(self.watch_peak_shadow, lower - self.baseline_lower)
        if g.dead is None and len(self.watch_clean) < 4:
            vaddr = {"map": 0, "touch": 0}.get(name)
            if name == "hypercall" and args[0] == hc.LHCALL_SET_PTE:
                vaddr = 2
            if vaddr is not None:
                self._clean_writable_at(args[vaddr] & 0xFFFFF000)
        return result

    def _clean_writable_at(self, vaddr: int) -> None:
        """Is the shadow PTE of ``vaddr`` writable in some slot while the Guest's is clean?"""
        g = self.guest
        if vaddr >= g.kernel_address:
            return
        for e in li.pgdir_cache(g):
            if not e["allocated"] or not e["gpgdir"]:
                continue
            shadow = li.walk_shadow(g, vaddr, e["slot"])
            if not shadow or shadow[-1].level != "pte" or not shadow[-1].present or not shadow[-1].value & _PAGE_RW:
                continue
            walk = li.walk_guest(g, vaddr, e["gpgdir"])
            gpte = walk[-1].value if walk and walk[-1].level == "pte" and walk[-1].present else 0
            if gpte & _PAGE_PRESENT and not gpte & _PAGE_DIRTY:
                self.watch_clean.append((vaddr, gpte, shadow[-1].value))
                return


@dataclass
class Attempt:
    challenge: str
    succeeded: bool
    why: str
    steps: list[Step]
    broken: list[Broken]
    error: str | None = None

    def __str__(self) -> str:
        c = CHALLENGES[self.challenge]
        head = f"{c.id}: {'SUCCEEDED' if self.succeeded else 'not achieved'} — {c.goal}"
        lines = [head, f"  {len(self.steps)} steps; {self.why}"]
        if self.error:
            lines.append(f"  your attack raised: {self.error}")
        return "\n".join(lines)

    __repr__ = __str__


def attempt(challenge: str, attack: Callable | list, *, pae: bool | None = None, seed: int = 0) -> Attempt:
    """Run ``attack(attacker)`` (or replay a list of steps) on a fresh Guest, tear it down and
    say whether it achieved the challenge."""
    if challenge not in CHALLENGES:
        raise ValueError(f"no challenge named {challenge!r}; there are: {', '.join(CHALLENGES)}")
    c = CHALLENGES[challenge]
    a = _ChallengeAttacker(pae=c.pae if pae is None else pae, seed=seed, **_host(c))
    error = None
    try:
        if callable(attack):
            attack(a)
        else:
            for step in attack:
                name, args = (step.name, step.args) if isinstance(step, Step) else (step[0], tuple(step[1]))
                a.do(name, *args)
    except Exception as err:  # the attacker's own bug: the attempt stops there
        error = f"{type(err).__name__}: {err}"
    a.teardown()
    ok, why = c.check(a)
    return Attempt(challenge, bool(ok), why, list(a.steps), list(a.broken), error)


def host_settings(challenge: "str | Challenge") -> dict:
    """The Host a challenge runs on, as keyword arguments for :class:`Attacker`, :func:`replay`,
    :func:`shrink` and :func:`picture` (``{}`` for the ordinary Host)."""
    if not isinstance(challenge, Challenge) and challenge not in CHALLENGES:
        raise ValueError(f"no challenge named {challenge!r}; there are: {', '.join(CHALLENGES)}")
    c = challenge if isinstance(challenge, Challenge) else CHALLENGES[challenge]
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.host}


_host = host_settings  # the name the package's own code uses


def hints(challenge: str, level: int = 1) -> str:
    """The first ``level`` hints of a challenge's ladder."""
    if challenge not in CHALLENGES:
        raise ValueError(f"no challenge named {challenge!r}; there are: {', '.join(CHALLENGES)}")
    ladder = CHALLENGES[challenge].hints
    return "\n".join(f"hint {i + 1}: {h}" for i, h in enumerate(ladder[:max(1, level)]))


# =============================================================================================
# Known attacks (the ones the book teaches), for re-attacking a patched Host
# =============================================================================================
KNOWN_ATTACKS: dict[str, Callable] = {}


def _known(challenge: str):
    def register(fn):
        KNOWN_ATTACKS[challenge] = fn
        return fn

    return register


@_known("foreign-put")
def _attack_foreign_put(a: Attacker):
    # On this Host the shadow PTE page of the last top-level slot is the frame right after
    # the shadow top level.  Its entry 0 maps kernel address 0xffc00000: map a page of ours
    # there, filled with fake "entries" that name a Switcher page, and let the Host release
    # top-level entry PTRS_PER_PGD (one past the end) of our top level.
    g = a.guest
    data = a.alloc_page()
    fake = (g.host.lg_switcher_pages[1] << PAGE_SHIFT) | _PAGE_PRESENT
    for i in range(3):
        a.poke((data << PAGE_SHIFT) + 4 * i, fake)
    a.map(0xFFC00000, data, _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY)
    a.touch(0xFFC00000)
    a.set_pgd(a.gpgdir(), g.x86.PTRS_PER_PGD)


@_known("pinned-after-teardown")
def _attack_pinned(a: Attacker):
    proc = a.new_process()
    a.switch_to(proc)
    a.map(0x08048000, a.alloc_page())
    a.touch(0x08048000, user=True)  # the Host now shadows this region: SET_PTE reaches __guest_set_pte
    a.set_pte(a.gpgdir(), 0x08049000, (a.alloc_page() << PAGE_SHIFT) | _PAGE_ACCESSED)  # not present, Accessed


@_known("clean-writable")
def _attack_clean_writable(a: Attacker):
    proc = a.new_process()
    a.switch_to(proc)
    a.map(0x08048000, a.alloc_page())
    a.touch(0x08048000, user=True)  # the Host builds the shadow PTE page for this region
    a.map(0x08049000, a.alloc_page(), _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)  # clean


@_known("freed-while-mapped")
def _attack_double_release(a: Attacker):
    proc = a.new_process()
    a.switch_to(proc)
    page = a.alloc_page()
    a.map(0x08048000, page)
    a.touch(0x08048000, user=True)  # a shadow PTE now holds a reference to the page
    beyond = a.limits()["device_limit"] + 5  # not memory, not a device: check_gpte kills
    a.map(0x08048000, beyond, _PAGE_PRESENT | _PAGE_ACCESSED)


@_known("crash-host")
def _attack_crash(a: Attacker):
    first = a.new_process()
    second = a.new_process()
    a.switch_to(first)
    a.switch_to(second)  # first is now cached but not current
    g = a.guest
    idx = g.x86.pgd_index(g.host.switcher_addr)
    a.set_pgd(a.gpgdir(first), idx)  # drops first's Switcher mapping, leaves switcher_mapped
    a.switch_to(first)


@_known("amplify")
def _attack_amplify(a: Attacker):
    g = a.guest
    L = g.x86
    table = a.alloc_page()
    data = a.alloc_page()
    a.poke(table << PAGE_SHIFT, (data << PAGE_SHIFT) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)
    proc = a.new_process()
    a.switch_to(proc)
    for i in range(AMPLIFY):  # AMPLIFY user top-level (PAE: mid-level) entries, one PTE page behind them all
        if L.pae:
            a.poke((g.current.pmd_pages[0] << PAGE_SHIFT) + i * 8, (table << PAGE_SHIFT) | 0x067)
        else:
            a.poke(a.gpgdir() + i * 4, (table << PAGE_SHIFT) | 0x067)
    for i in range(AMPLIFY):
        a.touch(i << L.PMD_SHIFT, user=True)


# =============================================================================================
# Fuzzing, and re-attacking a patched Host
# =============================================================================================
def random_steps(rng: random.Random, n: int, pae: bool, mem_pages: int = 1024) -> list[Step]:
    """``n`` random hostile steps (the property tests' Guest, in the lab's vocabulary)."""
    ptrs = 4 if pae else 1024
    entry_mask = (1 << 64) - 1 if pae else 0xFFFFFFFF
    kernel = 0xC0000000

    def vaddr():
        r = rng.random()
        if r < 0.3:
            return 0x08048000 + rng.randrange(32) * PAGE_SIZE
        if r < 0.5:
            return kernel + rng.randrange(64) * PAGE_SIZE
        if r < 0.6:
            return rng.choice([0xFFC00000, 0xFFE00000, 0xFFDFF000, 0xFFFFF000, 0xFFBFF000])
        return rng.randrange(1 << 32) & ~0xFFF

    def entry():
        gpfn = rng.choice([rng.randrange(0x200, mem_pages), rng.randrange(mem_pages, mem_pages + 300), rng.randrange(1 << 20)])
        return ((gpfn << 12) | rng.randrange(0x1000)) & entry_mask

    def step(name, args):
        return Step(name, args, pae)

    steps = []
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            steps.append(step("map", (vaddr(), rng.randrange(0x210, mem_pages), rng.choice([0x067, 0x027, 0x025, 0x007, 0x065, 0x020, 0x060]))))
        elif r < 0.4:
            steps.append(step("touch", (vaddr(), rng.random() < 0.5, rng.random() < 0.5)))
        elif r < 0.5:
            steps.append(step("new_process", ()))
        elif r < 0.6:
            steps.append(step("switch_to", (rng.randrange(8),)))
        elif r < 0.7:
            steps.append(step("poke", (rng.randrange(0, mem_pages * PAGE_SIZE - 8) & ~7, entry())))
        else:
            call = rng.choice([hc.LHCALL_SET_PTE, hc.LHCALL_SET_PGD, hc.LHCALL_FLUSH_TLB, hc.LHCALL_NEW_PGTABLE,
                               hc.LHCALL_SET_PMD, hc.LHCALL_SET_STACK, hc.LHCALL_LGUEST_INIT])
            a1 = rng.choice([rng.randrange(1 << 32), rng.randrange(0x200, 0x220) << 12])
            a2 = rng.choice([rng.randrange(1 << 32), rng.randrange(ptrs + 2), vaddr()])
            e = entry()
            if call == hc.LHCALL_SET_STACK:
                steps.append(step("hypercall", (call, rng.randrange(0x100), rng.randrange(1 << 32), rng.randrange(4), 0)))
            else:
                steps.append(step("hypercall", (call, a1, a2, e & 0xFFFFFFFF, e >> 32)))
    return steps


@dataclass
class FuzzReport:
    seconds: float
    runs: int
    steps: int
    found: dict  # promise -> Broken (with a minimal replay)
    seed: int = 0
    pae: bool = False

    def __str__(self) -> str:
        lines = [f"{self.runs} random hostile Guests ({self.steps} steps, seed {self.seed})"]
        for promise in PROMISES:
            b = self.found.get(promise)
            lines.append(f"- {promise}: " + ("kept" if b is None else "BROKEN"))
            if b is not None:
                lines += ["    " + line for line in str(b).splitlines()]
        return "\n".join(lines)

    __repr__ = __str__


def fuzz(seconds: float = 5.0, *, runs: int | None = None, seed: int = 0, pae: bool = False,
         steps_per_run: int = 25, progress=None) -> FuzzReport:
    """Run random hostile Guests for ``seconds`` (or exactly ``runs`` of them, which makes the
    result the same on every machine); keep the first break of each promise, shrunk to a
    minimal replay.  ``progress(done, total)`` is called as it goes."""
    if not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise ValueError(f"seconds={seconds!r} must be a number of seconds between 0 and 3600")
    if runs is not None and (runs.__class__ is not int or not 1 <= runs <= 1_000_000):
        raise ValueError(f"runs={runs!r} must be a whole number from 1 to 1000000")
    rng = random.Random(seed)
    start = time.monotonic()
    found: dict = {}
    done = total_steps = 0
    while (done < runs if runs is not None else time.monotonic() - start < seconds) and len(found) < len(PROMISES):
        steps = random_steps(rng, steps_per_run, pae)
        a = replay(steps, pae=pae, seed=seed)
        done += 1
        total_steps += len(steps)
        for b in a.broken:
            if b.promise not in found:
                b.replay = shrink(a.steps, b.promise, pae=pae, seed=seed)
                found[b.promise] = b
        if progress is not None:
            progress(done, runs) if runs is not None else progress(min(seconds, time.monotonic() - start), seconds)
    if progress is not None:
        progress(1, 1)
    return FuzzReport(time.monotonic() - start, done, total_steps, found, seed, pae)


def check_attack(challenge: str, attack: Callable) -> None:
    """For a notebook: run the attack, print what happened, fail (AssertionError) unless it
    achieved the challenge.  (:func:`attempt` returns the whole record.)"""
    result = attempt(challenge, attack)
    print(result)
    if not result.succeeded:
        raise AssertionError(f"{challenge}: not achieved — {result.why}")


@contextmanager
def patched(patches: dict[str, Callable]):
    """Run the Host with your versions of port functions (``{"guest_set_pgd": mine}``)."""
    with ExitStack() as stack:
        for name, func in patches.items():
            stack.enter_context(exercises.use(name, func))
        yield


@dataclass
class Reattack:
    rows: list[dict]
    fuzz_before: FuzzReport
    fuzz_after: FuzzReport
    differences: list[tuple[bool, int, int, Step]]  # (pae, run, step index, step) where the Hosts first differ
    compared_steps: int

    def __str__(self) -> str:
        lines = ["attack                  unpatched     patched"]
        for r in self.rows:
            lines.append(f"{r['challenge']:<22}  {'succeeds' if r['before'] else 'fails':<12}  {'succeeds' if r['after'] else 'fails'}")
        restored = [p for p in PROMISES if p in self.fuzz_before.found and p not in self.fuzz_after.found]
        lines.append(f"promises the fuzzer broke before and not after: {', '.join(restored) or 'none'}")
        lines.append(f"the patched Host first differs from the unpatched one at {len(self.differences)} of "
                     f"{self.compared_steps} steps (the known attacks, then random Guests):")
        lines += [f"  {'PAE' if pae else 'non-PAE'} run {run}, step {i}: {step}" for pae, run, i, step in self.differences[:5]]
        return "\n".join(lines)

    __repr__ = __str__


def _host_state(g: Guest):
    return (g.dead, tuple((e["gpgdir"], e["allocated"], e["switcher_mapped"]) for e in li.pgdir_cache(g)),
            tuple(tuple(sorted(li.shadow_mappings(g, e["slot"]).items())) for e in li.pgdir_cache(g) if e["allocated"]),
            tuple(sorted((f, c) for f, (c, _) in li.refcounts(g).items())))


def reattack(patches: dict[str, Callable], *, seconds: float = 3.0, runs: int | None = None, seed: int = 0,
             compare_runs: int = 40) -> Reattack:
    """Every known attack and a fuzzing campaign, on the unpatched and the patched Host; and
    the two Hosts compared step by step on random Guests (where the patch changes nothing the
    C does elsewhere, they agree on every step that does not walk into the flaw)."""
    rows = []
    for cid, attack in KNOWN_ATTACKS.items():
        before = attempt(cid, attack).succeeded
        with patched(patches):
            after = attempt(cid, attack).succeeded
        rows.append({"challenge": cid, "before": before, "after": after})
    fuzz_before = fuzz(seconds, runs=runs, seed=seed)
    with patched(patches):
        fuzz_after = fuzz(seconds, runs=runs, seed=seed)
    differences, compared = [], 0
    rng = random.Random(seed + 1)
    # The known attacks (on the Host each one needs), then random Guests of both layouts.
    cases = [(CHALLENGES[cid].pae, _host(CHALLENGES[cid]), attempt(cid, KNOWN_ATTACKS[cid]).steps)
             for cid in KNOWN_ATTACKS]
    cases += [(bool(run % 2), {}, random_steps(rng, 20, pae=bool(run % 2))) for run in range(compare_runs)]
    for run, (pae, host, steps) in enumerate(cases):
        plain = Attacker(pae=pae, seed=seed, check=False, **host)
        with patched(patches):
            fixed = Attacker(pae=pae, seed=seed, check=False, **host)
        for i, step in enumerate(steps):
            plain.do(step.name, *step.args)
            with patched(patches):
                fixed.do(step.name, *step.args)
            compared += 1
            if _host_state(plain.guest) != _host_state(fixed.guest):
                differences.append((pae, run, i, step))
                break
    return Reattack(rows, fuzz_before, fuzz_after, differences, compared)


__all__ = ["picture", "host_settings", "check_attack", "progress_bar", "Attacker", "Step", "PROMISES", "Broken", "CHALLENGES", "Challenge", "attempt", "hints", "replay",
           "shrink", "fuzz", "FuzzReport", "patched", "reattack", "KNOWN_ATTACKS", "random_steps"]


# =============================================================================================
# A widget: the challenges and their hint ladders
# =============================================================================================
def hint_ladder(challenge: str = "foreign-put"):
    """Pick a challenge, read its goal, and climb its hint ladder one rung at a time."""
    import ipywidgets as w

    if challenge not in CHALLENGES:
        raise ValueError(f"no challenge named {challenge!r}; there are: {', '.join(CHALLENGES)}")
    choose = w.Dropdown(options=list(CHALLENGES), value=challenge, description="challenge")
    more = w.Button(description="next hint")
    text = w.HTML()
    level = {"n": 0}

    def show():
        c = CHALLENGES[choose.value]
        rungs = "".join(f"<li>{h}</li>" for h in c.hints[: level["n"]])
        setting = f"<p><i>On {c.setting}.</i></p>" if c.setting else ""
        shown = f"{level['n']} of {len(c.hints)} hints"
        text.value = (f"<p><b>{c.goal}</b> ({c.where})</p>{setting}<ol>{rungs}</ol><p>{shown}</p>")
        more.disabled = level["n"] >= len(c.hints)
        panel.description = f"Hint ladder: {c.id} — {c.goal} ({shown} shown)"

    def on_choose(change):
        level["n"] = 0
        show()

    def on_more(_):
        level["n"] += 1
        show()

    panel = w.VBox([w.HBox([choose, more]), text])
    choose.observe(on_choose, names="value")
    more.on_click(on_more)
    show()
    from .experiments import _Described

    return _Described(panel)


def progress_bar(total: int, description: str = "fuzzing"):
    """A progress bar for :func:`fuzz` in a notebook (shown at once; call it with
    ``(done, total)``).  With ``runs=`` the bar ends full, so a stored notebook shows the same."""
    import ipywidgets as w
    from IPython.display import display

    bar = w.IntProgress(value=0, min=0, max=max(1, int(total)), description=description)
    display(bar)

    def update(done, whole):
        bar.value = min(bar.max, round(bar.max * done / whole)) if whole else bar.max

    update.widget = bar
    return update
