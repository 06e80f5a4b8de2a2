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
# # Chapter 6 — Part (v): flushing
#
# On real hardware a kernel that changes page tables must also flush the TLB, the CPU's cache
# of translations.  Under lguest the shadow tables *are* that cache, as far as the Guest is
# concerned, so a TLB flush becomes a hypercall: FLUSH_TLB.  It comes in two sizes — the user
# part of the current address space, or everything — and this chapter follows both down to
# the functions that free pages: markers **H:440**, **H:445**, **H:450** and **H:470**.
#
# ## What you will learn
#
# - how `guest_pagetable_flush_user()` and `flush_user_mappings()` empty the user half of one
#   shadow top level;
# - how `release_pgd()` and `release_pmd()` hand back every page below an entry, and in what
#   order;
# - what `guest_pagetable_clear_all()` does, why the Guest must then fault everything back in
#   ("trapped in amber"), and what survives;
# - that every page reference taken by a fault is returned by a flush — and how to check it;
# - what the CPU's TLB caches, why lguest's shadow changes need no TLB flush of their own, and
#   why the shadow tables are the Guest's TLB;
# - where the user flush is not exact (a kernel that starts inside a top-level entry).

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
import lguest_book.inspect as li
from lguest_book import plots, widgets, fmt

def busy_guest(pae=False):
    """A Guest whose process has faulted in 8 user pages and 8 kernel pages."""
    g = Guest(pae=pae, seed=1)
    p = g.new_process("busy")
    g.switch_to(p)
    for i in range(8):
        g.map(0x08048000 + i * 4096, 0x300 + i)
        g.touch(0x08048000 + i * 4096, write=True, user=True)
        g.touch(g.kernel_address + 0x100000 + i * 4096)
    return g

def split(g):
    """Count the current slot's shadow mappings below and above kernel_address."""
    m = li.shadow_mappings(g)
    user = sum(1 for v in m if v < g.kernel_address)
    return user, len(m) - user

# %% [markdown]
# ## Flushing the user part
#
# Linux flushes the user TLB after, say, `munmap()` or `mprotect()`.  Under lguest that is
# FLUSH_TLB with argument 0:

# %%
twin("guest_pagetable_flush_user")

# %%
twin("flush_user_mappings")

# %% [markdown]
# `flush_user_mappings()` walks the top-level entries *below* the Guest's kernel address —
# `pgd_index(kernel_address)` of them, 768 for a kernel at `0xC0000000` — and releases each.
# The kernel's entries are left alone: the Guest promised (by using this hypercall rather
# than the other) that it changed nothing there.

# %%
g = busy_guest()
print("user, kernel mappings before:", split(g))
with Tracer() as t:
    g.flush_user()
print("user, kernel mappings after: ", split(g))
print("release_pgd calls:", len(t.trace.calls("release_pgd")))
assert split(g) == (0, 13) and len(t.trace.calls("release_pgd")) == 768
kernel_side = {
    "kernel pages touched": {g.kernel_address + 0x100000 + i * 4096 for i in range(8)},
    "stack pages pinned": {(g.cpu.esp1 - 1 - i * 4096) & ~0xFFF for i in range(g.lg.stack_pages)},
    "Switcher pages mapped": {g.host.switcher_addr + i * 4096 for i in range(3)},  # code page, this CPU's pair
}
above = {v for v in li.shadow_mappings(g) if v >= g.kernel_address}
assert above == set().union(*kernel_side.values()) and sum(map(len, kernel_side.values())) == 13
for what, pages in kernel_side.items():
    print(f"{what:22} {len(pages):2}:", " ".join(fmt.vaddr(v) for v in sorted(pages)))

# %% [markdown]
# (The 13 mappings above `kernel_address` are not only the busy Guest's 8 kernel pages: the
# kernel stack's 2 pages are pinned in every top level (chapter 3), and the Switcher's code page
# and this CPU's 2 per-CPU pages are mapped too (chapter 7); the cell checks the 13 addresses
# against those three sets.)  768 calls to release the user part, most of them finding an empty entry.  Is that expensive?
# Compare it with what follows the flush: the process touches its 8 user pages again, and each
# one faults back in.  `trace.CallCounter` counts the model's calls on both sides:

# %%
from lguest_book.trace import CallCounter
g = busy_guest()
with CallCounter() as flush_cost:
    g.flush_user()
with CallCounter() as refault_cost:
    refaults = [g.touch(0x08048000 + i * 4096, write=True, user=True) for i in range(8)]
print("the flush:   one hypercall,", sum(flush_cost.counts.values()), "calls:",
      flush_cost.counts["release_pgd"], "release_pgd,", flush_cost.counts["release_pte"], "release_pte")
print("the refaults:", sum(a.faults for a in refaults), "traps into the Host,", sum(refault_cost.counts.values()),
      "calls:", refault_cost.counts["demand_page"], "demand_page")
assert flush_cost.counts["release_pgd"] == 768 and refault_cost.counts["demand_page"] == 8
assert flush_cost.counts["release_pte"] == 1024   # the one present PTE page is scanned whole
flush_calls, refault_calls = sum(flush_cost.counts.values()), sum(refault_cost.counts.values())
assert flush_calls > refault_calls                  # the prose below: in calls, the flush costs more

# %% [markdown]
# In calls, the flush is the bigger bill (the cell checks it): 768 top-level entries looked at
# and one PTE page of 1024 entries scanned, against eight runs of `demand_page()`.  But the
# flush happens inside one hypercall, while each refault is a round trip Guest → Switcher →
# Host → Guest, and on real hardware such a trip costs far more than reading an entry of a page
# the Host already has in its cache.  The model counts work but has no clock for traps, so it
# cannot settle which side costs more on a given machine.
#
# What it can show is the shape of each bill.  The flush has a fixed part, one `release_pgd()`
# per top-level entry below `kernel_address` (768 here), and a part that grows with how the
# process's memory is *spread*: every present PTE page is scanned whole, 1024 `release_pte()`
# calls, however few of its entries are in use.  The same 8 user pages packed into one 4 MiB
# region or spread over eight:

# %%
def flush_calls_for(step):
    h = Guest(pae=False, seed=1)
    h.switch_to(h.new_process("p"))
    for i in range(8):
        h.map(0x08048000 + i * step, 0x300 + i)
        h.touch(0x08048000 + i * step, write=True, user=True)
    with CallCounter() as cc:
        h.flush_user()
    return cc.counts

packed, spread = flush_calls_for(4096), flush_calls_for(0x400000)   # 4 KiB apart, 4 MiB apart
for name, c in (("8 pages, 1 region ", packed), ("8 pages, 8 regions", spread)):
    print(f"{name}: {c['release_pgd']} release_pgd, {c['release_pte']} release_pte, "
          f"{c['free_page']} PTE pages freed, {sum(c.values())} calls")
assert packed["release_pgd"] == spread["release_pgd"] == 768          # the fixed part
assert (packed["release_pte"], spread["release_pte"]) == (1024, 8 * 1024)   # 1024 per PTE page
assert (sum(packed.values()), sum(spread.values())) == (1805, 8994)

# %% [markdown]
# Same pages, same hypercall, five times the calls: the flush costs 768 entry checks plus 1024
# per user PTE page present, so it grows with the number of 4 MiB regions the process has
# touched, not with the number of pages in them.  The refaults cost one trap per page the
# process uses again, wherever those pages are.

# %% [markdown]
# ### When `kernel_address` is not on a top-level boundary
#
# The loop stops at `pgd_index(kernel_address)`, and releases whole top-level entries.  That is
# exact only when the kernel starts on a top-level boundary.  Under PAE a top-level entry covers
# 1 GiB, and a kernel built with the "3G_OPT" split starts at `0xB0000000`, in the *middle* of
# entry 2 (`0x80000000`–`0xBFFFFFFF`).  `pgd_index(0xB0000000)` is 2, so the flush releases
# entries 0 and 1 only: user mappings between `0x80000000` and `0xAFFFFFFF` survive it.  The
# Guest below clears two of its PTEs in memory (as a kernel does before a batch flush) and asks
# for the user flush.  *Predict* which shadow entry is left, then run:

# %%
from lguest_book import fmt

def unaligned_flush(kernel_address):
    h = Guest(pae=True, seed=1, kernel_address=kernel_address)
    q = h.new_process("q")
    h.switch_to(q)
    for v, n in ((0x90000000, 0x300), (0x08048000, 0x301)):
        h.map(v, n)
    for v in (0x90000000, 0x08048000):
        h.touch(v, user=True)
    for v in (0x90000000, 0x08048000):
        h.write_entry(li.walk_guest(h, v)[-1].where, 0)      # the Guest clears its PTE
    h.flush_user()
    left = {fmt.vaddr(v): li.walk_shadow(h, v)[-1].present for v in (0x90000000, 0x08048000)}
    return h, left

for ka in (0xC0000000, 0xB0000000):
    h, left = unaligned_flush(ka)
    print(f"kernel_address {fmt.vaddr(ka)}: pgd_index {fmt.index(h.x86.pgd_index(ka))}, shadow entries left after the flush: {left}")
stale = h.touch(0x90000000, user=True)
print("the Guest's PTE for 0x90000000:", fmt.entry(h.guest_pte(0x90000000), h.x86), "— yet the access:", stale)
assert left == {"0x90000000": True, "0x08048000": False}
assert stale.outcome == "ok" and stale.faults == 0 and h.guest_pte(0x90000000) == 0

# %% [markdown]
# The Guest unmapped the page, flushed, and can still use it: a stale translation, still holding
# its page reference.  `page_table_guest_data_init()` checks only that `kernel_address` is below
# the Switcher.  It is the Guest's own page, so the Host's promises stand; the Guest's own
# bookkeeping does not (a page it frees and reuses is still reachable through the old address).
# The same gap lets `new_pgdir()` keep such entries when it reuses a slot.
# `flaws.flaw("unaligned_kernel_address")` keeps the demonstration.

# %% [markdown]
# ## Releasing: from a top-level entry down to the pages
#
# `release_pgd()` (and under PAE `release_pmd()`) do the actual freeing.  For a present
# entry: release every PTE below it — each one gives back the page reference `get_pfn()` took —
# then free the PTE page itself, then clear the entry so it can never be released twice.

# %%
twin("release_pgd")

# %%
twin("release_pmd")

# %% [markdown]
# Reference counting is the Host's side of the bargain.  Let's follow the reference count of
# the host frame that backs the first user page, through fault and flush:

# %%
g = Guest(pae=False, seed=1)
p = g.new_process("p")
g.switch_to(p)
g.map(0x08048000, 0x300)
def count():
    return {f: c for f, (c, who) in li.refcounts(g).items() if who == ("guest", 0x300)}
print("before the fault:", count())
assert count() == {}                       # no host frame yet: nothing to count
g.touch(0x08048000, user=True)
print("after the fault: ", count())
assert list(count().values()) == [2]
g.flush_user()
print("after the flush: ", count())
assert list(count().values()) == [1]

# %% [markdown]
# Before the first touch there is no host frame at all: the Launcher's memory is allocated
# lazily, like any process's, and `get_pfn()` is what brings the page into existence.  From
# then on the Launcher's own mapping holds one reference, and the shadow PTE a second one while
# it exists.  After the flush the shadow's reference is back; the Launcher's stays.

# %% [markdown]
# The same accounting for a whole busy Guest, before and after a user flush.  The user pages
# pinned by a shadow PTE (count 2) drop back to the Launcher's single reference; the kernel pages
# keep theirs, because a user flush leaves every entry above `kernel_address` in place.  The
# cells check it through `inspect` before drawing:

# %%
g = busy_guest()
def counts_by_page(g):
    """guest page -> reference count of the host frame behind it"""
    return {who[1]: c for f, (c, who) in li.refcounts(g).items() if who and who[0] == "guest"}
user_pages = range(0x300, 0x308)
kernel_pages = [li.compare(g, g.kernel_address + 0x100000 + i * 4096, 1)[0]["guest_frame"] for i in range(8)]
before = counts_by_page(g)
assert all(before[n] == 2 for n in user_pages) and all(before[n] == 2 for n in kernel_pages)
plots.plot_refcounts(g)

# %%
g.flush_user()
after = counts_by_page(g)
assert all(after[n] == 1 for n in user_pages)        # dropped back
assert all(after[n] == 2 for n in kernel_pages)      # kernel pages stay pinned
stack_frames = [li.compare(g, (g.cpu.esp1 - 1 - i * 4096) & ~0xFFF, 1)[0]["guest_frame"] for i in range(g.lg.stack_pages)]
assert sorted(n for n, c in after.items() if c == 3) == sorted(stack_frames)   # the "count 3" guest bar
plots.plot_refcounts(g)

# %% [markdown]
# The guest bar's "count 3" frames are the two kernel-stack pages (the cell checks it): the
# Launcher's reference, plus one for each of the two cached top levels that pin the stack,
# swapper's and the busy process's.  The Switcher's and register pages are counted the same
# way: the Host's own reference, plus one per shadow PTE that maps them.

# %% [markdown]
# ## Flushing everything: "trapped in amber"
#
# FLUSH_TLB with a non-zero argument means "I changed a kernel mapping" — and kernel mappings
# are in every cached top level.  lguest does not try to find which entries changed: it
# releases every shadow entry of every slot (`release_all_pagetables()`), then re-pins the
# stack and re-maps the Switcher, because the Guest cannot run without them.

# %%
twin("guest_pagetable_clear_all")

# %%
twin("release_all_pagetables")

# %%
g = busy_guest()
print("user, kernel mappings before:", split(g))
g.flush_all()
print("user, kernel mappings after: ", split(g))
survivors = sorted(li.shadow_mappings(g))
print("what survives:", [fmt.vaddr(v) for v in survivors])
print("stack pages:  ", [fmt.vaddr((g.cpu.esp1 - 1 - i * 4096) & ~0xFFF) for i in range(g.lg.stack_pages)])

# %%
before = busy_guest()   # the same (seeded) busy Guest, before the flush
fig = plots.plot_directory_change(before, g, titles=("before FLUSH_TLB(1)", "after"))
user_i, kernel_i, switcher_i = (g.x86.pgd_index(v) for v in (0x08048000, g.kernel_address, g.host.switcher_addr))
assert fig.lguest["gone"] == [("pgd", None, user_i)]                       # the user entry, gone
assert fig.lguest["changed"] == [("pgd", None, i) for i in (user_i, kernel_i, switcher_i)]
assert fig.lguest["after"]["present"] == 2                                 # the stack's and the Switcher's
old_pte_pages = {i: li.walk_shadow(before, i << 22)[0].value >> 12 for i in (kernel_i, switcher_i)}
new_pte_pages = {i: li.walk_shadow(g, i << 22)[0].value >> 12 for i in (kernel_i, switcher_i)}
assert all(old_pte_pages[i] != new_pte_pages[i] for i in old_pte_pages)   # both point at fresh PTE pages
fig

# %%
stack_pages = {(g.cpu.esp1 - 1 - i * 4096) & ~0xFFF for i in range(g.lg.stack_pages)}
switcher_pages = {g.host.switcher_addr + i * 4096 for i in range(g.host.TOTAL_SWITCHER_PAGES)}
assert set(survivors) <= stack_pages | switcher_pages and stack_pages <= set(survivors)

# %% [markdown]
# The figure outlines three top-level entries.  Entry `0x020`, the user pages', is gone.  Entries
# `0x300` (the kernel's first 4 MiB, which holds the stack) and `0x3ff` (the Switcher's) are
# present before and after, but they changed: `release_all_pagetables()` freed their PTE pages
# along with everything else, and re-pinning the stack and re-mapping the Switcher allocated
# new ones (the cells check which entries, and that the PTE pages are new).
#
# Only the stack and the Switcher survive (the cell above checks it).  The Guest now runs like an insect in amber: every
# page it touches faults once more, and the shadow grows back page by page.  That is correct,
# and slow — which is why the Guest kernel should ask for the small flush whenever it can.

# %%
g2 = busy_guest()
g2.flush_all()
faults = sum(g2.touch(0x08048000 + i * 4096, user=True).faults for i in range(8))
print("faults to touch the 8 user pages again:", faults)
assert faults == 8

# %% [markdown]
# The two flushes in sequence, recorded: event 1 is the user flush, event 2 a touch that
# faults a page back, event 3 the full flush, event 4 another touch.  Slide to any of them to
# see what it dropped (struck out under "gone at this event") and which reference counts
# fell; the scrubber starts at event 0, the busy Guest before any flush.

# %%
from lguest_book.recorder import Recorder

run = Recorder(busy_guest())
run.flush_user()
run.touch(0x08048000, user=True)
run.flush_all()
run.touch(0x08049000, user=True)
scrubber = widgets.Scrubber(run)
gone = [sum(1 for key, old, new in run.recording.changes(k) if key[0] == "s" and new is None) for k in (1, 3)]
print("shadow entries dropped by FLUSH_TLB(0):", gone[0], "— by FLUSH_TLB(1):", gone[1])
assert 0 < gone[0] < gone[1] and scrubber.position == 0
scrubber

# %% [markdown]
# The console below holds a busy Guest of its own, on which the cell has already made the two
# flushes, user then full: their counts are in the log.  Press the buttons to make more
# (*Reset* gives you the busy Guest back), and watch the counts change:

# %%
console = widgets.HypercallConsole(busy_guest())
console.flush_user()
console.flush_all()
assert [line.split(" — ")[0] for line in console.log] == ["FLUSH_TLB(0)", "FLUSH_TLB(1)"]   # both already made
console

# %% [markdown]
# ## The TLB: what the hardware caches, and why lguest rarely has to care
#
# A refresher (OSTEP, ch. 19, "Paging: Faster Translations (TLBs)"): the CPU caches translations
# it has walked — virtual page → frame and rights — in its TLB, and does not notice later
# changes to the tables.  An OS that changes an entry must flush: `invlpg` drops one address, a
# load of CR3 drops every entry *except those marked Global* (when the CPU's global-pages feature,
# PGE, is on).  The tables the CPU walks here are the *shadow* tables, so two caches are in play:
#
# 1. **The CPU's TLB, over the shadow tables.**  The Host changes shadow entries only while the
#    Guest is not running: in a fault, a hypercall, or just before entry.  Every entry into the
#    Guest goes through the Switcher, which loads the Guest's CR3 (the shadow top level), and
#    every exit loads the Host's.  So every Guest run starts with no stale non-global entry, and
#    page_tables.c never issues a flush of its own.  Global entries cannot break that, because
#    lguest's host code turns PGE off on every host CPU while it is loaded (x86/core.c,
#    `lguest_arch_host_init()`), and with PGE off the CPU ignores the bit.  *If PGE were on*, a
#    Global entry would survive the CR3 load, and the Host and the Guest use the same virtual
#    addresses for different things (both have a kernel above `0xC0000000`); that is why it
#    matters that the shadow never carries the Guest's Global (chapter 2) and that the per-CPU
#    Switcher entries are built without it (chapter 7).  One shadow entry does carry Global:
#    the Switcher's code page, which `allocate_switcher_mapping()` maps with the kernel's
#    read-only-executable protection, Global included (the cell below finds it).  It is
#    harmless twice over: PGE is off, and even with PGE on, that entry maps the same Switcher
#    page at the same address in the Host's tables as in every Guest's, so a TLB entry for it
#    that survived a switch would still be right.
# 2. **The shadow tables, over the Guest's tables.**  To the Guest, the shadow *is* a TLB: a cache
#    of translations from its own tables, filled on demand by faults.  It goes stale the same way,
#    and the Guest must flush it the same way — SET_PTE for one entry, SET_PGD for a table,
#    FLUSH_TLB for the user part or for everything.  The model's MMU has no hardware TLB (the
#    README says so), so what it can show is this second cache going stale.  *Predict*: the Guest
#    rewrites a PTE in memory to point at another page and does not tell the Host.  Where does
#    the next access go?  And after FLUSH_TLB(0)?

# %%
g = busy_guest()
v = 0x08048000
old_frame = li.walk_shadow(g, v)[-1].value >> 12
g.write_entry(li.walk_guest(g, v)[-1].where, 0x3F0 << 12 | 0x67)   # now guest page 0x3f0, silently
a1 = g.touch(v, user=True)
stale = li.walk_shadow(g, v)[-1].value >> 12
g.flush_user()                                                    # the Guest's "TLB flush"
a2 = g.touch(v, user=True)
fresh = li.compare(g, v, 1)[0]
print(f"before the flush: {a1}, shadow still names host frame {fmt.frame(stale, g.x86)} (guest page 0x300's)")
print(f"after the flush:  {a2}, guest page {fmt.frame(fresh['guest_frame'], g.x86)} -> host frame {fmt.frame(fresh['host_frame'], g.x86)}")
assert a1.faults == 0 and stale == old_frame
assert a2.faults == 1 and fresh["guest_frame"] == 0x3F0 and fresh["host_frame"] != old_frame
assert not any(e.value & 0x100 for e in li.walk_shadow(g, v))     # and no Global anywhere in the walk
global_entries = [va for va, pte in li.shadow_mappings(g).items() if pte & 0x100]
assert global_entries == [g.host.switcher_addr]                   # the Switcher's code page, alone

# %% [markdown]
# Exactly a stale TLB entry, one level up: the access went to the old page until the Guest
# flushed.  Nested paging (Bhargava et al., 2008) removes this second cache: the hardware walks
# the Guest's tables itself, and a guest's own `invlpg` is all it takes.
#
# ## Hostile input
#
# FLUSH_TLB takes no address, so there is nothing to validate; any non-zero argument is "flush
# everything".  The danger is the reverse: a Guest that flushes *too little* — changes a kernel
# mapping and flushes only the user part, or flushes nothing — keeps using a stale shadow entry.
# That hurts only the Guest itself, because a stale entry still points at a page the Guest owns
# and still holds its reference:

# %%
g = busy_guest()
kpage = g.kernel_address + 0x100000
old = li.walk_shadow(g, kpage)[-1].value
# The Guest rewrites its kernel PTE in memory, without SET_PTE or a flush:
walk = li.walk_guest(g, kpage)
g.write_entry(walk[-1].where, (0x900 << 12) | 0x163)
print(f"guest now says frame {fmt.frame(0x900, g.x86)}; shadow still says {fmt.entry(old, g.x86)}")
reached = g.touch(kpage).hpa >> 12
print("the access still reaches the old frame:", reached == old >> 12)
assert reached == old >> 12 and li.owner(g, reached)[0] == "guest" and not g.dead   # the Guest's own page

# %% [markdown]
# ## Exercises
#
# 1. Count the `release_pgd()` calls of a full flush for a Guest with four cached top levels,
#    both without PAE and with it.  Explain the numbers from the layouts.
# 2. A Guest changes a *kernel* PTE with SET_PTE (chapter 4).  Does it still need FLUSH_TLB(1)?
#    Read `guest_set_pte()` again and decide.
# 3. Using `li.refcounts()`, write an assertion that after `g.flush_all()` no host frame
#    backing guest memory holds more than one reference, except the stack's.
# 4. Count it: how many `g.touch()` faults does it take to rebuild a process that had 64 pages
#    mapped, after a full flush?  After a user flush?
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* `release_all_pagetables()` visits every top-level entry of every allocated slot.
#    *Answer:* 4 × 1024 = 4096 `release_pgd()` calls without PAE; 4 × 4 = 16 with PAE, and for
#    each *present* top-level entry `release_pgd()` visits its 512 middle entries: with one
#    present entry per slot here (the kernel's), 2048 `release_pmd()` calls (checked below).
# 2. *Answer:* no, not for the shadow: `guest_set_pte()` on a kernel address updates that entry
#    in every cached top level (chapter 4).  And the CPU's TLB needs nothing from the Guest
#    either: every entry into the Guest reloads CR3 (the TLB section above).
# 3. *Answer (one way):* `stack = {...frames of the stack pages...}` and then
#    `assert all(c == 1 or f in stack for f, (c, who) in li.refcounts(g).items() if who and who[0] == "guest")`.
# 4. *Answer:* 64 faults both times: the 64 pages are user pages, and both flushes drop every
#    user entry (checked below; the full flush also drops kernel entries, which this process did
#    not touch again).
#
# </details>

# %%
# Answers 1, 3 and 4, checked.
g3 = busy_guest()
g3.flush_all()
stack = {li.compare(g3, (g3.cpu.esp1 - 1 - i * 4096) & ~0xFFF, 1)[0]["host_frame"] for i in range(g3.lg.stack_pages)}
assert all(c == 1 or f in stack for f, (c, who) in li.refcounts(g3).items() if who and who[0] == "guest")
for pae, (pgds, pmds) in ((False, (4096, 0)), (True, (16, 2048))):
    h = Guest(pae=pae, seed=1)
    procs = [h.new_process(f"p{i}") for i in range(4)]
    for q in procs:
        h.switch_to(q)
    with CallCounter() as c6:
        h.flush_all()
    assert (c6.counts["release_pgd"], c6.counts["release_pmd"]) == (pgds, pmds)
for flush in ("flush_all", "flush_user"):
    h = Guest(pae=False, seed=1, mem_pages=8192)
    q = h.new_process("p")
    h.switch_to(q)
    for i in range(64):
        h.map(0x08048000 + i * 4096, 0x300 + i)
    for i in range(64):
        h.touch(0x08048000 + i * 4096, user=True)
    getattr(h, flush)()
    assert sum(h.touch(0x08048000 + i * 4096, user=True).faults for i in range(64)) == 64

# %% [markdown]
# ### Graded exercise: flush the user part (H:445)
#
# Write `flush_user_mappings(lg, idx)`: release, with `release_pgd(lg.host, pointer)`, every
# top-level entry of cached slot `idx` below the Guest's kernel address: every one, up to and
# including the last below `pgd_index(kernel_address)`, and none of the kernel's.  A pointer to entry *i*
# of slot `idx`'s top level is `(lg.pgdirs[idx].pgdir, i)`; `lg.x86.pgd_index(address)` gives an
# address's top-level index.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch6-flush-user")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch6-flush-user-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import release_pgd


def flush_user_mappings(lg, idx):
    ### BEGIN SOLUTION
    top = lg.pgdirs[idx].pgdir
    for entry in range(lg.x86.pgd_index(lg.kernel_address)):
        release_pgd(lg.host, (top, entry))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch6-flush-user-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch6-flush-user", flush_user_mappings)
### BEGIN HIDDEN TESTS
exercises.check("ch6-flush-user", flush_user_mappings, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - FLUSH_TLB(0) → `guest_pagetable_flush_user()` → `flush_user_mappings()`: the user half of the
#   current slot.
# - FLUSH_TLB(1) → `guest_pagetable_clear_all()`: every slot emptied, then the stack re-pinned
#   and the Switcher re-mapped.
# - `release_pgd()`/`release_pmd()` free PTE pages and, through `release_pte()`, give back every
#   page reference a fault took.
# - A user flush costs a loop over the top-level entries below `kernel_address` (768 without
#   PAE), plus a whole scan (1024 `release_pte()` calls) of every user PTE page present: it grows
#   with the number of 4 MiB regions the process touched (1805 calls for 8 pages in one region,
#   8994 for 8 pages in eight), not with the pages in them.  The refaults that follow cost one
#   trap per page used again.  The model counts both; which is dearer depends on the hardware's
#   trap cost.
# - The shadow tables are, to the Guest, what a TLB is to a native kernel: a cache of its own
#   tables that it must tell the Host to drop (SET_PTE, SET_PGD, FLUSH_TLB).  The CPU's own TLB
#   needs no help from page_tables.c, because every entry into the Guest loads CR3.
# - The user flush is exact only when `kernel_address` is on a top-level boundary: under PAE
#   with a kernel at `0xB0000000` it leaves user entries of the 1 GiB entry it shares with the
#   kernel (`unaligned_kernel_address`).

# %% [markdown]
# ## References
#
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, ch. 19 "Paging: Faster Translations (TLBs)"
# - Intel® 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A, ch. 4 "Paging" (4.7 on page-fault error codes, 4.10 on caching translations)
# - Ravi Bhargava, Benjamin Serebrin, Francesco Spadini and Srilatha Manne, "Accelerating Two-Dimensional Page Walks for Virtualized Systems", ASPLOS 2008 — nested paging and the cost of its two-dimensional walk
