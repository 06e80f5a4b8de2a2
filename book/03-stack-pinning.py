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
# # Chapter 3 — Part (ii): making sure the Guest's stack is mapped
#
# Chapter 2 showed that lguest is lazy: a shadow entry appears only when the Guest faults on
# it.  This chapter is about the one place where laziness would be fatal.  When the CPU
# delivers a trap or an interrupt straight to the Guest kernel, the *hardware* pushes the
# return frame onto the Guest's kernel stack.  If that push faulted, the CPU would be in the
# middle of delivering one exception and raise another — a double fault, taken by the Host.
# So lguest makes sure, ahead of time, that the stack pages are present **and writable** in the
# shadow table the Guest is running on.  The narrative marker is **H:360**.
#
# ## What you will learn
#
# - what `page_writable()` asks of the shadow tables and why it is enough;
# - how `pin_page()` reuses `demand_page()` by pretending to be a write fault;
# - when `pin_stack_pages()` runs: the SET_STACK hypercall, a blank top level, and a flush
#   of everything;
# - what a Guest that lies about its stack gets — including a flaw in the code around it.

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
from lguest_book import page_tables as pt, hypercalls as hc, flaws, plots, widgets
import lguest_book.inspect as li
from lguest_book import fmt

# %% [markdown]
# ## The stack of a freshly booted Guest
#
# The model's Guest kernel ends its boot with the SET_STACK hypercall: "my kernel stack is the
# two pages below `esp1`".  (`esp1` is the stack pointer for privilege level 1, where lguest
# runs the Guest kernel.)  The Host records it and pins those pages at once.

# %%
g = Guest(pae=False, seed=1)
print(f"esp1 = {fmt.vaddr(g.cpu.esp1)}, stack_pages = {g.lg.stack_pages}")
stack = [g.cpu.esp1 - 1 - i * 4096 for i in range(g.lg.stack_pages)]
for vaddr in stack:
    print(f"{fmt.vaddr(vaddr)}: writable in the shadow? {pt.page_writable(g.cpu, vaddr)}")

# %%
plots.plot_walk(g, stack[0])

# %% [markdown]
# `esp1` is the *top* of the stack — one past its last byte — so the pages to pin contain
# `esp1 - 1`, `esp1 - 1 - 4096`, and so on.  Here is the loop (it comes from
# interrupts_and_traps.c, not page_tables.c, but it is the reason H:360 exists):

# %%
twin("pin_stack_pages")

# %% [markdown]
# The model stops after 2<sup>20</sup> pages, where the C would go on for up to 2<sup>32</sup>;
# we will see at the end of the chapter why that matters.  Now the two functions of
# page_tables.c:

# %%
twin("page_writable")

# %%
twin("pin_page")

# %% [markdown]
# `page_writable()` only looks (`find_spte(..., allocate=False)`), and asks for two flags in the
# shadow PTE: *present* and *writable*.  If either is missing, `pin_page()` calls
# `demand_page()` with error code 2 — "a write, from the kernel" — exactly as if the Guest had
# written to the page.  That one trick buys all of chapter 2's checks for free: the Guest's own
# PTE must be present and writable, its frame must lie in its memory, and the Dirty bit is set
# in the Guest's PTE because the shadow is about to become writable.
#
# This book's Guest kernel maps its memory already Accessed and Dirty, so its stack cannot show
# that last step.  A kernel page whose Guest PTE has neither bit can: pin it by hand.

# %%
clean = g.kernel_address + 0x6000
where = li.walk_guest(g, clean)[-1].where
g.write_entry(where, g.read_entry(where) & ~0x60)  # clear Accessed and Dirty in the Guest's PTE
before = g.guest_pte(clean)
pt.pin_page(g.cpu, clean)
after = g.guest_pte(clean)
print(f"Guest PTE for {fmt.vaddr(clean)}: {fmt.entry(before, pae=False)} -> {fmt.entry(after, pae=False)}; "
      f"writable in the shadow now? {pt.page_writable(g.cpu, clean)}")
assert not before & 0x60 and after == before | 0x60 and pt.page_writable(g.cpu, clean)

# %% [markdown]
# A kernel page that is not on the stack is still lazily mapped:

# %%
other = g.kernel_address + 0x5000
print(f"{fmt.vaddr(other)} writable in the shadow? {pt.page_writable(g.cpu, other)}")
a = g.touch(other, write=True)
print(a.outcome, "after", a.faults, "fault(s); now writable?", pt.page_writable(g.cpu, other))

# %% [markdown]
# ## When pinning happens again
#
# Pinned pages can be thrown away like any others; the trick is to pin again every time that
# can happen (the C misses one such time, shown at the end of this section).  Flushing
# *everything* (chapter 6) is one of them:

# %%
with Tracer() as t:
    g.flush_all()
print(f"pin_page was called {len(t.trace.calls('pin_page'))} times during the flush")
print("stack still writable:", [pt.page_writable(g.cpu, v) for v in stack])
print("the other kernel page:", pt.page_writable(g.cpu, other))
assert len(t.trace.calls("pin_page")) == 2 and all(pt.page_writable(g.cpu, v) for v in stack)
assert not pt.page_writable(g.cpu, other)

# %% [markdown]
# The other way is a switch to a Guest top level that has never been shadowed.  `new_pgdir()`
# hands back a blank page and says so; `guest_new_pagetable()` then pins the stack into it
# (chapter 5 has the details):

# %%
p = g.new_process("shell")
with Tracer() as t:
    g.switch_to(p)
print("slot now:", li.current_slot(g))
print("pin_page calls:", len(t.trace.calls("pin_page")))
print("stack writable in the new top level:", [pt.page_writable(g.cpu, v) for v in stack])
assert len(t.trace.calls("pin_page")) == 2 and all(pt.page_writable(g.cpu, v) for v in stack)

# %% [markdown]
# ### When nothing pins it again
#
# Two more events can touch the stack's shadow entries, and neither calls `pin_stack_pages()`.
#
# **A reused slot.**  When `new_pgdir()` evicts a cached top level instead of allocating a blank
# one, it flushes only the user part (below `kernel_address`) and does not set `blank_pgdir`, so
# nothing is re-pinned.  The stack survives anyway — it is a kernel address, and the reused
# slot's kernel part is kept, on the assumption that every address space shares it (chapter 5).
#
# **SET_PGD on the stack's own top-level entry.**  `guest_set_pgd()` releases that entry — with
# every shadow PTE under it, the stack's included — re-creates the Switcher mapping, and stops.
# The stack is no longer mapped, and stays unmapped until something re-pins it (a full flush, a
# blank top level, a SET_STACK).  *Predict* what `page_writable()` says before and after; then
# run:

# %%
h = Guest(pae=False, seed=1, prandom=[1, 1, 2, 1, 1, 1, 1, 1])
h_stack = [h.cpu.esp1 - 1 - i * 4096 for i in range(h.stack_pages)]
q1, q2 = h.new_process("q1"), h.new_process("q2")
h.switch_to(q1)                               # a blank slot: pinned
with Tracer() as t:
    h.switch_to(q2)                           # q2 evicts q1's slot: reused, not blank
reused = [pt.page_writable(h.cpu, v) for v in h_stack]
print("reused slot:", li.current_slot(h), "pin_page calls:", len(t.trace.calls("pin_page")), "stack writable:", reused)
assert len(t.trace.calls("pin_page")) == 0 and all(reused)

h.hypercall(hc.LHCALL_SET_PGD, q2.gpgdir, h.x86.pgd_index(h_stack[0]))
after_pgd = [pt.page_writable(h.cpu, v) for v in h_stack]
print("after SET_PGD on the stack's entry:", after_pgd, "— Guest alive:", h.dead is None)
assert not any(after_pgd) and h.dead is None
h.touch(0xC0000000)                           # an ordinary kernel access faults its own page back,
assert not any(pt.page_writable(h.cpu, v) for v in h_stack)   # but not the stack
h.flush_all()                                 # a full flush re-pins it
assert all(pt.page_writable(h.cpu, v) for v in h_stack)

# %% [markdown]
# What an unmapped stack costs is decided outside page_tables.c: the comment at H:360 says direct
# traps into the Guest need the stack mapped, because the CPU itself pushes onto it when it
# delivers such a trap, with no Host code in between.  The model has no direct traps, so it
# shows only the state: after that SET_PGD, the promise of H:360 no longer holds, and the Guest
# (whose own SET_PGD it was) is the one at risk.
#
# Browse the shadow PTE page that holds the stack's entries (pick another slot or level to
# compare; the list shows only present entries):

# %%
explorer = widgets.TableExplorer(g)
explorer.select(level="pte", vaddr=stack[0])
explorer

# %%
print(explorer.detail)

# %% [markdown]
# ## A Guest that lies about its stack
#
# SET_STACK takes three arguments: the stack segment, `esp1`, and the number of pages.
# `guest_set_stack()` insists on a segment with privilege level 1 and at most two pages,
# then pins.  A stack the Guest has not mapped, or mapped read-only, cannot be pinned — and
# a Guest without a usable stack cannot safely run, so `pin_page()` kills it.

# %%
def set_stack(seg, esp, pages):
    h = Guest(pae=False, seed=1)
    h.hypercall(hc.LHCALL_SET_STACK, seg, esp, pages)
    return h.dead

print("unmapped stack:     ", set_stack(0x69, 0x10000000, 2))
print("ring-0 segment:     ", set_stack(0x68, 0xC0208000, 2))
print("three pages:        ", set_stack(0x69, 0xC0208000, 3))
assert set_stack(0x69, 0x10000000, 2) == "bad stack page 0xfffffff"   # esp1 - 1, the top stack byte

# %% [markdown]
# The messages are the C's own, numbers included, which is why the first one names
# `0xfffffff`: the page that holds `esp1 - 1`, the top byte of the stack the Guest claimed,
# which it never mapped.  (The good segment, `0x69`, is the Guest kernel's data segment
# selector `0x68` with privilege level 1 in its low two bits; the refused one is `0x68` itself,
# level 0, which the message prints in decimal: 104.)
#
# The last line deserves a second look.  `guest_set_stack()` kills the Guest for asking for
# three pages... and then records the number and pins anyway, because nothing returns after
# `kill_guest()`.  With three pages that is harmless.  With 2<sup>32</sup>−1 it is a loop the
# Host CPU cannot leave for a very long time.  The project's flaw catalogue has it; its
# demonstration asks for 64 pages (enough to show the loop running on, small enough to run),
# and reports how long the C's loop could be:

# %%
flaw = next(f for f in flaws.FLAWS if f.key == "stack_pages")
print(flaw.title, "—", flaw.where)
ev = flaw.demo(False)
assert ev["killed"] == "bad stack pages 64" and ev["pages_pinned_anyway"] == ev["pages_asked"] == 64
assert ev["worst_case_iterations"] == 2**32 - 1 and ev["model_stops_after"] == 2**20
ev

# %% [markdown]
# ## Exercises
#
# 1. `page_writable()` refuses addresses at or above the Switcher before walking.  What would
#    go wrong if a Guest put its stack in the Switcher's slot and the check were missing?
# 2. Set up a Guest whose stack PTE is present but read-only, then call SET_STACK.  Which line of
#    `demand_page()` refuses the pretend write fault, and what does the Guest die of?
# 3. Why is error code 2 (kernel write) the right one to pass, and not 6 (user write)?  Try 6 on
#    a kernel stack page and explain the outcome.
# 4. Under PAE, `page_writable()` keeps only the low 32 bits of the entry's flags.  Which flag
#    does that drop, and why does it not matter here?
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* what would `find_spte()` find there?  *Answer:* the Switcher's own shadow PTEs.  For
#    this CPU's register page, present and writable, `page_writable()` would say yes, `pin_page()`
#    would not complain, and the Guest would have "pinned" a stack on a Host page that the
#    Switcher fills with saved registers.  With the check, the answer is no, `demand_page()`
#    refuses the address too, and the Guest dies of `bad stack page`.
# 2. *Answer:* the read-only test (`errcode & 2` and no RW in the Guest's PTE) returns false, and
#    `pin_page()` kills the Guest: `bad stack page 0xc0207fff` for this book's Guest (the top
#    page of its stack; checked below, with the full flush that re-pins).
# 3. *Answer:* the stack belongs to the Guest *kernel*, which runs outside user mode (lguest
#    runs it in ring 1, which paging treats as supervisor), so its PTE rightly lacks U.  With 6,
#    `demand_page()` would refuse a user access to a kernel-only page, and every Guest would be
#    killed by its own correct stack (checked below: `demand_page(..., 6)` declines it).
# 4. *Answer:* NX (bit 63) and the other high bits; the function tests only Present and RW, both
#    in the low 12 bits (checked below: a shadow PTE given NX by hand is still writable).
#
# </details>

# %%
# Answers 1 to 4, checked.
h = Guest(pae=False, seed=1)
top_page = h.cpu.esp1 - 1
where = li.walk_guest(h, top_page)[-1].where
h.write_entry(where, h.read_entry(where) & ~0x2)     # the stack's PTE made read-only
h.flush_all()                                        # the full flush re-pins: and kills
assert h.dead == "bad stack page 0xc0207fff"
h = Guest(pae=False, seed=1)
h.flush_user()
assert pt.demand_page(h.cpu, h.cpu.esp1 - 1, 6) == (False, 0) and h.dead is None
# answer 1, with the check in place: a stack in the Switcher's per-CPU pages kills the Guest
assert set_stack(0x69, g.host.switcher_addr + 0x2000, 1) == "bad stack page 0xffc01fff"
# answer 4: under PAE, NX set by hand in a pinned stack PTE changes nothing
k = Guest(pae=True, seed=1)
pinned = pt.find_spte(k.cpu, k.cpu.esp1 - 1, False, 0, 0)
k.host.store(pinned, k.host.deref(pinned) | 1 << 63)
assert k.host.deref(pinned) >> 63 == 1 and pt.page_writable(k.cpu, k.cpu.esp1 - 1)

# %% [markdown]
# ### Graded exercise: is this stack page writable? (H:360)
#
# Write `page_writable(cpu, vaddr)`: `True` only when the current shadow table maps `vaddr`
# present **and** writable (both bits: a shadow PTE can have RW without Present); it is the
# shadow that counts, not the Guest's own PTE.  Nothing at or above `cpu.lg.host.switcher_addr`
# counts.  Use `find_spte(cpu, vaddr, False, 0, 0)` (it returns `None` when there is no shadow
# PTE, and allocates nothing: the checks count the host's pages) and
# `cpu.lg.host.deref(pointer)` to read the entry.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch3-page-writable")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch3-page-writable-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import find_spte


def page_writable(cpu, vaddr):
    ### BEGIN SOLUTION
    if vaddr >= cpu.lg.host.switcher_addr:
        return False
    where = find_spte(cpu, vaddr, False, 0, 0)
    if where is None:
        return False
    low_flags = cpu.lg.host.deref(where) & 0xFFF
    return low_flags & 0x3 == 0x3
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch3-page-writable-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch3-page-writable", page_writable)
### BEGIN HIDDEN TESTS
exercises.check("ch3-page-writable", page_writable, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - The Guest's kernel stack must never fault: the hardware writes to it while delivering a trap.
# - `page_writable()` checks *present and writable* in the current shadow table;
#   `pin_page()` fixes a miss by faking a kernel write fault through `demand_page()`.
# - `pin_stack_pages()` runs on SET_STACK, on a switch to a blank top level, and after a full
#   flush — the moments the C expects the pinned pages to have disappeared (but not after a
#   SET_PGD on the stack's entry: see *When nothing pins it again*).
# - A bad stack kills the Guest; a too-large one kills it *and* keeps the Host busy — a real
#   flaw, kept in the model and shown here.
# - A reused slot keeps the stack (its kernel part survives); a SET_PGD on the stack's own
#   top-level entry unmaps it, and nothing pins it again until the next full flush, blank top
#   level or SET_STACK.

# %% [markdown]
# ## References
#
# - The lguest documentation in Linux 4.7: `Documentation/virtual/lguest/lguest.txt`, <https://elixir.bootlin.com/linux/v4.7/source/Documentation/virtual/lguest/lguest.txt>, and the narrative of `drivers/lguest/` itself, <https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/>
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B "Virtual Machine Monitors"
