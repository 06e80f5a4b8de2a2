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
# # Chapter 7 — Part (vi): mapping the Switcher
#
# The Switcher is the few pages of code and data that carry the CPU from the Host into the
# Guest and back.  At the moment of the switch, the CPU is already using the Guest's (shadow)
# page tables, so the Switcher must be mapped *inside the Guest's address space*, at the same
# address in every shadow top level, out of the Guest's reach.  This chapter covers how it gets
# there: markers **H:480**, **H:481** and **H:501**.
#
# ## What you will learn
#
# - the Switcher's layout: one shared code page, then two pages for each host CPU;
# - how `allocate_switcher_mapping()` prepares every shadow top level for it;
# - how `map_switcher_in_guest()` maps the *current* host CPU's pages just before the Guest
#   runs, and why `last_host_cpu` lets it usually do nothing;
# - how the Guest is kept away from these pages — and the one place it is not.

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
from lguest_book import page_tables as pt, hypercalls as hc, flaws
import lguest_book.inspect as li
from lguest_book import plots, fmt

def switcher_view(g):
    """The shadow PTEs of the Switcher's pages in the current top level."""
    for i in range(g.host.TOTAL_SWITCHER_PAGES):
        vaddr = g.host.switcher_addr + i * 4096
        spte = li.walk_shadow(g, vaddr)[-1].value
        who = li.owner(g, spte >> 12) if spte else ""
        print(f"  {fmt.vaddr(vaddr)}: {g.x86.describe(spte) if spte else '(not mapped)':28} {who}")

# %% [markdown]
# ## Where the Switcher lives
#
# Our host has two CPUs, so the Switcher is 1 + 2×2 = 5 pages, placed at the start of the last
# top-level slot (`0xFFC00000` without PAE).  The first page is the code, shared by all CPUs.
# Then each CPU has a pair: a page for the Guest's registers, writable, and a page of state —
# the IDT, GDT and TSS the Switcher loads — that the Guest may read but never write.

# %%
g = Guest(pae=False, seed=1, nr_cpus=2)
print(f"switcher_addr = {fmt.vaddr(g.host.switcher_addr)}, {g.host.TOTAL_SWITCHER_PAGES} pages")
assert g.host.TOTAL_SWITCHER_PAGES == 1 + 2 * g.host.nr_cpus == 5 and g.host.switcher_addr == 0xFFC00000
switcher_view(g)

# %%
plots.plot_directory(g)

# %% [markdown]
# The Switcher's top-level slot is the last entry of the picture (index `0x3ff` without PAE).
# It is present in every shadow top level the Guest has run on since boot — here only the
# current one: `allocate_switcher_mapping()` fills it in before a top level is used, and
# `switcher_mapped` records that it did.  Its flags may surprise you: the entry is *user* and
# *writable*, and the picture colours it with that category.  That is not a hole.  The Host
# builds the entry with the most permissive flags a Guest directory entry may carry
# (`allocate_switcher_mapping()` passes `CHECK_GPGD_MASK`, which without PAE is `_PAGE_TABLE`:
# present, writable, user, accessed, dirty), and on x86 a directory entry's rights are only an
# upper bound:
# the CPU grants an access only if *every* level of the walk allows it.  The PTEs below are all
# kernel-only, and all read-only except the Guest's own register page (below).  What keeps the
# Guest *out* is not these bits but the Host's refusals: `demand_page()` never maps an address at
# or above `switcher_addr`, and `guest_set_pte()` kills a Guest that tries to set one.  The
# cell checks each of these statements through `inspect`:

# %%
top = li.shadow_table(g)[g.x86.pgd_index(g.host.switcher_addr)]
assert top.index == 0x3FF and top.present and {"U", "RW"} <= set(top.flags)
for slot, pgdir in enumerate(g.lg.pgdirs):           # present exactly where it was mapped
    if pgdir.pgdir:
        assert li.walk_shadow(g, g.host.switcher_addr, slot)[0].present == pgdir.switcher_mapped, slot
assert sum(p.switcher_mapped for p in g.lg.pgdirs) == 1 and g.lg.pgdirs[li.current_slot(g)].switcher_mapped
regs_pages = {g.host.switcher_addr + 4096 + cpu * 2 * 4096 for cpu in range(g.host.nr_cpus)}
for i in range(g.host.TOTAL_SWITCHER_PAGES):         # every PTE below: kernel-only, and
    va = g.host.switcher_addr + i * 4096             # read-only unless a register page
    spte = li.walk_shadow(g, va)[-1].value
    assert not spte & 0x4 and (not spte & 0x2 or va in regs_pages)
from lguest_book import fmt
print("top-level index", fmt.index(top.index), "flags", "|".join(top.flags))

# %% [markdown]
# After boot, only the code page is mapped.  That is `allocate_switcher_mapping()`'s work: it
# makes sure a shadow PTE page exists for *every* Switcher page (so that later lookups never
# need to allocate), and maps the code page read-only and kernel-only.

# %%
twin("allocate_switcher_mapping")

# %% [markdown]
# ## Just before the Guest runs
#
# The per-CPU pages are mapped at the last moment, by `map_switcher_in_guest()`, because only
# then do we know which host CPU the Guest will run on.  The Guest's *own* register page goes
# where this CPU's first page would be; that is a neat trick: when the Switcher saves the
# Guest's registers "into this CPU's page", they land directly in the Guest's register page,
# and nothing needs copying.

# %%
twin("map_switcher_in_guest")

# %%
twin("remove_switcher_percpu_map")

# %% [markdown]
# The Guest runs (the model's `touch()` calls `map_switcher_in_guest()` whenever the Guest is
# entered, as `run_guest()` would):

# %%
g.touch(g.kernel_address)
print("last_host_cpu =", li.pgdir_cache(g)[li.current_slot(g)]["last_host_cpu"])
switcher_view(g)
def spte(g, page):
    return li.walk_shadow(g, g.host.switcher_addr + page * 4096)[-1].value
assert spte(g, 1) & 0x2 and not spte(g, 2) & 0x2                    # registers writable, state read-only
assert not (spte(g, 1) | spte(g, 2)) & 0x100 and not spte(g, 3) | spte(g, 4)   # no Global; CPU 1's pair absent

# %% [markdown]
# CPU 0's pair is mapped: the Guest's register page writable, the state page read-only.
# Neither carries the *Global* bit — these mappings must vanish from the TLB when the CPU
# switches to another address space.
#
# Now the Host scheduler moves the Launcher's thread to CPU 1:

# %%
g.host.current_cpu = 1
with Tracer() as t:
    g.touch(g.kernel_address)
print("remove_switcher_percpu_map for CPUs", [e.args["i"] for e in t.trace.calls("remove_switcher_percpu_map")])
switcher_view(g)
assert [e.args["i"] for e in t.trace.calls("remove_switcher_percpu_map")] == [0]
assert not spte(g, 1) | spte(g, 2) and spte(g, 3) & 0x2 and spte(g, 4) and not spte(g, 4) & 0x2

# %% [markdown]
# CPU 0's pair was removed and CPU 1's mapped (the cell checks both).  The register page is
# still `('regs', 0)`: the owner names the *Guest's* CPU 0, whose registers now sit in host
# CPU 1's slot, at `0xffc03000`.  Running again on the same CPU costs nothing at
# all — the very first test returns:

# %%
with Tracer() as t:
    pt.map_switcher_in_guest(g.cpu)
print([(e.label, e.outcome) for e in t.trace.decisions("map_switcher_in_guest")])
print("entries written:", len(t.trace.writes()))
assert len(t.trace.writes()) == 0

# %% [markdown]
# `last_host_cpu` is per *slot*.  A slot that was just (re)filled by `new_pgdir()`, or emptied by
# a full flush, gets `-1`: "I don't know which CPU's pages are here", and then every CPU's pair
# is removed before the current one is mapped.

# %% [markdown]
# Step through a Guest's attempt to fault in a Switcher page (a user write to CPU 1's register
# page) — it does not get past the first test:

# %%
from lguest_book import widgets
attack = widgets.FaultStepper(g, g.host.switcher_addr + 0x3000, write=True, user=True)
attack

# %%
checks = [st.text for st in attack.steps if st.kind == "check" and st.func == "demand_page"]
assert len(checks) == 1 and checks[0].endswith("demand-paged? yes")   # refused at the first test
[st.text for st in attack.steps]

# %% [markdown]
# ## Keeping the Guest out
#
# Three walls keep the Guest away from the Switcher: `demand_page()` refuses any fault at or
# above `switcher_addr`; `guest_set_pte()` kills a Guest that tries to set a PTE there; and
# the code and state pages are mapped without the *User* bit and without *RW*.

# %%
print("demand_page on the Switcher:", pt.demand_page(g.cpu, g.host.switcher_addr + 0x3000, 6))
print("a user read of the code page:", g.touch(g.host.switcher_addr, user=True).outcome)
h = Guest(pae=False, seed=1)
h.hypercall(hc.LHCALL_SET_PTE, h.swapper.gpgdir, h.host.switcher_addr + 0x1000, 0x300067)
print("SET_PTE into the Switcher:", h.dead)
assert pt.demand_page(g.cpu, g.host.switcher_addr + 0x3000, 6)[0] is False
assert g.touch(g.host.switcher_addr, user=True).outcome == "guest-fault" and h.dead.startswith("attempt to set pte")

# %% [markdown]
# The gap in the wall is SET_PGD, seen in chapter 4: `guest_set_pgd()` releases the top-level
# entry the Guest names — the Switcher's included — and re-maps the Switcher only in CPU 0's
# *current* slot.  Naming the Switcher's entry of another cached slot leaves that slot marked
# "Switcher mapped" with nothing mapped, and the next switch to it crashes the Host in
# `remove_switcher_percpu_map()`:

# %%
f = next(f for f in flaws.FLAWS if f.key == "switcher_oops")
print(f.explanation)

# %% [markdown]
# ## When there is no memory
#
# `allocate_switcher_mapping()` may need new shadow PTE pages.  If the allocator fails while the
# Guest switches to a new top level, the Guest cannot run safely, and dies.  Here the new top
# level's own page is allocated, and the next allocation — the Switcher's PTE page — fails.
# (This Guest has no stack to pin, so the Switcher is the first thing the new slot needs.)

# %%
h = Guest(pae=False, seed=1, stack_pages=0)
p = h.new_process("p")
h.host.fail_allocations(1, after=1)
with Tracer() as t:
    h.switch_to(p)
print("kill_guest was called with:", t.trace.kills())
print("the Guest died of:         ", h.dead)
assert len(t.trace.kills()) == 2 and h.dead == t.trace.kills()[0]

# %% [markdown]
# Two calls to `kill_guest()`, one death: `find_spte()` reports the failed allocation first, and
# `guest_new_pagetable()` adds its own complaint, which is ignored — only the first reason is
# kept.
#
# ### And `map_switcher_in_guest()` on that dead Guest?
#
# The dead Guest's current slot has `switcher_mapped` false, and `map_switcher_in_guest()` begins
# with a `BUG_ON` of exactly that: were it called, the Host would oops.  It is not called:
# core.c's run loop checks that the Guest is still alive after its hypercalls and before it
# enters the Guest (the model's `hypercalls.enter_guest` does the same), so a Guest killed by a
# failed allocation never reaches the Switcher again; only teardown follows.  The cell shows both
# halves: the loop refuses to enter, and a direct call — what would happen without that check —
# hits the `BUG_ON`.  (If instead the *first* allocation fails, the new top level's own page,
# `new_pgdir()` quietly keeps using the current slot and nobody dies: the last lines.)

# %%
from lguest_book.host import KernelOops
h = Guest(pae=False, seed=1, prandom=[1, 1, 2] + [0] * 50)
p = h.new_process("p")
h.host.fail_allocations(1, after=2)        # the top level and the stack's PTE page succeed
h.switch_to(p)
slot = h.lg.pgdirs[h.cpu.cpu_pgd]
print("dead:", h.dead, "| switcher_mapped:", slot.switcher_mapped)
print("enter_guest:", hc.enter_guest(h.cpu), "| host oopses:", h.host.oopses)
try:
    pt.map_switcher_in_guest(h.cpu, None)
    direct = "returned"
except KernelOops as err:
    direct = f"KernelOops: {err}"
print("called anyway:", direct)
assert h.dead and not slot.switcher_mapped and not hc.enter_guest(h.cpu) and h.host.oopses == []
assert direct.startswith("KernelOops")

h2 = Guest(pae=False, seed=1, prandom=[1, 1, 2] + [0] * 50)
p2 = h2.new_process("p")
before = h2.cpu.cpu_pgd
h2.host.fail_allocations(1)                # the new top level's own page fails
h2.switch_to(p2)
print("first allocation fails: dead:", h2.dead, "| slot kept:", h2.cpu.cpu_pgd == before,
      "| it now shadows p:", h2.lg.pgdirs[h2.cpu.cpu_pgd].gpgdir == p2.gpgdir)
assert h2.dead is None and h2.cpu.cpu_pgd == before and h2.lg.pgdirs[before].gpgdir == p2.gpgdir

# %% [markdown]
# ## Exercises
#
# 1. Under PAE the Switcher sits at `0xFFE00000` (the last 2 MiB).  Boot a PAE Guest with 4 host
#    CPUs and print its Switcher view.  How many pages are there, and why must they fit in
#    2 MiB?
# 2. Move the Guest between CPUs 0 → 1 → 0 → 1 and count calls to
#    `remove_switcher_percpu_map()`.  Then add a switch to a new process between the moves.
#    Explain each count from `last_host_cpu`.
# 3. `map_switcher_in_guest()` takes a `pages` argument it never uses.  Find where the model
#    documents this, and guess why the C kept it.
# 4. Why does the register page need `RW` but the state page must not have it?  What could a
#    Guest do with a writable IDT?
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Answer:* 1 + 2 × 4 = 9 pages from `0xFFE00000`.  They must fit in 2 MiB because the
#    Switcher's mapping is one PTE page of the shadow (under PAE a PTE page covers 2 MiB, the last
#    middle entry), allocated once by `allocate_switcher_mapping()`.
# 2. *Answer:* 2, 1, 1, 1: the first entry after boot finds `last_host_cpu == -1` and clears
#    every CPU's pair (two CPUs here); each move then clears only the pair of the CPU it left.  A
#    switch to a *new* top level starts again at −1, so the next entry clears both pairs again
#    (checked below).
# 3. *Answer:* the docstring of the model's `map_switcher_in_guest` says so.  A guess, not a
#    fact: the caller (x86/core.c) has this CPU's `lguest_pages` at hand and passes it, perhaps
#    from a time the function used it; today it recomputes the addresses from `switcher_addr` and
#    the CPU number.
# 4. *Answer:* the Switcher saves the Guest's registers into the register page on every exit,
#    while the Guest's shadow tables are still loaded, so it must be writable there.  The state
#    page holds the IDT, GDT and TSS the Switcher loads; a Guest that could write the IDT could
#    point the Host's interrupt and trap gates at code of its own, which the CPU would then run
#    with full privilege: the whole machine.
#
# </details>

# %%
# The numbers in answers 1 and 2, checked.
from lguest_book.trace import CallCounter
hp = Guest(pae=True, nr_cpus=4, seed=1)
assert (hp.host.switcher_addr, hp.host.TOTAL_SWITCHER_PAGES) == (0xFFE00000, 9)
h = Guest(pae=False, nr_cpus=2, seed=1)
removals = []
for cpu in (0, 1, 0, 1):
    h.host.current_cpu = cpu
    with CallCounter() as c7:
        h.touch(0xC0000000)
    removals.append(c7.counts["remove_switcher_percpu_map"])
assert removals == [2, 1, 1, 1]
q = h.new_process("q")                        # ... and a new top level in between: back to -1
h.switch_to(q)
with CallCounter() as c7:
    h.touch(0xC0000000)
assert c7.counts["remove_switcher_percpu_map"] == 2

# %% [markdown]
# ### Graded exercise: unmap another CPU's Switcher pages (H:481)
#
# Write `remove_switcher_percpu_map(cpu, i)`.  Host CPU *i*'s pair of Switcher pages starts at
# `switcher_addr + 4096 + i * 2 * 4096`.  For each of the two pages: find its shadow PTE with
# `find_spte(cpu, address, False, 0, 0)`, release what it maps with `release_pte(host, entry)`,
# and store 0 in it with `host.store(pointer, 0)`.  The check moves a Guest between host CPUs.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch7-remove-percpu")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch7-remove-percpu-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import find_spte, release_pte


def remove_switcher_percpu_map(cpu, i):
    ### BEGIN SOLUTION
    host = cpu.lg.host
    first = host.switcher_addr + 4096 + i * 2 * 4096
    for page in (first, first + 4096):
        where = find_spte(cpu, page, False, 0, 0)
        release_pte(host, host.deref(where))
        host.store(where, 0)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch7-remove-percpu-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch7-remove-percpu", remove_switcher_percpu_map)
### BEGIN HIDDEN TESTS
exercises.check("ch7-remove-percpu", remove_switcher_percpu_map, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - The Switcher is 1 + 2 × (host CPUs) pages at the top of every Guest address space.
# - `allocate_switcher_mapping()` builds the PTE pages for all of it and maps the code page;
#   `map_switcher_in_guest()` maps the current CPU's pair just before the Guest runs.
# - `last_host_cpu` makes the common case (same CPU, same slot) free.
# - The Guest cannot fault in, set, or write the Switcher's pages — but SET_PGD can still
#   unmap it in a slot that is not current, and that crashes the Host.
# - A Guest killed by a failed allocation is left with `switcher_mapped` false, which would trip
#   `map_switcher_in_guest()`'s `BUG_ON`; core.c's liveness check means it never runs again.

# %% [markdown]
# ## References
#
# - The lguest documentation in Linux 4.7: `Documentation/virtual/lguest/lguest.txt`, <https://elixir.bootlin.com/linux/v4.7/source/Documentation/virtual/lguest/lguest.txt>, and the narrative of `drivers/lguest/` itself, <https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/>
# - Rusty Russell, "lguest: Implementing the little Linux hypervisor", Proceedings of the Linux Symposium (OLS) 2007
