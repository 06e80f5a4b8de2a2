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
# # Chapter 4 — Part (iii): the Guest changes an entry
#
# A shadow table is a cache, and every cache has the same enemy: the thing it copies changes
# behind its back.  The Guest writes its own page tables whenever it likes — mapping a file,
# unmapping a page, making a page read-only for copy-on-write.  lguest's answer is a contract
# with the Guest kernel: after changing an entry, *tell the Host* with a hypercall.  This
# chapter follows the three hypercalls: SET_PTE, SET_PGD, and (under PAE) SET_PMD.  The C's
# narrative markers sit on the functions behind them: **H:400** on `guest_set_pgd()` (SET_PGD;
# the marker also opens part (iii) of the story), **H:410** on `guest_set_pte()` (SET_PTE) and
# **H:420** on `__guest_set_pte()`, its per-slot worker.  `guest_set_pmd()` (SET_PMD) has no
# marker of its own.
#
# ## What you will learn
#
# - why `guest_set_pte()` updates *every* cached top level for a kernel address, but only one
#   for a user address;
# - what `__guest_set_pte()` does to the old shadow entry, and its shortcut for entries that are
#   already Accessed or Dirty;
# - how `guest_set_pgd()` and `guest_set_pmd()` take the blunt approach of throwing things away;
# - four real flaws of this part (`writable_not_dirty`, `set_pgd_bound`, `switcher_oops`,
#   `double_release`), each kept in the model and run here.

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
from lguest_book import hypercalls as hc, flaws, plots, widgets
import lguest_book.inspect as li
from lguest_book import fmt

# %% [markdown]
# ## Two processes and a shared kernel
#
# We boot a Guest and run two processes, `a` and `b`, so that several top levels are cached.
# Then both touch the same kernel page: each top level gets its own shadow of it.

# %%
g = Guest(pae=False, seed=1)
a, b = g.new_process("a"), g.new_process("b")
KPAGE = g.kernel_address + 0x100000
for proc in (a, b):
    g.switch_to(proc)
    g.touch(KPAGE)
for s in li.pgdir_cache(g):
    print(f"slot {s['slot']}: shadows guest top level {fmt.paddr(s['gpgdir'], g.x86)}{'  <- current' if s['current'] else ''}")
cache = li.pgdir_cache(g)
assert [s["gpgdir"] for s in cache] == [b.gpgdir, 0, g.swapper.gpgdir, a.gpgdir] and all(s["allocated"] for s in cache)

# %% [markdown]
# Four slots, all in use: `b` (current), `a`, the kernel's own top level (`swapper`, which the
# Guest built at boot), and slot 1, which still shadows the made-up top level `0x00000000` the
# Guest booted on before its first NEW_PGTABLE (the linear mapping of chapter 8).  Which slot
# holds which is the luck of `new_pgdir()`'s eviction (chapter 5).

# %% [markdown]
# Now the Guest kernel remaps that page to another frame.  Kernel mappings live in every
# address space, so the Host must fix *every* cached top level, not just the current one:

# %%
twin("guest_set_pte")

# %%
with Tracer() as t:
    g.map(KPAGE, 0x500)
print("__guest_set_pte ran for slots", [e.args["idx"] for e in t.trace.calls("__guest_set_pte")])
for kind, where, old, new in t.trace.writes():
    print(f"  {kind} entry {where}: {fmt.entry(old or 0, g.x86)} -> {fmt.entry(new, g.x86)}")
assert len(t.trace.writes()) == 3 and [old or 0 for _, _, old, _ in t.trace.writes()].count(0) == 1

# %% [markdown]
# Four calls, three writes.  Slots 0 and 3 (`b` and `a`) had a shadow of the old mapping, and it
# is replaced.  Slot 2, the swapper's, had a shadow PTE page covering that 4 MiB but no entry for
# this page: it gets the new entry directly, because the Guest's new PTE has Accessed set (the
# shortcut below).  Slot 1 has no shadow PTE page there at all, so there is nothing to fix and
# nothing is written.

# %% [markdown]
# A *user* address is private to one address space, so only the slot shadowing that Guest top
# level — if any — is touched.  Here `a` changes a user mapping while `b` runs:

# %%
with Tracer() as t:
    g.map(0x08048000, 0x600, proc=a)
user_slots = [e.args["idx"] for e in t.trace.calls("__guest_set_pte")]
a_slots = [s["slot"] for s in li.pgdir_cache(g) if s["gpgdir"] == a.gpgdir]
print("__guest_set_pte ran for slots", user_slots)
print("a's slot is", a_slots)
assert len(a_slots) == 1 and user_slots == a_slots   # only a's slot, though b is current

# %% [markdown]
# ## Inside `__guest_set_pte()`
#
# For one cached top level, the work is: find the shadow PTE *without allocating* (if no
# shadow page covers the address, there is nothing stale to fix), give back the old entry's page
# reference, and then either clear the entry or — the shortcut — build the new one at once.

# %%
twin("__guest_set_pte")

# %% [markdown]
# The shortcut fires when the new Guest PTE already has *Accessed* or *Dirty* set.  The idea:
# a Guest that sets those bits is about to use the page, so why wait for the fault?  Most PTEs
# Linux writes already have Accessed set (that is what the C's comment at H:420 counts on); a
# PTE with both bits clear gets the slow path.  The three kinds, on one entry:

# %%
g.map(0x08048000, 0x650)          # b maps a page in the same 4 MiB and uses it,
g.touch(0x08048000, user=True)    # so a shadow PTE page covers the region

def after_set(pte):
    """Set the PTE for a user page of the current process, return the shadow PTE."""
    g.set_pte(0x0804A000, pte)
    return li.walk_shadow(g, 0x0804A000)[-1].value

shadows = {}
for label, pte in [("clean, not accessed", 0x700 << 12 | 0x07),
                   ("accessed, read-write", 0x700 << 12 | 0x27),
                   ("dirty, read-write", 0x700 << 12 | 0x67)]:
    spte = shadows[label] = after_set(pte)
    print(f"{label:22} guest {g.x86.describe(pte):24} shadow {g.x86.describe(spte) if spte else '(none)'}")
# what the prose below says of these three lines
assert shadows["clean, not accessed"] == 0                       # no shortcut: nothing installed
assert shadows["accessed, read-write"] & 0x2                     # writable, though the Guest PTE is clean
assert shadows["dirty, read-write"] & 0x2 and shadows["dirty, read-write"] & 0x40

# %% [markdown]
# Each SET_PTE above replaced the same entry, `0x0804A000`, so the picture below shows the region
# as it stands after the *last* one: the dirty PTE and its writable shadow entry, which is the
# legitimate case.  The cell checks that state through `inspect` before drawing:

# %%
last = li.walk_shadow(g, 0x0804A000)[-1].value
assert last == shadows["dirty, read-write"] and g.guest_pte(0x0804A000) & 0x40
row = li.compare(g, 0x08048000, 1)[0]   # the highlighted row: see below
assert row["guest"] & 0x2 and row["guest"] & 0x20 and not row["guest"] & 0x40   # RW, Accessed, clean
assert row["host_frame"] is not None and not row["shadow"] & 0x2                  # shadowed read-only
side = plots.plot_side_by_side(g, 0x08048000, pages=4)
assert side.lguest["differing"] == [0x08048000]
side

# %% [markdown]
# The one highlighted row is not `0x0804a000` but `0x08048000`, the page `b` mapped and read
# just before.  Its Guest PTE is writable, Accessed and clean; its shadow entry lacks RW
# ("-RW").  That is chapter 2's rule at work, not a flaw: when `b` mapped the page, no shadow
# PTE page covered the region yet, so SET_PTE's shortcut had nothing to fill in; the read then
# faulted, and `demand_page()` gave the clean page a read-only entry, so that the first write
# faults and sets Dirty.  (The cell checks the row.)
#
# Now look at the middle line of the printout, *accessed, read-write*.  The Guest PTE is
# *accessed but clean*, so by chapter 2's rule the
# shadow should be read-only until the first write sets Dirty.  The shortcut instead installs
# a **writable** shadow entry: it passes the Dirty bit to `gpte_to_spte()` only as the *write*
# argument of `get_pfn()`, and copies the Guest's RW flag untouched.  The Guest's first write
# then never faults, and its Dirty bit is never set.  This is a real flaw of the C; the model
# keeps it, and the project's property tests found it:

# %%
flaw = next(f for f in flaws.FLAWS if f.key == "writable_not_dirty")
print(flaw.title)
wnd = flaw.demo(False)
assert wnd["shadow_writable"] and wnd["write_faults"] == 0                     # the write never faults
assert not wnd["guest_sees_dirty"] and not wnd["guest_pte_after_write"] & 0x40   # Dirty never set
wnd

# %% [markdown]
# ## A Switcher entry is off limits
#
# The Switcher's pages belong to the Host.  A SET_PTE aimed at them is an attack, and the
# Guest dies:

# %%
h = Guest(pae=False, seed=1)
h.hypercall(hc.LHCALL_SET_PTE, h.swapper.gpgdir, h.host.switcher_addr, 0x1067)
assert h.dead == "attempt to set pte into Switcher pages"
h.dead

# %% [markdown]
# ## SET_PGD: throw the whole 4 MiB away
#
# When the Guest changes a top-level entry, lguest does not try to be clever: it releases the
# shadow's entry at that index — every shadow PTE below it and the PTE page itself — and lets
# faults rebuild what is needed.  Because that entry might have been the one holding the
# Switcher, it then makes sure the Switcher is mapped again.

# %%
twin("guest_set_pgd")

# %%
g.switch_to(a)
g.touch(0x08048000, user=True)
pte_page = li.walk_shadow(g, 0x08048000)[0].value >> 12        # the shadow PTE page for that 4 MiB
mapped = {e.value >> 12 for e in [li.walk_shadow(g, 0x08048000 + i * 4096)[-1] for i in range(1024)] if e.present}
with Tracer() as t:
    g.set_pgd(g.x86.pgd_index(0x08048000), 0, proc=a)
freed = [e.args["frame"] for e in t.trace.calls("free_page")]
unpinned = [e.args["frame"] for e in t.trace.calls("put_page") if e.args["frame"] not in freed]
print("host frames of guest pages unpinned (release_pte):", [fmt.frame(f, g.x86) for f in unpinned])
print("shadow PTE pages freed:                          ", [fmt.frame(f, g.x86) for f in freed])
print("shadow walk now:", [(s.level, fmt.entry(s.value, g.x86)) for s in li.walk_shadow(g, 0x08048000)])
# what the prose says: every shadow PTE below the entry unpinned, then the PTE page itself freed
assert sorted(unpinned) == sorted(mapped) and g.lg.launcher.frames[0x600] in unpinned
assert freed == [pte_page] and not li.walk_shadow(g, 0x08048000)[0].present

# %% [markdown]
# Two oddities hide in that short function.  The bound test reads `idx > PTRS_PER_PGD`, so the
# index one past the end is accepted; and the Switcher is re-mapped in the *current* top level
# of CPU 0, which is not necessarily the one just changed.  Both are real flaws, kept and
# demonstrated by the model — the second one crashes the Host:

# %%
for key in ("set_pgd_bound", "switcher_oops"):
    f = next(f for f in flaws.FLAWS if f.key == key)
    print(f"{f.title}\n   promise broken: {f.promise}\n")

# %%
oops = next(f for f in flaws.FLAWS if f.key == "switcher_oops").demo(False)
assert oops["switcher_mapped_flag"] and not oops["switcher_really_mapped"]   # the flag lies
assert oops["oopses"] and oops["killed"].startswith("Launcher killed by a host oops")
oops

# %% [markdown]
# The Host's bookkeeping said the Switcher was mapped in that top level when it was not.  The
# next entry into the Guest trusted the flag, looked up the Switcher's shadow PTE without
# allocating, got NULL, and dereferenced it (the cell checks both).  That is a crash inside
# the Host kernel, an oops: Linux kills the process that was running (the Launcher, and with it
# the Guest) and carries on tainted, or panics if told to (`panic_on_oops`).  The model does
# the former and records the oops.

# %% [markdown]
# The first one, run.  Without PAE, entry 1024 of a top-level page is entry 0 of the frame that
# follows it.  The demonstration arranges for that frame to be a shadow PTE page whose first
# entry maps a Guest page the Guest has filled with fake "entries" naming a Switcher frame; then
# it asks for SET_PGD 1024.  `release_pgd()` takes that shadow PTE for a top-level entry and the
# Guest's page for a PTE page: it calls `release_pte()` on each of the page's 1024 "entries",
# and each present fake one ends in a `put_page()` — one reference *taken away* per fake entry
# from the frame of the Guest's choosing.  Then, as for any PTE page, it `free_page()`s the
# Guest's page itself and clears the "top-level entry".  That entry was in fact the shadow PTE
# that pinned the Guest's page, so for that page the sums come out as if the shadow PTE had
# been released normally (the model records no anomaly for it); the damage is to the victim.
# Under PAE the stray entry is the fifth of the four-entry PDPT page, always zero, and nothing
# happens:

# %%
with Tracer() as tb:
    ev = flaws.flaw("set_pgd_bound").demo(False)
calls = tb.trace.calls()
last_set_pgd = max(i for i, c in enumerate(calls) if c.func == "guest_set_pgd")
pinned_last = tb.trace.results("get_pfn")[-1]            # the Guest's page, pinned by its shadow PTE
after_call = [(c.func, c.args.get("frame")) for c in calls[last_set_pgd:] if c.func in ("put_page", "free_page")]
assert after_call[:ev["fake_entries"]] == [("put_page", ev["victim_frame"])] * ev["fake_entries"]
assert ("free_page", pinned_last) in after_call            # the Guest's own page, freed as a PTE page
assert ev["anomalies"] and all(fmt.frame(ev["victim_frame"], g.x86) in a for a in ev["anomalies"])   # none for the freed page
print({k: ev[k] for k in ("killed", "victim_refs_before", "victim_refs_after", "fake_entries")})
assert ev["killed"] is None and ev["victim_refs_after"] == ev["victim_refs_before"] - ev["fake_entries"]
assert ev["victim_refs_after"] < 0
ev_pae = flaws.flaw("set_pgd_bound").demo(True)
assert ev_pae["killed"] is None and ev_pae["switcher_refs_after"] == ev_pae["switcher_refs_before"]
print("PAE:", ev_pae["entry_touched"])

# %% [markdown]
# Read the numbers: the victim frame held one reference, and three fake entries took three
# away, leaving the count at −2 (printed in decimal, as counts are).  A real Host's page
# allocator would have freed the page at zero while something still used it: memory the Guest
# does not own, handed back and reused.
#
# And `__guest_set_pte()`'s early return, run: a bad PTE with Accessed set over a page the
# shadow already maps.  `release_pte()` gives the old reference back, `check_gpte()` kills the
# Guest, and the function returns *without* clearing the entry; teardown releases it again.

# %%
ev = flaws.flaw("double_release").demo(False)
print(ev)
assert (ev["refs_while_mapped"], ev["refs_after_kill"], ev["refs_after_teardown"]) == (2, 1, 0)
assert ev["stale_shadow_entry"] & 1 and ev["freed_while_launcher_maps_it"]

# %% [markdown]
# ## SET_PMD (PAE only): throw *everything* away
#
# Under PAE the Guest can change a middle-level entry.  lguest's response is the biggest
# hammer it owns: `guest_pagetable_clear_all()`, which empties every cached shadow table
# (chapter 6).  On a non-PAE Guest the hypercall does not exist — it is simply an unknown
# hypercall, and that kills the Guest.

# %%
twin("guest_set_pmd")

# %%
gp = Guest(pae=True, seed=1)
p = gp.new_process("p")
gp.switch_to(p)
gp.map(0x08048000, 0x300)
gp.touch(0x08048000, user=True)
before = li.shadow_mappings(gp)
gp.set_pmd(0x08048000, 0, proc=p)
after = li.shadow_mappings(gp)
print(f"shadow mappings before SET_PMD: {len(before)}, after: {len(after)}")
print("what survives:", [fmt.vaddr(v) for v in sorted(after)])
pae_stack = [gp.cpu.esp1 - (i + 1) * 4096 for i in range(gp.lg.stack_pages)]
assert 0x08048000 in before and sorted(after) == sorted(pae_stack) + [gp.host.switcher_addr]
n = Guest(pae=False, seed=1)
n.hypercall(hc.LHCALL_SET_PMD, 0, 0)
print("non-PAE guest:", repr(n.dead))
assert n.dead == f"Bad hypercall {hc.LHCALL_SET_PMD}\n" and hc.LHCALL_SET_PMD == 13

# %% [markdown]
# Everything went except what `guest_pagetable_clear_all()` puts straight back: the two pages of
# the Guest's kernel stack, which it re-pins (chapter 3), and the Switcher's code page, which it
# maps again.  The user page is gone, as are the Switcher's two per-CPU pages; those return at
# the next entry into the Guest (chapter 7).  (`'Bad hypercall 13\n'` is lguest's message for
# an unknown hypercall number; 13 is SET_PMD's.  The trailing `\n` is not a slip of the model:
# the C's format string for this kill ends in a newline, and the model keeps the message
# exactly as `kill_guest()` would format it.)
#
# ## Your turn: be the Guest
#
# The hypercall console lets you make these calls yourself and reports what the Host did, with
# the entries each call changed.  Type a virtual address (or a top-level index — up to
# PTRS_PER_PGD, the index of the `set_pgd_bound` flaw) and an entry, and press a button;
# *Reset* gives you the Guest back as it was.  The console has a Guest of its own.  The cell
# below it makes a few calls from code on a second console, with a second Guest, so you can
# see the log — its attack at the end kills that Guest, not the one above:

# %%
gc = Guest(pae=False, seed=1)
pc = gc.new_process("p")
console = widgets.HypercallConsole(gc)
console.switch_to(pc)
console

# %%
gs = Guest(pae=False, seed=1)
script = widgets.HypercallConsole(gs)
script.switch_to(gs.new_process("p"))
script.set_pte(0x08048000, 0x300 << 12 | 0x07)   # a fresh, clean PTE: nothing shadowed (the Guest builds a PTE page: SET_PGD first)
script.touch(0x08048000, user=True)              # ... until the first access
script.set_pte(0x08049000, 0x301 << 12 | 0x27)   # accessed: mapped at once (writable!)
script.set_pgd(gs.x86.pgd_index(0x08048000), 0)  # drop the whole 4 MiB
script.hypercall_set_pte(gs.host.switcher_addr, 0x1067)   # an attack: SET_PTE on the Switcher, nothing else
for line, changed in zip(script.log, script.changes):
    print(line)
    for entry in changed:
        print("    ", entry)
assert gs.dead and gc.dead is None   # the attack killed the script's Guest, not the console's

# %% [markdown]
# ## Exercises
#
# 1. A Guest sets the PTE of a user page in a top level that is *not* cached.  What does the
#    Host do, and why is that safe?
# 2. Predict the number of `__guest_set_pte()` calls when the Guest changes a kernel PTE while
#    four top levels are cached.  Check with a `Tracer`.
# 3. Write the one-line change to `__guest_set_pte()` that would make the shortcut respect the
#    Dirty rule of chapter 2.  (Do not change the package: try it on a copy of the function.)
# 4. Explain why `guest_set_pgd()` must re-map the Switcher at all.  Which index would have to
#    change for the Switcher to be affected?
#
# For more, `lguest_book.practice.set_pte(seed=N)` asks what a SET_PTE does to each cached top
# level (`print(p)`, then `p.check(...)`).
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* `find_pgdir()` returns 4 for a top level no slot shadows.  *Answer:* nothing at all.
#    It is safe because there is no shadow to go stale: if the Guest later switches to that top
#    level, `new_pgdir()` gives it a slot whose user part is empty (blank, or flushed on reuse),
#    and every user entry is rebuilt from the Guest's tables by faults.
# 2. *Hint:* kernel addresses are handled in every slot that has a top-level page.  *Answer:*
#    4, one per allocated slot, whether or not that slot maps the address (checked below).
# 3. *Answer (one possibility):* pass a write-protected copy unless the PTE is dirty —
#    `gpte_to_spte(cpu, (pte_flags(gpte) & _PAGE_DIRTY) ? gpte : pte_wrprotect(gpte),
#    pte_flags(gpte) & _PAGE_DIRTY)`, which is `demand_page()`'s rule: writable only if the
#    Guest PTE is Dirty.  (`demand_page()` tests Dirty after a write fault has set it, so a read
#    of a clean PTE gets a read-only entry and a read of a Dirty one a writable entry; chapter 2
#    shows both.)
# 4. *Hint:* what can `release_pgd()` release?  *Answer:* the index the Guest names may be the
#    Switcher's own top-level entry, and releasing it unmaps the Switcher, without which the
#    Guest cannot be entered; so the function re-creates it just in case.  The entry at risk is
#    `SWITCHER_PGD_INDEX` = `PTRS_PER_PGD - 1`: 1023 without PAE, 3 with PAE (where that 1 GiB
#    entry also holds the kernel).  It re-creates it for CPU 0's *current* top level, which is
#    the `switcher_oops` flaw above.
#
# </details>

# %%
# Answers 1 and 2, checked.
from lguest_book import page_tables as pt

h = Guest(pae=False, seed=1)
procs = [h.new_process(f"p{i}") for i in range(5)]     # five processes, four slots:
for q in procs:                                         # one of them is not cached
    h.switch_to(q)
uncached = next(q for q in procs if pt.find_pgdir(h.lg, q.gpgdir) == 4)
with Tracer() as t1:
    h.map(0x08048000, 0x340, proc=uncached)
assert not t1.trace.calls("__guest_set_pte") and not t1.trace.writes()

h = Guest(pae=False, seed=1)
procs = [h.new_process(f"p{i}") for i in range(4)]
for q in procs:
    h.switch_to(q)
assert all(s.pgdir for s in h.lg.pgdirs)
with Tracer() as t4:
    h.map(0xC0400000, 0x350, user=False)
assert len(t4.trace.calls("__guest_set_pte")) == 4

# %% [markdown]
# ### Graded exercise: keep one cached top level in step (H:420)
#
# Write `__guest_set_pte(cpu, idx, vaddr, gpte)`, with the shortcut and its flaw exactly as the
# C has them: if slot `idx` has no present shadow top-level entry for `vaddr` (or, under PAE, no
# present middle-level one), do nothing.  Otherwise release the old shadow PTE with
# `release_pte(host, entry)`; then if `gpte` has Accessed or Dirty set and is not I/O memory
# (`gpte_in_iomem`), check it with `check_gpte()` and store
# `gpte_to_spte(cpu, gpte, gpte & _PAGE_DIRTY)`; otherwise (I/O memory included) store 0.  If
# `check_gpte()` kills the Guest, return at once, leaving the old, already released, entry where
# it is: the C's flaw.  The checks compare every page reference count.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch4-guest-set-pte")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch4-guest-set-pte-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import (spgd_addr, spmd_addr, spte_addr, release_pte,
                                     gpte_in_iomem, check_gpte, gpte_to_spte)
from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT


def __guest_set_pte(cpu, idx, vaddr, gpte):
    ### BEGIN SOLUTION
    host, layout = cpu.lg.host, cpu.lg.x86
    top = host.deref(spgd_addr(cpu, idx, vaddr))
    if not top & _PAGE_PRESENT:
        return
    if layout.pae and not host.deref(spmd_addr(cpu, top, vaddr)) & _PAGE_PRESENT:
        return
    where = spte_addr(cpu, top, vaddr)
    release_pte(host, host.deref(where))
    if gpte & (_PAGE_ACCESSED | _PAGE_DIRTY) and not gpte_in_iomem(cpu, gpte):
        if not check_gpte(cpu, gpte):
            return
        host.store(where, gpte_to_spte(cpu, gpte, gpte & _PAGE_DIRTY))
    else:
        host.store(where, 0)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch4-guest-set-pte-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch4-guest-set-pte", __guest_set_pte)
### BEGIN HIDDEN TESTS
exercises.check("ch4-guest-set-pte", __guest_set_pte, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - The Guest must announce every change to its tables; SET_PTE, SET_PGD and SET_PMD are how.
# - Kernel PTEs are fixed in every cached top level, user PTEs in the one shadowing that
#   process (if any).
# - `__guest_set_pte()` drops the old shadow entry, and installs the new one at once if the Guest
#   already marked it Accessed or Dirty — a shortcut that makes clean pages writable (a flaw).
# - SET_PGD releases one top-level entry; SET_PMD (PAE) releases everything, then re-pins the
#   stack and re-maps the Switcher.

# %% [markdown]
# ## References
#
# - Keith Adams and Ole Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization", ASPLOS 2006 — shadow page tables, hidden and true faults, tracing, and why early hardware support did not beat them (a Guest that *tells* the Host about its table writes is the paravirtual alternative to tracing them)
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B
