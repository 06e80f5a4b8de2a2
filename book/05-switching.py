# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5 — Part (iv): switching page tables
#
# Every context switch in the Guest loads a new top-level page table into `cr3`.  The Guest
# cannot touch `cr3` itself (that would hand it the real MMU), so it makes the NEW_PGTABLE
# hypercall and the Host puts the matching *shadow* top level in place.  Building a shadow
# from scratch on every switch would be ruinous, so lguest keeps a tiny cache: four shadow
# top levels per Guest.  This chapter is about that cache — markers **H:430** and **H:435**.
#
# ## What you will learn
#
# - how `guest_new_pagetable()` finds a cached shadow with `find_pgdir()`, or makes room with
#   `new_pgdir()`;
# - why `new_pgdir()` evicts a *random* slot, and how the model makes that random choice
#   repeatable (and replaceable);
# - what is special about the very first switch, out of the made-up linear mapping;
# - why the evicted slot keeps its kernel mappings, and what that saves.

# %%
from lguest_book.guest import Guest
from lguest_book.lguest import PrandomSource
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
import lguest_book.inspect as li
from lguest_book import plots, widgets, fmt

def cache(g):
    """The four slots, one line each."""
    for s in li.pgdir_cache(g):
        state = f"gpgdir {fmt.paddr(s['gpgdir'], g.x86)}" if s["allocated"] else "(no page yet)"
        print(f"  slot {s['slot']}: {state}{'   <- current' if s['current'] else ''}")

# %% [markdown]
# ## The entry point
#
# `guest_new_pagetable()` is short.  Its one surprise is the first `if`: a Guest that has just
# booted runs on a *linear* mapping the Host made up (virtual address = guest-physical
# address, chapter 8), and on its first switch all of that is thrown away.

# %%
twin("guest_new_pagetable")

# %%
twin("find_pgdir")

# %% [markdown]
# Let us watch a Guest boot without running its boot code, so we can see the cache before and
# after the first switch.

# %%
g = Guest(pae=False, seed=1, boot=False)
print("linear mode:", g.cpu.linear_pages)
cache(g)

# %% [markdown]
# One slot is in use, shadowing "Guest top level 0" — nothing real: it is the linear mapping.
# Now the Guest boots (INIT, build the kernel's top level `swapper`, switch to it, set the
# stack):

# %%
g.boot()
print("linear mode:", g.cpu.linear_pages, "   swapper is at", fmt.paddr(g.swapper.gpgdir, g.x86))
cache(g)
linear_slot = g.lg.pgdirs[1].pgdir
present = [j for j in range(g.x86.PTRS_PER_PGD) if g.host.deref(g.host.entry_ptr(linear_slot, j)) & 1]
print("present entries left in slot 1:", len(present))
assert not g.cpu.linear_pages and present == []

# %% [markdown]
# Slot 1 still holds its page and still records top level `0x00000000`, but nothing in it is
# present any more: the first switch released every entry of every slot, the made-up linear
# ones included.  The empty slot waits there until `new_pgdir()` picks it.
#
# ## `new_pgdir()`: pick a slot, any slot
#
# When the Guest switches to a top level no slot shadows, `new_pgdir()` picks a victim with
# `prandom_u32() % 4`.  No LRU list, no clock hand.  The C's own comment (H:435,
# [L747](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/page_tables.c#L747)) does
# not claim random is as good as anything: in our words, it admits that evicting the least
# recently used slot *might be better*, and chooses random because it is *simple*.  (OSTEP ch. 22
# compares the two policies, and shows the looping workload on which LRU is worst.)  This chapter's
# timeline and the LRU exercise below let you measure what that simplicity costs.

# %%
twin("new_pgdir")

# %% [markdown]
# Three cases: the slot has never had a page (allocate one, and report it blank so the caller
# pins the stack into it); the allocation fails (quietly reuse the *current* slot); or the slot
# is in use (evict it).  In every case `flush_user_mappings()` clears the slot's **user** part
# only.  The kernel part stays, and that is not laziness: kernel mappings are the same in every
# Guest address space, so whatever the evicted process had faulted in for the kernel is still
# right for the newcomer.
#
# In the model, `prandom_u32()` comes from the Guest's seeded source, so the same seed makes the
# same choices on every run.  Five processes, four slots:

# %%
g = Guest(pae=False, seed=7)
procs = [g.new_process(f"p{i}") for i in range(5)]
with Tracer() as t:
    for p in procs:
        g.switch_to(p)
drawn = g.lg.prandom_u32.drawn
print("values drawn:", [f"{v:#010x}" for v in drawn[-5:]])
print("slots chosen:", [v % 4 for v in drawn[-5:]])
cache(g)

# %% [markdown]
# The same kind of run, recorded and drawn: each column is the cache after one switch (the
# figure's key says how the current slot and an eviction are marked):

# %%
g = Guest(pae=False, seed=7)
rec = plots.CacheRecorder(g)
procs = [g.new_process(f"p{i}") for i in range(5)]
for p in procs + procs[:3]:
    rec.switch_to(p)
fig = plots.plot_cache_timeline(rec.events)
assert len(fig.lguest["eviction_marks"]) == fig.lguest["evictions"] > 0   # every eviction drawn
fig

# %%
[(e["label"], e["kind"]) for e in rec.events[1:]]

# %%
# what the next paragraph says of this run, checked on the recorded events the figure draws
evictions = [(before, e) for before, e in zip(rec.events, rec.events[1:]) if e["evicted"] is not None]
assert any(e["evicted_slot"] == before["current"] for before, e in evictions)    # the current slot
assert any(None in e["slots"] for _, e in evictions)                              # a slot sat idle

# %% [markdown]
# The same run again, recorded event by event.  The scrubber below replays it: drag the slider
# (or press *Play*) to see, just after any event, the four slots of the cache, the shadow and
# Guest tables each slot holds, and the reference counts — with what that event changed
# outlined in red.  It starts at event 0, the Guest as it stood before the five processes
# existed; nothing runs again as you move, it is all replayed from the recording.

# %%
from lguest_book.recorder import Recorder

run = Recorder(Guest(pae=False, seed=7))
run_procs = [run.new_process(f"p{i}") for i in range(5)]
for p in run_procs + run_procs[:3]:
    run.switch_to(p)
scrubber = widgets.Scrubber(run)
assert scrubber.position == 0
scrubber

# %%
switches = run.recording.find("switch")
print(len(run.recording), "events;", len(switches), "switches:",
      [run.recording.events[k].outcome.split(":")[0] for k in switches])
assert [run.recording.events[k].outcome.split(":")[0] for k in switches] == [e["kind"] for e in rec.events[1:]]

# %% [markdown]
# Notice that a random choice may evict the current slot or one just filled — even while
# another slot sits idle: this run does both (the cell above checks it).  For a demonstration that doesn't depend on luck, hand the Guest
# your own sequence of "random" numbers:

# %%
g = Guest(pae=False, prandom=PrandomSource(values=[1, 2, 3, 3, 0, 1, 2, 3]))
print("boot used", len(g.lg.prandom_u32.drawn), "values:", g.lg.prandom_u32.drawn)
procs = [g.new_process(f"p{i}") for i in range(4)]
for p in procs:
    g.switch_to(p)
cache(g)
slots = [s["gpgdir"] for s in li.pgdir_cache(g)]
assert slots == [procs[2].gpgdir, procs[3].gpgdir, g.swapper.gpgdir, procs[1].gpgdir]

# %% [markdown]
# Boot drew 1 (the linear top level, slot 1) and 2 (swapper, slot 2).  Then `p0` took slot 3,
# `p1` evicted it from slot 3 at once, `p2` took the empty slot 0, and `p3` evicted the old
# linear top level from slot 1: every choice was the sequence's, and the cell checks the result.
#
# Explore what each slot holds — pick a slot, a level and an address:

# %%
explorer = widgets.TableExplorer(g)
explorer.select(slot=0, level="pgd", vaddr=0xC0000000)
explorer

# %% [markdown]
# ## A hit costs nothing
#
# Switching back to a process whose top level is still cached is a lookup in four slots and
# nothing else — no allocation, no flush, no page pinned:

# %%
g = Guest(pae=False, seed=1)
a, b = g.new_process("a"), g.new_process("b")
g.switch_to(a); g.touch(0xC0100000); g.switch_to(b)
with Tracer() as t:
    g.switch_to(a)
print("new_pgdir calls:", len(t.trace.calls("new_pgdir")), " pin_page calls:", len(t.trace.calls("pin_page")))
print("a's kernel page still shadowed:", li.walk_shadow(g, 0xC0100000)[-1].present)
assert not t.trace.calls("new_pgdir") and not t.trace.calls("pin_page") and not t.trace.calls("get_zeroed_page")
assert li.walk_shadow(g, 0xC0100000)[-1].present

# %% [markdown]
# ## What an eviction keeps
#
# Let's make process `a` fault in a user page and a kernel page, then force its slot to be
# reused by a new process `c`.  The user page's shadow disappears with the eviction; the
# kernel page's stays and is used by `c` at no cost:

# %%
g = Guest(pae=False, prandom=PrandomSource(values=[0, 1, 2, 2, 2]))
a = g.new_process("a")
g.switch_to(a)
g.map(0x08048000, 0x300)
g.touch(0x08048000, user=True); g.touch(0xC0100000)
slot_a = li.current_slot(g)
c = g.new_process("c")
g.switch_to(c)
print("c took slot", li.current_slot(g), "— a had slot", slot_a)
print("user page shadowed:  ", li.walk_shadow(g, 0x08048000)[-1].present)
print("kernel page shadowed:", li.walk_shadow(g, 0xC0100000)[-1].present)
kernel_faults = g.touch(0xC0100000).faults
print("kernel touch faults: ", kernel_faults)
assert li.current_slot(g) == slot_a and not li.walk_shadow(g, 0x08048000)[-1].present and kernel_faults == 0

# %% [markdown]
# ### The assumption behind it
#
# Keeping the kernel part is only right if every address space *has* the same kernel part.
# Linux guarantees that, and `new_pgdir()` simply trusts it.  A Guest that breaks it — here it
# clears the kernel's top-level entry in `swapper` only, and even tells the Host with SET_PGD —
# later finds another process's kernel mappings in swapper's shadow, once the slot has been
# passed from swapper to `other` and back (the prandom values pick the same slot each time):

# %%
q = Guest(pae=False, seed=1)
other = q.new_process("other")
q.lg.prandom_u32 = PrandomSource(values=[li.current_slot(q)] * 2)   # swapper's slot, twice
KPAGE = 0xC0105000
q.set_pgd(q.x86.pgd_index(KPAGE), 0)      # swapper's kernel entry for KPAGE: gone
q.switch_to(other); q.touch(KPAGE)        # other still maps it, and faults it in
q.switch_to(q.swapper)                    # back to swapper, in the same slot
print("swapper's own tables map it:", li.walk_guest(q, KPAGE)[-1].present)
print("swapper's shadow maps it:   ", li.walk_shadow(q, KPAGE)[-1].present)
stale = q.touch(KPAGE).outcome
print("so the access:              ", stale)
assert not li.walk_guest(q, KPAGE)[-1].present and stale == "ok"

# %% [markdown]
# The Guest reaches a page its own tables no longer map.  It is still the Guest's own page, so
# no promise of the Host is broken: a Guest that lies to itself only fools itself.  (The
# project's property tests found this; `tests/test_properties.py` keeps it as an example.)

# %% [markdown]
# ## Hostile input
#
# What can a Guest do with NEW_PGTABLE?  `guest_new_pagetable()` never checks the address it is
# given, and it doesn't need to: every read of the Guest's tables goes through `lgread()` and
# its bounds check.  With this Guest's seed the read comes at once: the slot `new_pgdir()` draws
# is blank, so the stack must be pinned, and pinning walks the Guest's tables starting from the
# bogus top level.  (A seed that drew a slot in use would evict it and pin nothing; the same read
# would then come at the Guest's next fault.)

# %%
h = Guest(pae=False, seed=1)
with Tracer() as t:
    h.hypercall(4, 0xFFFFF000)        # LHCALL_NEW_PGTABLE, top level outside guest memory
first_read = t.trace.calls("lgread")[0]
print(f"first read of the Guest's tables: {first_read.args['type_name']} at {fmt.paddr(first_read.args['addr'], h.x86)}")
print("killed:", h.dead)
stack_top = h.cpu.esp1 - 1
assert stack_top == 0xC0207FFF and h.x86.pgd_index(stack_top) == 0x300
assert first_read.args["addr"] == 0xFFFFF000 + h.x86.pgd_index(stack_top) * 4 and h.dead.startswith("bad read address")
assert t.trace.calls("pin_page")      # the drawn slot was blank: the stack was being pinned

# %% [markdown]
# The address is the bogus top level plus the stack's top-level index times four: the stack
# sits at `0xC0207FFF`, index `0x300`, so `0xFFFFF000 + 0xC00`.  That is far beyond the
# Guest's memory, `lgread()` refuses it, and the Guest dies; the Host read nothing it should
# not have.
#
# ## Exercises
#
# 1. With four slots and random eviction, what is the probability that switching among five
#    processes round-robin evicts the *next* process to run?  Measure it over 1,000 switches
#    with a seeded Guest and compare with your estimate.
# 2. `new_pgdir()` falls back to the current slot when allocation fails.  Use
#    `g.host.fail_allocations(1)` to make it happen and describe the state of the cache after.
#    Why is it safe to keep running?  (Careful: `new_pgdir()` allocates only when the slot it
#    draws has no page yet.  If it draws a slot in use, the planned failure stays armed and hits
#    a later allocation instead: check which slot was drawn.)
# 3. Why must the first switch out of linear mode throw away *all* the shadow tables, and not just
#    the user part?
# 4. The graded exercise below asks for an LRU version of `new_pgdir()` (its answer is filled in
#    here; the classroom and self-study copies leave it blank).  Before writing it, predict: for a
#    workload of 5 processes in strict rotation, is LRU better or worse than random?
#
# For more, `lguest_book.practice.evict(seed=N)` asks which slot `new_pgdir()` takes for given
# values of `prandom_u32()` (`print(p)`, then `p.check(...)`).
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* when a switch misses, the victim is one of 4 slots chosen uniformly; how often is
#    the next process in one of them?  *Estimate:* at most 1/4 of the misses.  *Measured* (the
#    cell below, seed 3): 398 of the 1,000 switches miss, and 88 of those misses evict the next
#    process to run, 22 %: a little under 1/4, because the next process is not always cached.
# 2. *Answer:* the current slot is repurposed: it now records the new top level, its user part
#    is flushed, its kernel part kept, and the process that was running loses its cached shadow.
#    Nobody is killed.  It is safe because the kernel part is the same in every address space
#    (the assumption of this chapter) and the user part simply faults back in.  Chapter 7 runs it.
# 3. *Hint:* where did the linear-mode entries come from?  *Answer:* not from the Guest's
#    tables: in linear mode `demand_page()` makes up an identity mapping for every address,
#    kernel addresses included.  None of those entries, user or kernel, says what the Guest's
#    first real tables say, so all must go.
# 4. *Answer:* worse — the worst possible.  With 5 processes in rotation and 4 slots, the 4
#    cached ones are the 4 most recently run, so the next one is never cached, and LRU evicts the
#    one needed right after it: every switch misses (checked below with a small simulation).
#    Random evicts a process needed soon only some of the time: 398 misses in 1,000.
#
# </details>

# %%
# The numbers in answers 1 and 4, checked.
from lguest_book import page_tables as pt

def rotation(switches=1000, seed=3):
    h = Guest(pae=False, seed=seed)
    procs = [h.new_process(f"p{i}") for i in range(5)]
    misses = evicted_next = 0
    for k in range(switches):
        q, nxt = procs[k % 5], procs[(k + 1) % 5]
        before = {s.gpgdir for s in h.lg.pgdirs}
        if pt.find_pgdir(h.lg, q.gpgdir) == 4:
            misses += 1
            h.switch_to(q)
            evicted_next += nxt.gpgdir in before and nxt.gpgdir not in {s.gpgdir for s in h.lg.pgdirs}
        else:
            h.switch_to(q)
    return misses, evicted_next
assert rotation() == (398, 88)

def lru_misses(switches=1000, slots=4, processes=5):
    cache, misses = [], 0          # least recently used first
    for k in range(switches):
        p = k % processes
        if p in cache:
            cache.remove(p)
        else:
            misses += 1
            if len(cache) == slots:
                cache.pop(0)
        cache.append(p)
    return misses
assert lru_misses() == 1000

# %% [markdown]
# ### Graded exercise: least recently used instead of random (H:435)
#
# Write `lru_victim(recent, slots)`, the eviction policy of an LRU `new_pgdir()`.  `slots[i]` is
# the Guest top level slot *i* shadows, or `None` if the slot has never been used; `recent` lists
# the top levels the Guest has loaded, least recently used first (without the one being loaded
# now).  Return an unused slot if there is one, else the slot whose top level was used least
# recently (one never seen in `recent` counts as the oldest).  The check runs Guests that switch
# among several processes with your policy and with a reference LRU.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch5-lru")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch5-lru-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lru_victim(recent, slots):
    ### BEGIN SOLUTION
    if None in slots:
        return slots.index(None)
    age = {gpgdir: position for position, gpgdir in enumerate(recent)}
    return min(range(len(slots)), key=lambda s: age.get(slots[s], -1))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch5-lru-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch5-lru", lru_victim)
### BEGIN HIDDEN TESTS
exercises.check("ch5-lru", lru_victim, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - NEW_PGTABLE → `guest_new_pagetable()`: find the cached shadow (`find_pgdir()`) or take a
#   slot (`new_pgdir()`), make it current, re-pin the stack if it is blank, map the Switcher.
# - Victims are chosen with `prandom_u32() % 4`; the model seeds it, or replays a sequence.
# - An eviction flushes only the user part: the kernel mappings are shared by all processes —
#   an assumption the Host trusts, not checks.
# - The first switch leaves the made-up linear mapping behind for good.

# %% [markdown]
# ## References
#
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, ch. 22 "Beyond Physical Memory: Policies" (random and LRU replacement, and the looping workload that defeats LRU)
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B
