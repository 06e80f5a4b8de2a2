"""Time travel: record a whole run of a Guest, then look at any instant of it.

A :class:`Recorder` runs a workload of Guest operations (boot, new processes, mappings,
SET_PTE/SET_PGD, accesses, switches, flushes, teardown), one *event* per operation, and after
each one captures what changed, read through :mod:`lguest_book.inspect` only:

* every entry of the shadow tables reachable from the four cached top levels,
* every entry of the Guest's own tables those top levels shadow (so the Guest's
  Accessed/Dirty bits),
* the pgdir cache (which Guest top level each slot shadows, its shadow frame, whether the
  Switcher is mapped) and the current slot,
* every host frame's reference count, and whether the Guest is dead.

The result, a :class:`Recording`, keeps per-event *deltas* (key, old, new) and a full
*keyframe* every ``keyframe_every`` events, so :meth:`Recording.state` rebuilds any instant
from the nearest keyframe without running anything again.  The state is a flat dict:

=========================  =====================================================
key                        value
=========================  =====================================================
``("s", frame, i)``        shadow entry ``i`` of host frame ``frame`` (non-zero)
``("g", gpfn, i)``         the Guest's entry ``i`` of its page ``gpfn`` (non-zero)
``("spage", frame)``       (level, slot, first virtual address) of a shadow table page
``("gpage", gpfn)``        (level, slot, first virtual address) of a Guest table page
``("slot", n)``            (Guest top level, shadow frame, Switcher mapped) or None
``("current",)``           the current slot
``("ref", frame)``         the frame's reference count
``("dead",)``              why the Guest was killed (absent while it lives)
=========================  =====================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import inspect as li

__all__ = ["Event", "Recording", "Recorder", "workload"]

_P, _PSE = 0x1, 0x80


@dataclass(frozen=True)
class Event:
    """One recorded operation."""

    index: int
    kind: str  # boot | process | switch | set_pte | set_pgd | set_pmd | map | touch | flush | teardown | start
    label: str
    outcome: str = ""


class Recording:
    """Events, their deltas and keyframes: any instant, without re-running anything."""

    def __init__(self, layout, keyframe_every: int):
        self.layout = layout  # the Guest's x86 layout (its widths, flag names)
        self.pae = layout.pae
        self.keyframe_every = keyframe_every
        self.events: list[Event] = []
        self.deltas: list[tuple] = []  # per event: ((key, old, new), ...)
        self.keyframes: dict[int, dict] = {}  # event index -> full state after it
        self._cursor: tuple[int, dict] | None = None  # (event, working state) of the last state()
        self.kernel_address = 0xC0000000  # where the Guest's kernel part starts (set by the Recorder)
        self.names: dict[int, str] = {}  # Guest top level -> the process's name

    def __len__(self) -> int:
        return len(self.events)

    def _check(self, k) -> int:
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < len(self.events):
            raise ValueError(f"event {k!r}: this recording has events 0..{len(self.events) - 1}")
        return k

    def changes(self, k: int) -> tuple:
        """What event ``k`` changed: ((key, old, new), ...); old or new None when absent."""
        return self.deltas[self._check(k)]

    def changed_keys(self, k: int) -> set:
        return {key for key, _, _ in self.changes(k)}

    @staticmethod
    def _forward(state: dict, delta) -> None:
        for key, _old, new in delta:
            if new is None:
                state.pop(key, None)
            else:
                state[key] = new

    @staticmethod
    def _backward(state: dict, delta) -> None:
        for key, old, _new in delta:
            if old is None:
                state.pop(key, None)
            else:
                state[key] = old

    def state(self, k: int) -> dict:
        """The full state just after event ``k`` (a dict you may keep; see the module doc).

        From the nearest keyframe (or from the last state asked for, when that is nearer),
        applying at most ``keyframe_every / 2`` deltas forward or backward."""
        k = self._check(k)
        kf = (k // self.keyframe_every) * self.keyframe_every
        nxt = kf + self.keyframe_every
        start, base = kf, self.keyframes[kf]
        if nxt in self.keyframes and nxt - k < k - kf:
            start, base = nxt, self.keyframes[nxt]
        if self._cursor is not None and abs(self._cursor[0] - k) < abs(start - k):
            start, state = self._cursor
            state = dict(state)
        else:
            state = dict(base)
        step = self._forward if k >= start else self._backward
        if k >= start:
            for j in range(start + 1, k + 1):
                step(state, self.deltas[j])
        else:
            for j in range(start, k, -1):
                step(state, self.deltas[j])
        self._cursor = (k, state)
        return dict(state)

    def find(self, kind: str | None = None, text: str = "") -> list[int]:
        """Events of ``kind`` whose label contains ``text``."""
        return [e.index for e in self.events if (kind is None or e.kind == kind) and text in e.label]

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for e in self.events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return f"Recording of {len(self.events)} events ({shown}); a keyframe every {self.keyframe_every}"

    __repr__ = summary


class Recorder:
    """Run Guest operations and record each as an event.

    ``Recorder(guest)`` records from the Guest's present state (event 0, "start");
    ``Recorder.boot(pae=...)`` makes a Guest that has not booted yet and records its boot as
    event 1.  Each method runs one operation on the Guest (through its public methods) and
    records it; ``recording`` is the :class:`Recording` so far.
    """

    def __init__(self, guest, keyframe_every: int = 1024):
        if not isinstance(keyframe_every, int) or keyframe_every < 2:
            raise ValueError(f"keyframe_every={keyframe_every!r}: use a whole number of events, 2 or more")
        self.guest = guest
        self.L = li.layout(guest)
        self.recording = Recording(self.L, keyframe_every)
        self.recording.kernel_address = li.limits(guest)["kernel_address"]
        for proc in getattr(guest, "processes", []):
            self.recording.names[proc.gpgdir] = proc.name
        self._state: dict = {}
        self._pages: dict = {}  # ("s"|"g", page) -> (content, entries list, children, meta)
        self._refs: dict = {}
        self._misc_keys: set = set()
        self._limits = li.limits(guest)
        self._pfn_limit = self._limits["pfn_limit"]
        self._append(Event(0, "start", "the Guest as it stood when recording began"))

    @classmethod
    def boot(cls, pae: bool = False, keyframe_every: int = 1024, **guest_kwargs) -> "Recorder":
        """A Guest that has not booted yet; its boot is recorded as event 1."""
        from .guest import Guest

        rec = cls(Guest(pae=pae, boot=False, **guest_kwargs), keyframe_every)
        rec.do("boot", "boot: LGUEST_INIT, swapper's top level loaded, the stack pinned", rec.guest.boot)
        return rec

    # --- capturing ------------------------------------------------------------------------
    def _capture(self) -> list:
        """Compare the model with the last capture; returns the delta and updates the state."""
        g, L = self.guest, self.L
        delta: list = []
        state = self._state
        misc: dict = {}
        cache = li.pgdir_cache(g)
        limits = li.limits(g)
        self._limits = limits
        for c in cache:
            misc[("slot", c["slot"])] = (c["gpgdir"], c["frame"], c["switcher_mapped"]) if c["allocated"] else None
        misc[("current",)] = li.current_slot(g)
        misc[("dead",)] = limits["dead"]
        pages: dict = {}
        for c in cache:
            if c["allocated"]:
                self._walk_shadow(c["frame"], 0, c["slot"], 0, pages)
                self._walk_guest(c["gpgdir"], c["slot"], pages)
        # pages: entries that changed, appeared or went away
        old_pages = self._pages
        for key, rec in pages.items():
            old = old_pages.get(key)
            tag = key[0]
            misc[("spage" if tag == "s" else "gpage", key[1])] = rec[3]
            if old is not None and old[0] is rec[0]:
                continue  # the same content, untouched
            new_entries = rec[1]
            if old is None:
                page = key[1]
                delta.extend([((tag, page, i), None, v) for i, v in enumerate(new_entries) if v])
            else:
                old_entries = old[1]
                for c in range(0, len(new_entries), 32):  # compare in slices (C speed), then entries
                    if old_entries[c:c + 32] != new_entries[c:c + 32]:
                        for i in range(c, min(c + 32, len(new_entries))):
                            o, n = old_entries[i], new_entries[i]
                            if o != n:
                                delta.append(((tag, key[1], i), o or None, n or None))
        for key, old in old_pages.items():
            if key not in pages:
                tag, page = key
                delta.extend([((tag, page, i), v, None) for i, v in enumerate(old[1]) if v])
        self._pages = pages
        # reference counts
        refs = li.refcount_map(g)
        if refs != self._refs:
            old_refs = self._refs
            for f in sorted({f for f, _ in refs.items() ^ old_refs.items()}):
                delta.append((("ref", f), old_refs.get(f), refs.get(f)))
            self._refs = refs
        # the rest: cache, current slot, page metadata, death
        for key, value in misc.items():
            if state.get(key) != value:
                delta.append((key, state.get(key), value))  # a None value: the key goes
        for key in self._misc_keys - misc.keys():
            delta.append((key, state[key], None))
        self._misc_keys = set(misc)
        Recording._forward(state, delta)
        return delta

    def _walk_shadow(self, frame: int, depth: int, slot: int, vbase: int, pages: dict) -> None:
        key = ("s", frame)
        if key in pages or not frame:
            return
        L = self.L
        levels = ("pgd", "pmd", "pte") if L.pae else ("pgd", "pte")
        level = levels[depth]
        page = li.shadow_page(self.guest, frame)
        count = 4 if (L.pae and level == "pgd") else len(page)
        span = {"pgd": L.PGDIR_SIZE, "pmd": L.PMD_SIZE, "pte": 4096}[level]

        def children(entries):
            if level == "pte":
                return ()
            pfn = L.pmd_pfn if level == "pmd" else L.pgd_pfn
            return tuple((i, pfn(v)) for i, v in enumerate(entries[:count]) if v & _P and not v & _PSE)

        old = self._pages.get(key)
        if old is not None and old[1] == page:
            rec = (old[0], old[1], old[2], (level, slot, vbase))
        else:
            entries = list(page)
            rec = (object(), entries, children(entries), (level, slot, vbase))
        pages[key] = rec
        for i, child in rec[2]:
            self._walk_shadow(child, depth + 1, slot, (vbase + i * span) & 0xFFFFFFFF, pages)

    def _walk_guest(self, gpgdir: int, slot: int, pages: dict) -> None:
        L = self.L
        self._guest_page(gpgdir >> 12, 0, slot, 0, pages, offset=(gpgdir & 0xFFF) // L.entry_bytes)

    def _guest_page(self, gpfn: int, depth: int, slot: int, vbase: int, pages: dict, offset: int = 0) -> None:
        key = ("g", gpfn)
        if key in pages:
            return
        L = self.L
        levels = ("pgd", "pmd", "pte") if L.pae else ("pgd", "pte")
        level = levels[depth]
        raw = li.guest_page_bytes(self.guest, gpfn)
        old = self._pages.get(key)
        if raw is not None and old is not None and old[0] == raw:
            rec = (old[0], old[1], old[2], (level, slot, vbase))
        else:
            if raw:
                entries = memoryview(raw).cast("Q" if L.pae else "I").tolist()
            elif raw is None:
                entries = list(li.guest_page(self.guest, gpfn))
            else:
                entries = [0] * L.ENTRIES_PER_PAGE
            if old is not None and old[1] == entries:
                rec = (raw if raw is not None else old[0], old[1], old[2], (level, slot, vbase))
            else:
                first, count = (offset, 4) if (L.pae and level == "pgd") else (0, len(entries))
                kids = () if level == "pte" else tuple(
                    (i - first, (L.pmd_pfn(v) if level == "pmd" else L.pgd_pfn(v)))
                    for i, v in enumerate(entries[first:first + count], start=first)
                    if v & _P and not v & _PSE and (L.pmd_pfn(v) if level == "pmd" else L.pgd_pfn(v)) < self._pfn_limit)
                rec = (raw if raw is not None else object(), entries, kids, (level, slot, vbase))
        pages[key] = rec
        span = {"pgd": L.PGDIR_SIZE, "pmd": L.PMD_SIZE, "pte": 4096}[level]
        for i, child in rec[2]:
            self._guest_page(child, depth + 1, slot, (vbase + i * span) & 0xFFFFFFFF, pages)

    def _append(self, event: Event) -> Event:
        rec = self.recording
        delta = tuple(self._capture())
        rec.events.append(event)
        rec.deltas.append(delta)
        rec.kernel_address = self._limits["kernel_address"] or rec.kernel_address
        if event.index % rec.keyframe_every == 0:
            rec.keyframes[event.index] = dict(self._state)
        rec._cursor = None
        return event

    # --- operations ---------------------------------------------------------------------------
    def do(self, kind: str, label: str, action, outcome=None) -> Event:
        """Run ``action()`` on the Guest and record it as one event.  ``outcome(result)``, if
        given, says in words how it ended."""
        result = action()
        said = outcome(result) if outcome is not None else ""
        dead = li.limits(self.guest)["dead"]
        if dead and not said:
            said = f"the Guest is dead: {dead!r}"
        return self._append(Event(len(self.recording.events), kind, label, said))

    def new_process(self, name: str | None = None):
        box = {}

        def act():
            box["p"] = self.guest.new_process(name)

        self.do("process", f"the Guest builds a top level for {name or 'a new process'}", act)
        self.recording.names[box["p"].gpgdir] = box["p"].name
        return box["p"]

    def switch_to(self, proc) -> Event:
        before = {c["gpgdir"] for c in li.pgdir_cache(self.guest) if c["allocated"]}
        return self.do("switch", f"NEW_PGTABLE {proc.name}", lambda: self.guest.switch_to(proc),
                       lambda _: "hit: its shadow was cached" if proc.gpgdir in before else "miss: a slot is (re)built")

    def map(self, vaddr: int, gpfn: int | None = None, **kwargs) -> Event:
        return self.do("set_pte", f"map {vaddr:#010x} → page {'new' if gpfn is None else f'{gpfn:#x}'} (SET_PTE)",
                       lambda: self.guest.map(vaddr, gpfn, **kwargs))

    def set_pte(self, vaddr: int, pte: int, proc=None) -> Event:
        fmt_entry = f"{pte:#0{18 if self.L.pae else 10}x}"
        return self.do("set_pte", f"SET_PTE {vaddr:#010x} = {fmt_entry}", lambda: self.guest.set_pte(vaddr, pte, proc))

    def unmap(self, vaddr: int, proc=None) -> Event:
        return self.do("set_pte", f"unmap {vaddr:#010x} (SET_PTE 0)", lambda: self.guest.unmap(vaddr, proc))

    def set_pgd(self, index: int, value: int, proc=None) -> Event:
        fmt_entry = f"{value:#0{18 if self.L.pae else 10}x}"
        return self.do("set_pgd", f"SET_PGD [{index:#05x}] = {fmt_entry}", lambda: self.guest.set_pgd(index, value, proc))

    def touch(self, vaddr: int, write: bool = False, user: bool = False) -> Event:
        def said(a):
            if a.outcome == "ok":
                return "hit" if not a.faults else f"fixed by demand_page after {a.faults} fault{'s' * (a.faults > 1)}"
            return {"guest-fault": "the Guest's own fault", "mmio": "device memory"}.get(a.outcome, a.outcome)

        mode = ("write" if write else "read") + (", user" if user else ", kernel")
        return self.do("touch", f"touch {vaddr:#010x} ({mode})", lambda: self.guest.touch(vaddr, write, user), said)

    def flush_user(self) -> Event:
        return self.do("flush", "FLUSH_TLB(0): the user part", self.guest.flush_user)

    def flush_all(self) -> Event:
        return self.do("flush", "FLUSH_TLB(1): everything", self.guest.flush_all)

    def shutdown(self) -> Event:
        return self.do("teardown", "the Launcher closes the Guest: every shadow page released", self.guest.shutdown)

    def __repr__(self) -> str:
        return f"Recorder({self.recording.summary()})"


def workload(rec: Recorder, operations: int, *, seed: int = 0, processes: int = 6, pages: int = 48) -> Recorder:
    """A seeded random run of ``operations`` events on ``rec``: processes switched (more than
    four, so the cache evicts), pages mapped (accessed or not), touched (read or write),
    unmapped, the user part flushed, now and then everything flushed."""
    g = rec.guest
    rnd = random.Random(seed)
    procs = [p for p in getattr(g, "processes", []) if p is not getattr(g, "swapper", None)]
    while len(procs) < processes and len(rec.recording) < operations:
        procs.append(rec.new_process(f"p{len(procs)}"))
    if len(rec.recording) < operations and procs:
        rec.switch_to(procs[0])
    base = 0x08048000
    while len(rec.recording) < operations:
        if li.limits(g)["dead"]:
            break
        r = rnd.random()
        va = base + rnd.randrange(pages) * 4096
        if r < 0.10:
            rec.switch_to(rnd.choice(procs))
        elif r < 0.35:
            rec.map(va, 0x300 + rnd.randrange(256), accessed=rnd.random() < 0.5, dirty=rnd.random() < 0.2)
        elif r < 0.88:
            rec.touch(va, write=rnd.random() < 0.4, user=True)
        elif r < 0.95:
            rec.unmap(va)
        elif r < 0.995:
            rec.flush_user()
        else:
            rec.flush_all()
    return rec
