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
# # Chapter 10 — Experiments: testing what the comments claim
#
# The literate comments of page_tables.c do not only explain; now and then they *claim*.  Keeping
# the kernel part of every cached top level "speeds up context switch immensely" (**H:410**).
# Random eviction is "easy", least-recently-used "might be better" (**H:435**).  Guests that set
# Accessed and Dirty themselves save faults (**H:420**).  A Guest with more than about 700 MB of
# RAM is "usually slower" (**M:009**).  Batching `get_pfn` "could" help (**M:007**).  And the
# whole page-table dance decides how fast a Guest runs — which is why the hardware vendors built
# it into their chips (**H:490**).
#
# This chapter puts each claim to the test on the model, the way a systems paper would: a seeded
# workload, a variant to compare against, a figure, and a sentence saying what the numbers show —
# each sentence checked by the cell that prints it, so that if the model changes and a claim stops
# holding, the book stops building.
#
# ## What you will learn
#
# - how to turn a sentence of a comment into an experiment: what to vary, what to hold still,
#   what to count;
# - when the cached kernel part pays (H:410), and how much;
# - that random eviction can *beat* LRU, and when the size of the cache matters more than the
#   policy (H:435);
# - what a Guest's own Accessed/Dirty bits save (H:420), and what prefaulting would (M:007);
# - where the highmem slowdown begins in the model, and why it is not at 700 MB (M:009);
# - how shadow paging and nested paging trade exits for longer TLB misses, and where they cross
#   (H:490).
#
# **How to read the numbers.**  The model counts *events* — faults the Host took, hypercalls,
# calls into page_tables.c, pages pinned — not time.  A real Host spends most of its time around
# those events (the world switch into and out of the Guest, caches, the Launcher), all of which
# is outside the model.  So the experiments compare counts, and where a cost model is needed it is
# stated and its parameter swept.  The Guest kernel and its workloads are the model's invention:
# the conclusions are only as general as the workloads.
#
# Every experiment here runs at a small (`quick`) size so the chapter executes in seconds; the
# full-size figures, made by the command shown beside each, are stored with the book.

# %%
from pathlib import Path
from IPython.display import Image

from lguest_book import experiments as ex
from lguest_book.workloads import WorkloadSpec, generate, run
from lguest_book import fmt

RESULTS = Path("results")  # the full-size runs, stored with the book

def stored(name):
    """The full-size result of an experiment: its summary and figure, as stored with the book."""
    print((RESULTS / f"{name}.txt").read_text())
    return Image(filename=str(next(RESULTS.glob(f"{name}-*.png"))))

# %% [markdown]
# ## The workloads
#
# A workload is a seeded list of what a small Unix-like Guest does: fork processes (each maps
# its pages), let a scheduler switch between them, touch pages (sequentially, at random, or
# mostly within a working set), map and unmap pages, touch kernel memory.  It runs on the
# Guest's public API only — hypercalls, its own stores, memory accesses — so the Host sees
# exactly what a Guest kernel would show it.

# %%
spec = WorkloadSpec(ops=2000, processes=4, pages=16, quantum=25, seed=7)
ops = generate(spec)
print(len(ops), "operations; the first ten:")
def show(op):
    """An operation, its addresses in hex: (name, vaddr, write, user) for a touch."""
    return "(" + ", ".join(fmt.vaddr(x) if type(x) is int and x >= 0x1000 else repr(x) for x in op) + ")"
for op in ops[:10]:
    print(" ", show(op))
stats, runner = run(spec)
print(stats.as_row())
assert ops == generate(spec)           # the same seed, the same workload
assert stats.faults > 0 and stats.hypercalls["new_pgtable"] == stats.switches

# %% [markdown]
# The generator and runner are fast enough for experiments at a scale where curves mean something:
# `lguest-book experiment bench` generates and runs a million Guest operations (on a 2-core
# machine, in well under the minute the project allows itself).

# %% [markdown]
# ## 1. H:410 — is keeping the kernel part worth it?
#
# **The claim.**  Every address space of a Linux Guest maps the kernel the same way, so when the
# Host takes a cached slot for a new top level ([`new_pgdir`, H:435](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/page_tables.c))
# it throws away only the user part and keeps the kernel part; a kernel mapping that changes is
# changed in every cached top level (H:410).  The comment says this makes context switches much
# faster.
#
# **The experiment.**  Run round-robin workloads whose accesses are half kernel, half user, over
# 2…16 processes and 1…16 cached slots (the C has four: `pgdirs[4]`; a different size is the C
# compiled with a different array), once with the C's `new_pgdir` and once with a variant that
# also drops the kernel part of the slot it reuses, as if kernel parts were not shared.  Count the
# faults per context switch.

# %%
r1 = ex.run("h410-kernel-sharing", quick=True)
print(r1.table(["variant", "slots", "processes", "misses", "faults_per_switch", "host_calls_per_switch"]))
print()
print("\n".join(r1.summary))
assert r1.findings["kept_cheaper_when_evicting"]   # keeping the kernel part never costs more faults when slots are reused...
assert r1.findings["same_when_all_fit"]            # ...and changes nothing when nothing is evicted
assert r1.findings["min_ratio"] > 1.2              # without it, every evicting configuration faults more...
assert r1.findings["max_ratio"] > 1.8              # ...and some nearly twice as much
r1.figures[0]

# %% [markdown]
# **What it says.**  The saving is real — up to about half the faults of a context switch here, more
# in the full-size run below — and it is a saving on *reused* slots only: with every
# address space cached, no slot is ever reused and the two variants are identical.  Look also at
# the host calls per switch: a miss costs well over a thousand calls into page_tables.c even when
# the kernel part is kept, because `flush_user_mappings()` walks every one of the 768 user
# top-level entries of the reused slot.  The full-size run:

# %%
stored("h410-kernel-sharing")

# %% [markdown]
# `lguest-book experiment run h410-kernel-sharing --out results` regenerates it.
#
# **Limits.**  The workloads' half-kernel mix sets the size of the saving; a Guest that spends
# less time in its kernel saves less.

# %% [markdown]
# ## 2. H:435 — random eviction against LRU, FIFO and the best possible choice
#
# **The claim.**  `new_pgdir` picks the slot to throw out at random; the comment concedes that
# least-recently-used might be better, and prefers random for being easy.
#
# **The experiment.**  new_pgdir draws one number from `prandom_u32()` per miss and evicts that
# number modulo the number of slots.  So a policy can be put in without touching the C: a
# `PolicySource` answers each draw with the slot LRU, FIFO or the optimal offline choice
# (Belady's: evict what is needed furthest in the future) would pick.  The traces: a round-robin
# scheduler, a uniformly random one, and one with locality (80 % of switches among three
# processes).

# %%
r2 = ex.run("h435-eviction", quick=True)
print(r2.table(["trace", "policy", "slots", "switches", "misses", "miss_ratio", "faults_per_switch"]))
print()
print("\n".join(r2.summary))
f = r2.findings
assert f["round-robin_lru"] == 1.0 and f["round-robin_random"] < 0.5   # LRU's worst case, random's advantage
assert f["optimal_is_best"]                                           # nothing beats Belady
assert f["size_gap_locality"] > f["policy_gap_locality"]              # size matters more than policy here
r2.figures[0]

# %% [markdown]
# **What it says.**  Random is not simply worse.  On a cyclic schedule one process larger than
# the cache (five processes, four slots; the kernel's own top level also holds a slot until it
# is evicted, and is never needed again — exercise 1), LRU and FIFO evict exactly the top level
# needed next and miss on *every* switch; random misses on fewer than half.  With locality,
# random and LRU come close, and both are far from the optimal choice; a bigger cache buys more
# than a better policy.  The author's "easy" choice holds up better than the
# comment's modesty suggests.

# %%
stored("h435-eviction")

# %% [markdown]
# `lguest-book experiment run h435-eviction --out results` regenerates it.
#
# **Check the method.**  A `PolicySource` with the policy `"random"` draws from the same seeded
# generator as the C's own `prandom_u32()`: it must reproduce the unmodified model exactly.

# %%
from lguest_book.guest import Guest
from lguest_book.trace import CallCounter
from lguest_book.workloads import Runner
import lguest_book.inspect as li

check = WorkloadSpec(ops=800, processes=6, pages=4, working_set=2, quantum=6, scheduler="random", seed=3)
plain = Guest(pae=False, seed=3)
with CallCounter() as calls:
    Runner(plain).run(generate(check), pages=check.pages)
mirrored = ex._eviction_run(check, "random", 4, seed=3)
print("new_pgdir calls, plain model:", calls.counts["new_pgdir"], " misses seen by the policy source:", mirrored["misses"])
assert mirrored["misses"] == calls.counts["new_pgdir"]

# %% [markdown]
# **Play.**  Choose a schedule, a number of processes and of cached top levels; the explorer runs
# all four policies on the model (a few hundred operations each) and tabulates their misses.  Try
# round-robin with one process more than the slots, then one fewer.

# %%
ex.eviction_explorer()

# %% [markdown]
# ## 3. H:420 — the Guest sets Accessed and Dirty itself
#
# **The claim.**  The Guest expects Accessed to be set the first time a page is read and Dirty
# the first time it is written; so normally the Host drops a shadow entry when the Guest changes a
# PTE, and lets the next fault rebuild it (marking the bits).  But most kernels, Linux among them,
# set those bits themselves when they make the entry, and then `__guest_set_pte` can install the
# shadow entry at once — read-only if only Accessed is set, writable if Dirty is.  (The comment
# credits the observation to Avi Kivity.)
#
# **The experiment.**  The same workloads (5 % of accesses remap a page) with a Guest that sets
# Accessed and Dirty when it maps (Dirty for pages mapped for writing, as Linux does), one that
# sets Accessed only, and one that sets neither.

# %%
r3 = ex.run("h420-accessed-dirty", quick=True)
print(r3.table(["layout", "pattern", "ad", "accesses", "faults", "faults_per_1000"]))
print()
print("\n".join(r3.summary))
assert r3.findings["eager_fewest"]
assert r3.findings["saved_vs_none"] > 0.5   # more than half the faults saved
r3.figures[0]

# %%
stored("h420-accessed-dirty")

# %% [markdown]
# `lguest-book experiment run h420-accessed-dirty --out results` regenerates it.
#
# **Limits.**  Only pages of address spaces the Host already shadows profit (`guest_set_pte`
# updates cached top levels only); and chapter 4's `writable_not_dirty` flaw is the other side
# of this shortcut.

# %% [markdown]
# ## 4. M:009 — highmem
#
# **The claim.**  A Guest kernel whose RAM does not fit below its kernel address uses *highmem*:
# pages it maps for a moment (`kmap_atomic`) and unmaps again.  lguest's Guest cannot tell the
# Host which address such a mapping changed, so it asks for every shadow entry to be thrown away
# (a full flush, H:470).  The mystery M:009 says that a Guest with the default split
# (`0xc0000000`) and more than about 700 MB is usually slower than one with less memory.
#
# **The experiment.**  Guests of growing RAM run the same workload: a user process with a small
# working set, and the kernel reading page-cache pages spread over all of RAM — through its
# direct mapping when the page is in lowmem, through a kmap (a PTE store and a full flush, then
# an unmap) when it is not.  Count the faults per operation.

# %%
r4 = ex.run("m009-highmem", quick=True)
print(r4.table(["ram_mib", "lowmem_mib", "highmem_fraction", "flushes", "faults_per_op"]))
print()
print("\n".join(r4.summary))
assert r4.findings["slower_above"]
assert r4.findings["lowmem_mib"] == 884   # 1020 MiB below the Switcher, less 128 + 8 MiB of reserves
print("the model's lowmem:", r4.findings["lowmem_mib"], "MiB")
r4.figures[0]

# %%
stored("m009-highmem")

# %% [markdown]
# `lguest-book experiment run m009-highmem --out results` regenerates it.
#
# **What it says, and what it cannot.**  The slowdown is there, and it is steep: each highmem
# access throws every shadow entry of every cached top level away.  But in the model it starts
# exactly where the model's lowmem ends (884 MiB: 1 GiB of kernel space, less the Switcher's
# 4 MiB, a 128 MiB vmalloc reserve and 8 MiB of fixmap), not at 700 MB.  A real kernel reserves
# more above lowmem than the model's round figures, and its page cache does not spread evenly over
# RAM; the "about 700MB" is the author's observation of real Guests, and the model can only
# reproduce its shape.

# %% [markdown]
# ## 5. M:007 — prefaulting
#
# **The claim.**  `get_pfn` is slow (pinning a page of the Launcher's memory), and the mystery
# M:007 suggests grabbing pages in batches: prefaulting.
#
# **The experiment.**  A variant of `demand_page` that, having fixed a fault, also maps up to
# *N − 1* following pages of the same PTE page whose Guest entries are present.  Count faults
# saved, and pages prefaulted but never touched afterwards: each of those pins a host page (and
# sets an Accessed bit in the Guest's PTE) for nothing.

# %%
r5 = ex.run("m007-prefault", quick=True)
print(r5.table())
print()
print("\n".join(r5.summary))
assert r5.findings["sequential_saved"] > 0.3
assert r5.findings["sequential_saved"] >= r5.findings["random_saved"]   # prefetching favours sequential access
r5.figures[0]

# %%
stored("m007-prefault")

# %% [markdown]
# `lguest-book experiment run m007-prefault --out results` regenerates it.
#
# The full-size run saves a smaller share of its faults (22 % with batches of 32) than the quick
# one (40 % with 16).  It is fifteen times longer over the same pages, so first touches — the
# only faults prefaulting can save — are a smaller part of what it faults; its faults per
# thousand accesses, without prefaulting, are a fraction of the quick run's.  The cell below
# checks both from the stored CSV.
#
# **Limits.**  The prefaulting variant is careful in a way a hasty one might not be: it never
# prefaults an entry the Guest has not made present, because `demand_page` kills a Guest for a
# bad entry, and a Host must not kill a Guest for an entry it never used.

# %%
import csv
full = {(row["pattern"], int(row["batch"])): row for row in csv.DictReader(open(RESULTS / "m007-prefault.csv"))}
full_saved = 1 - int(full["sequential", 32]["faults"]) / int(full["sequential", 1]["faults"])
quick_rate = next(r["faults_per_1000"] for r in r5.rows if r["pattern"] == "sequential" and r["batch"] == 1)
print(f"sequential, saved: quick {r5.findings['sequential_saved']:.0%}, full {full_saved:.0%};"
      f" faults per 1000 accesses without prefaulting: quick {quick_rate:.0f}, full {float(full['sequential', 1]['faults_per_1000']):.0f}")
assert full_saved < r5.findings["sequential_saved"] and float(full["sequential", 1]["faults_per_1000"]) < quick_rate / 2

# %% [markdown]
# ## 6. H:490 — shadow paging against nested paging
#
# **The claim.**  All this complexity exists because, for most Guests, the page-table dance
# decides how fast they run; which is why Intel and AMD put support for it into hardware.  That
# support is *nested paging* (EPT, NPT): the CPU walks the Guest's tables and the Host's tables
# itself, so the Guest changes its tables and switches address spaces without exits; the price is
# paid on each TLB miss, when every reference of the Guest's walk must itself be translated — up
# to (n + 1)(m + 1) − 1 memory references for n Guest and m Host levels, instead of n.
#
# **The experiment.**  Run four workloads (switch-heavy, mmap-heavy, a compute loop, random
# access over a large working set) on the model for the shadow exits; model a 64-entry TLB over
# the same accesses for the misses (shadow paging flushes it at every switch, since lguest strips
# Global; nested paging keeps the kernel's global entries); count a nested-paging exit for the
# first touch of each page, which the Host must back.  The cost of one exit, in memory
# references, is the model's parameter: where are the two equal?

# %%
r6 = ex.run("h490-nested", quick=True)
print(r6.table(["workload", "layout", "shadow_exits", "nested_exits", "shadow_tlb_misses", "nested_tlb_misses",
                "refs_per_miss_nested", "crossover_exit_cost"]))
print()
print("\n".join(r6.summary))
assert r6.findings["nested_fewer_exits"]
crossing = {r["workload"]: r["crossover_exit_cost"] for r in r6.rows if r["layout"] == "non-PAE"}
assert crossing["switch-heavy"] < crossing["big-random"]   # busy page tables cross lowest, TLB-hungry highest
assert all(r["refs_per_miss_nested"] == (8 if r["layout"] == "non-PAE" else 15) for r in r6.rows)
r6.figures[0]

# %%
stored("h490-nested")

# %% [markdown]
# `lguest-book experiment run h490-nested --out results` regenerates it.
#
# **What it says.**  Nested paging removes most exits, on every workload; it pays for that with
# walks four or five times as long.  The crossover — the exit cost above which the hardware wins
# — is lowest for workloads busy with their page tables and highest for those that overflow the
# TLB.  Where a real exit falls on this axis is a property of the processor, not of the model
# (Adams & Agesen 2006 measured it for the processors of their day); the figure lets you read the
# answer off for any value.  Real hardware also caches parts of the nested walk (Bhargava et al.
# 2008), which this model does not: that moves every nested line down.

# %% [markdown]
# ## Exercises
#
# 1. *Predict first.*  Round-robin over **four** processes with four slots: how often will LRU
#    miss once the cache is warm?  And random?  Run `ex._eviction_run` with a four-process
#    round-robin `WorkloadSpec` to check.
#
#    <details><summary>Hint</summary>Count the top levels that compete for the slots: the kernel's
#    own (swapper) was cached at boot and is never used again by these workloads.</details>
#
#    <details><summary>Answer</summary>Five top levels compete at first, but swapper is never used
#    again: LRU evicts it on its first miss and then holds all four processes — no more misses.
#    Random keeps evicting processes while swapper sits in a slot, until a draw happens to evict
#    swapper.</details>
#
# 2. In experiment 1, why does a *miss* cost over a thousand calls into page_tables.c even when
#    the kernel part is kept?  Which function, and which loop bound?
#
#    <details><summary>Answer</summary>`flush_user_mappings()` calls `release_pgd()` for every
#    top-level index below `pgd_index(kernel_address)`: 768 of them without PAE, whether or not
#    they are present.</details>
#
# 3. Experiment 4 with `kernel_address = 0x80000000` (a 2G/2G split): where would you expect the
#    knee?  What does `ex.lowmem_limit` say for such a Guest?
#
#    <details><summary>Answer</summary>The knee moves to where the model's lowmem ends:
#    `0xffc00000 − 0x80000000`, less the 128 MiB vmalloc and 8 MiB fixmap reserves, is
#    1908 MiB (checked below), against 884 MiB with the default split.  Below that, a Guest
#    needs no kmap and no full flush at all.</details>
#
# 4. Make the exit cost of experiment 6 a number you believe (from a paper or a measurement you
#    trust), and say which workloads favour which technique at that cost.  What would a
#    paging-structure cache do to the nested line?
#
#    <details><summary>Hint</summary>Express one exit (into the Host and back) in units of one
#    memory reference of a page walk, then read the table: nested paging wins every workload
#    whose `crossover_exit_cost` is below your number.  A paging-structure cache lets the
#    hardware skip most references of the nested walk, so it lowers `refs_per_miss_nested`,
#    moves the nested line down and every crossover to a smaller exit cost: nested paging wins
#    sooner.</details>

# %%
# The number in answer 3, checked.
from lguest_book.guest import Guest
split_2g = Guest(pae=False, seed=1, kernel_address=0x80000000)
assert ex.lowmem_limit(split_2g) >> 20 == 1908 and ex.lowmem_limit(Guest(pae=False, seed=1)) >> 20 == 884

# %% [markdown]
# ## References
#
# - Arpaci-Dusseau & Arpaci-Dusseau, *Operating Systems: Three Easy Pieces*: the chapters on
#   paging, TLBs (for the TLB model) and the virtual machine monitor appendix (shadow tables).
# - L. A. Belady, "A study of replacement algorithms for a virtual-storage computer", IBM
#   Systems Journal 5(2), 1966 (the optimal offline policy of experiment 2).
# - K. Adams and O. Agesen, "A comparison of software and hardware techniques for x86
#   virtualization", ASPLOS 2006 (the costs of exits and of shadow paging).
# - R. Bhargava, B. Serebrin, F. Spadini and S. Manne, "Accelerating two-dimensional page walks
#   for virtualized systems", ASPLOS 2008 (the (n+1)(m+1)−1 walk and its caches).
# - The lguest documentation in the Linux tree (Documentation/virtual/lguest/lguest.txt, v4.7).
