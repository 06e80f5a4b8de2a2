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
# # Chapter 9 — Why it matters, and the mysteries
#
# lguest's narrative closes the page-table code at **H:490** with a sigh of relief and a
# verdict: all this juggling exists because, for most Guests, *the page-table dance decides how
# fast the Guest runs*.  Scattered through the file are also a few "mysteries" (**M:007**,
# **M:008**, **M:009**) — the author's notes on what is slow or wrong and not fixed.  This
# chapter, the last one on the C itself, measures the dance with the model, looks at each
# mystery, collects the flaws the book has met, and ends with what hardware did to make all of
# it unnecessary.  It takes each question only as far as one small measurement; chapter 10
# turns the same claims (H:490, M:007, M:009, with H:410, H:420 and H:435) into full
# experiments, and chapter 11 lets you attack the Host yourself.
#
# ## What you will learn
#
# - how to count the Host's work for a Guest workload, and which operations dominate;
# - M:009: why a Guest kernel that changes kernel mappings often (a "highmem" Guest) pays for
#   every change with a full flush, and how that cost grows;
# - M:007 and M:008: the cost of pinning every page, and why pinned pages cannot be swapped;
# - what nested paging (Intel EPT, AMD NPT) changed, and what it costs instead.

# %%
from lguest_book.guest import Guest
from lguest_book.trace import CallCounter
from lguest_book import flaws, plots, widgets
import lguest_book.inspect as li

def host_work(run, pae=False):
    """Run ``run(guest)`` on a fresh booted Guest; count what the Host did."""
    g = Guest(pae=pae, seed=1, mem_pages=8192)
    with CallCounter() as calls:
        run(g)
    n = calls.counts
    return {
        "faults": n["demand_page"],
        "set_pte": n["guest_set_pte"],
        "switches": n["guest_new_pagetable"],
        "full flushes": n["guest_pagetable_clear_all"],
        "pages pinned": n["get_user_pages_fast"],
        "dead": g.dead,
    }

# %% [markdown]
# ## H:490 — counting the dance
#
# A small but typical sequence: a shell starts a program.  The new process gets a top level, maps
# 32 pages of program and data, touches them all (writing half), and the shell and the program
# then take turns on the CPU a few times.

# %%
def start_program(g):
    shell, prog = g.new_process("shell"), g.new_process("prog")
    g.switch_to(shell)
    g.map(0x08048000, 0x400)
    g.touch(0x08048000, user=True)
    g.switch_to(prog)
    for i in range(32):
        g.map(0x08048000 + i * 4096, 0x500 + i, accessed=False)
    for i in range(32):
        g.touch(0x08048000 + i * 4096, write=(i % 2 == 1), user=True)
    for _ in range(4):
        g.switch_to(shell); g.touch(0x08048000, user=True)
        g.switch_to(prog); g.touch(0x08049000, user=True)

work = host_work(start_program)
work

# %% [markdown]
# Every fault is an exit from the Guest to the Host and back — on real hardware, hundreds to
# thousands of cycles each before `demand_page()` even starts — and a page that is read before
# it is written pays a second fault for the write (chapter 2).  On native hardware none of these
# faults exist: the CPU walks the Guest's tables directly.

# %% [markdown]
# ## M:009 — a kernel mapping change throws everything away
#
# When a Guest kernel changes one of *its own* mappings it must tell the Host, and the simple
# way — the FLUSH_TLB hypercall with a non-zero argument — makes the Host discard every shadow
# entry of every cached top level (chapter 6).  A 32-bit kernel with more memory than fits in its
# kernel mapping (about 700 MB with the usual 3 GiB/1 GiB split) must map and unmap "high memory"
# pages all the time.  The author's note: such a Guest is usually *slower* than one with less
# memory.  Here we isolate the mechanism — one Guest, a fixed number of kernel mapping changes,
# a growing working set (chapter 10's experiment 4 varies the Guest's RAM instead, and finds
# where the slowdown starts):

# %%
def highmem_round(pages, flush=True):
    def run(g):
        proc = g.new_process("worker")
        g.switch_to(proc)
        for i in range(pages):
            g.map(0x08048000 + i * 4096, 0x500 + i)
        for rnd in range(5):
            g.map(0xC0800000, 0x1800 + rnd)     # a temporary kernel mapping of a highmem page
            if flush:
                g.flush_all()                    # ... and the full flush it costs
            for i in range(pages):
                g.touch(0x08048000 + i * 4096, user=True)
    return run

sizes = [8, 32, 128, 256]
faults = [host_work(highmem_round(n))["faults"] for n in sizes]
# The other curve is measured too: the same workload when the Guest relies on SET_PTE for the
# kernel mapping (chapter 4: it updates the entry in every cached top level) and never flushes.
faults_set_pte = [host_work(highmem_round(n, flush=False))["faults"] for n in sizes]
# flush: every round refaults all n pages, plus the 2 stack pages pinned for the new top level
# and re-pinned by each of the 5 full flushes; SET_PTE: each page faults once, plus those 2.
assert faults == [5 * n + 2 + 5 * 2 for n in sizes]
assert faults_set_pte == [n + 2 for n in sizes]
list(zip(sizes, faults, faults_set_pte))

# %%
fig = plots.new_figure((5.5, 3.2))
ax = fig.add_subplot()
ax.plot(sizes, faults, marker="o", color=plots.VERMILION, label="flush everything per kernel change")
ax.plot(sizes, faults_set_pte, marker="s", color=plots.BLUE, label="SET_PTE on the kernel address, no flush (measured)")
ax.set_xlabel("pages in the Guest's working set")
ax.set_ylabel("faults for 5 kernel mapping changes")
ax.legend(fontsize=8, frameon=False)
ax.set_title("M:009: the cost of a kernel mapping change grows with the working set", fontsize=9)
fig

# %% [markdown]
# Each full flush forces the whole working set to fault back in: the cost grows with the number of
# pages the Guest uses, not with the size of the change.  The second curve is measured, not
# drawn by hand: with SET_PTE instead of the flush, each page faults once, on its first touch
# (the two more faults are the kernel stack's pages, pinned through `demand_page()` when the new
# process's top level is set up), and the five kernel mapping changes cost no fault at all.  With
# the flush, all *n* pages fault in every one of the five rounds, and the stack is pinned again
# after each flush: 5·*n* + 12.  The cell above asserts both formulas.  The author's verdict was that it cannot
# be fixed without some code-fu nobody had; SET_PTE on a kernel address (chapter 4), which fixes
# the entry in every cached top level, is the cheap path when the Guest can use it.  (Why not
# at "about 700 MB" in the model, but at the end of its 884 MiB of lowmem: chapter 10,
# experiment 4.)

# %% [markdown]
# ## M:007 and M:008 — pinning every page
#
# Every shadow PTE holds a reference on the host page behind it, taken by `get_pfn()` through
# `get_user_pages_fast()`, one page per fault.  M:007 notes that this is slow and could be
# batched (pre-fault a few neighbouring pages at once).  M:008 notes the other side: a page with
# an extra reference cannot be swapped out by the Host, so a Guest's whole working set is
# effectively locked in memory.  A callback when the Host wants to reclaim a page, and a way to
# shrink the shadow tables on demand, would be needed before unprivileged users could safely
# run Guests.  (Chapter 10's experiment 5 tries M:007's batching: how many faults it saves,
# and how many pages it pins for nothing.)
#
# The reference counts show it — every user page the Guest has touched carries two references,
# the Launcher's and the shadow's; the two kernel stack pages carry four, because the stack is
# pinned in each of the three cached top levels (swapper's, the shell's and the program's):

# %%
g = Guest(pae=False, seed=1)
start_program(g)
plots.plot_refcounts(g)

# %%
pinned = sum(1 for f, (c, who) in li.refcounts(g).items() if who[0] == "guest" and c > 1)
print(f"{pinned} guest pages pinned by shadow entries; {work['pages pinned']} pin operations for the workload")
counts = sorted(c for f, (c, who) in li.refcounts(g).items() if who[0] == "guest" and c > 1)
assert counts == [2] * 33 + [4] * 2 and pinned == 35
# 37 pins: the 33 user pages once each, the 2 stack pages once for each new top level (the
# shell's and the program's; swapper's were pinned at boot, before the count began).
assert work["pages pinned"] == 33 + 2 * 2

# %% [markdown]
# ## The flaws this book has met
#
# The model reproduces the C faithfully — including the places where the C breaks the promises a
# hypervisor makes.  Each was found by the project's property tests and checked against the C;
# each has a demonstration you can run:

# %%
for f in flaws.FLAWS:
    print(f"{f.key:20} {f.where}\n{'':20} breaks: {f.promise}")

# %%
demo = next(f for f in flaws.FLAWS if f.key == "pinned_not_present").demo(False)
assert demo["refs_after_teardown"] - demo["expected_after_teardown"] == 5
demo

# %% [markdown]
# One demonstration, `pinned_not_present` (chapter 4): `__guest_set_pte()` never tests
# Present, so each of the demo's five SET_PTEs of a not-present entry takes a page reference
# that `release_pte()` will never give back.  After teardown the frame still holds 6
# references where only the Launcher's 1 should remain (the cell checks the 5 extra).

# %% [markdown]
# ## What hardware changed
#
# H:490 mentions that Intel and AMD had started building this into hardware.  Adams and Agesen
# (2006) had just measured how the first hardware support compared with shadow paging; with
# **nested paging** (Intel EPT, AMD NPT; Bhargava et al., 2008, on making its walk affordable), the CPU itself walks two sets of tables: the Guest's, which map
# Guest-virtual to Guest-physical, and the Host's *nested* tables, which map Guest-physical to
# host-physical.  The Guest loads `cr3` and edits its tables freely; no shadow, no SET_PTE, no
# FLUSH_TLB hypercall, no faults to build entries.  The price is paid on a TLB miss: every Guest
# table reference is itself a guest-physical address that must be translated through the nested
# tables.  For an *n*-level Guest walk over *m*-level nested tables, that is up to
# (n + 1)(m + 1) − 1 memory references instead of *n*.  Two cases: a 64-bit Host (4-level
# nested tables), and nested tables as deep as the Guest's own, *m* = *n* (a 32-bit Host like
# lguest's), which is the case chapter 10's experiment 6 models:

# %%
def nested_refs(n, m):
    return (n + 1) * (m + 1) - 1

for guest_levels, name in ((2, "non-PAE Guest"), (3, "PAE Guest"), (4, "x86-64 Guest")):
    print(f"{name:14} up to {nested_refs(guest_levels, 4):2} references per TLB miss on 4-level nested tables,"
          f" {nested_refs(guest_levels, guest_levels):2} on {guest_levels}-level ones (native: {guest_levels})")
assert [nested_refs(n, n) for n in (2, 3)] == [8, 15]   # chapter 10's refs_per_miss_nested
assert [nested_refs(n, 4) for n in (2, 3, 4)] == [14, 19, 24]

# %% [markdown]
# Large TLBs, paging-structure caches and large pages make that affordable, and it is how KVM
# runs Guests today.  lguest, built to be the simplest hypervisor one could read in an afternoon,
# had done its teaching job; it was removed from Linux in version 4.14 (2017).  Chapter 10's
# experiment 6 sets the two techniques side by side on the model's workloads: shadow exits
# against nested TLB-miss walks, and the exit cost at which they break even.

# %% [markdown]
# ## Play: which flush?
#
# Use the console to compare the two flushes on a busy Guest: `flush_user()` drops the user
# part of the current top level, `flush_all()` everything, everywhere; then touch pages and count
# the faults in the log.

# %%
busy = Guest(pae=False, seed=1)
start_program(busy)
console = widgets.HypercallConsole(busy)
console.flush_user()
console.touch(0x08048000, user=True)
console.flush_all()
console.touch(0xC0100000)
console

# %% [markdown]
# ## Exercises
#
# 1. Re-run the M:009 experiment under PAE.  Is the growth the same?  Why might the constant
#    differ?
# 2. Implement "pre-faulting" for M:007 *outside* the model: after each fault, touch the next
#    three pages too.  Count `demand_page()` calls and pinned pages for `start_program`.  When
#    does pre-faulting waste work?  (Then compare with chapter 10's experiment 5, which does it
#    inside the Host.)
# 3. Using the flaw catalogue, pick one flaw and write the smallest change to the C (in words)
#    that would fix it.  Which promise does it restore?
# 4. Estimate the cost of `start_program` in cycles, assuming 1,000 cycles per Host exit and
#    200 cycles of `demand_page()` work per fault.  Compare with a native TLB miss.
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Answer:* the same growth, 5 faults per page of the working set; the constant is 14 under
#    PAE instead of 12.  A Tracer, counting `demand_page()` calls per page, shows the two extra
#    faults: they are the kernel stack's two pages, each faulted once more while the worker's
#    top level is set up (the no-flush variant has the same two extra, `n + 4`).  The user pages
#    fault 5 times each, as without PAE.  Checked below.
# 2. *Hint:* count pages that are pre-faulted but never touched.  *Answer:* pre-faulting saves a
#    Host exit per neighbouring page the program goes on to use, and wastes a pinned page (M:008)
#    and a `get_pfn()` for each one it does not — sparse access patterns, or the last pages of a
#    mapping.
# 3. *Answer (one example):* `set_pgd_bound` — test `idx >= PTRS_PER_PGD`; it restores "a Guest
#    cannot reach memory it does not own".
# 4. *Answer:* `start_program` makes 37 faults, so about 37 × (1,000 + 200) = 44,400 cycles.  A
#    native TLB miss is a hardware page walk of some tens of cycles, and natively most of these
#    37 events would be TLB misses, not faults at all.
#
# </details>

# %%
# The numbers in answers 1 and 4, checked.
assert [host_work(highmem_round(n), pae=True)["faults"] for n in (8, 32)] == [5 * 8 + 14, 5 * 32 + 14]
assert host_work(highmem_round(8, flush=False), pae=True)["faults"] == 8 + 4
from collections import Counter
from lguest_book.trace import Tracer
for pae, stack_faults in ((False, 6), (True, 7)):
    traced = Guest(pae=pae, seed=1, mem_pages=8192)
    with Tracer() as t9:
        highmem_round(8)(traced)
    per_page = Counter(e.args["vaddr"] & ~0xFFF for e in t9.trace.calls("demand_page"))
    stack = [(traced.cpu.esp1 - 1 - i * 4096) & ~0xFFF for i in range(traced.lg.stack_pages)]
    assert [per_page[v] for v in stack] == [stack_faults] * 2
    assert all(per_page[0x08048000 + i * 4096] == 5 for i in range(8))
assert host_work(start_program)["faults"] == 37

# %% [markdown]
# ## Summary
#
# - Shadow paging makes every first touch, every first write, and every page after a flush cost
#   an exit to the Host; H:490's verdict — this dance decides performance — is measurable.
# - M:009: full flushes for kernel mapping changes make the cost grow with the working set.
# - M:007/M:008: one pin per fault, and pinned pages cannot be swapped.
# - Nested paging moved the walk into hardware, trading faults for longer TLB misses.

# %% [markdown]
# ## References
#
# - Keith Adams and Ole Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization", ASPLOS 2006 — shadow page tables, hidden and true faults, tracing, and why early hardware support did not beat them
# - Ravi Bhargava, Benjamin Serebrin, Francesco Spadini and Srilatha Manne, "Accelerating Two-Dimensional Page Walks for Virtualized Systems", ASPLOS 2008 — nested paging and the cost of its two-dimensional walk
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B
# - The lguest documentation in Linux 4.7: `Documentation/virtual/lguest/lguest.txt`, <https://elixir.bootlin.com/linux/v4.7/source/Documentation/virtual/lguest/lguest.txt>, and the narrative of `drivers/lguest/` itself, <https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/>
