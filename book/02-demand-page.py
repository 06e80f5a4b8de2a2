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
# # Chapter 2 — Part (i): looking up a fault with `demand_page()`
#
# Most shadow entries the Guest uses are born here.  (Two other places make them: chapter 4's
# shortcut, when the Guest announces a PTE that already has Accessed or Dirty set, and the
# Host's own mappings of the Switcher, chapter 7.)  The CPU runs the Guest on the shadow
# tables, which the Guest has never seen; the first touch of a page whose shadow entry does not
# exist yet faults into the Host, and `demand_page()` (narrative marker **H:330**) decides
# whether the Guest's *own* tables allow the access.  If they do, it builds the missing shadow
# entry and the Guest never learns anything happened.  If they don't, the fault was the
# Guest's and goes back to it (or, for device memory, to the Launcher).  Adams and Agesen
# (2006) name the two kinds: a *hidden* fault is one that only the shadow causes, fixed by the
# monitor out of the Guest's sight; a *true* fault is one the Guest's own tables cause, which
# must be passed back to the Guest as real hardware would have raised it.  (OSTEP's Appendix B
# tells shadow paging in general.)
#
# ## What you will learn
#
# - the exact order of checks `demand_page()` makes, and which ones can kill the Guest;
# - how `find_spte()` (H:331) walks — and grows — the shadow tables;
# - how `gpte_to_spte()` (H:340) and `get_pfn()` (H:350) turn a guest frame into a host frame;
# - why a *clean* page the Guest only read gets a read-only shadow entry even when the Guest
#   made it writable, and why a read of an already-Dirty page gets a writable one (the
#   accessed/dirty write-back);
# - what happens for I/O memory, and every way a hostile Guest can be refused or killed.

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin, decisions, call_tree
from lguest_book.trace import Tracer
from lguest_book import page_tables as pt, plots, widgets
import lguest_book.inspect as li
from lguest_book import fmt

# %% [markdown]
# ## A Guest with one fresh mapping
#
# We boot a non-PAE Guest, start a process, and have the Guest map one user page at the
# classic ELF load address `0x8048000` to its own page `0x300`.  Linux usually sets *Accessed*
# in a PTE as soon as it writes it (the C's comment at H:420 counts on that); here we leave it
# clear, so we can watch lguest set it.

# %%
g = Guest(pae=False, seed=1)
init = g.new_process("init")
g.switch_to(init)
VADDR = 0x08048000
gpte = g.map(VADDR, 0x300, accessed=False)
print(f"guest PTE  {fmt.entry(gpte, g.x86)}  {g.x86.describe(gpte)}")
print(f"shadow PTE {fmt.entry(li.walk_shadow(g, VADDR)[-1].value, g.x86)}  (nothing yet)")
shadow_top = li.walk_shadow(g, VADDR)
print(f"shadow top-level entry {fmt.index(shadow_top[0].index)}: {fmt.entry(shadow_top[0].value, g.x86)}")
assert len(shadow_top) == 1 and not shadow_top[0].present   # no shadow PTE page covers VADDR

# %% [markdown]
# The Guest told the Host about its new PTE with the SET_PTE hypercall, but the Host made no
# shadow entry.  Not because Accessed is clear: in a fresh process no shadow PTE page covers
# this 4 MiB yet (the walk above stops at an empty top-level entry), and SET_PTE's worker
# `__guest_set_pte()` (H:420) never allocates: it looks at the shadow's top-level entry (and,
# under PAE, the middle one), finds it not present, and returns without doing anything.  It would do nothing with Accessed set too (chapter 4's shortcut only fills in an
# entry whose PTE page already exists; exercise 3 below measures it).  So the first touch
# *must* fault.  Here it is: a user-mode read.

# %%
with Tracer() as t:
    access = g.touch(VADDR, write=False, user=True)
assert (access.outcome, access.faults) == ("ok", 1)
access

# %% [markdown]
# One fault, and then the access went through.  Here is the function that fixed it, exactly as
# the package runs it:

# %%
twin("demand_page")

# %% [markdown]
# Read it top to bottom: it is a list of refusals followed by one piece of work.  The trace tells
# us which questions were asked during our fault, and what the answers were (✔ means the
# condition in that `if` was true):

# %%
asked = [(e.label, e.outcome) for e in t.trace.decisions("demand_page")]
assert not any(yes for _, yes in asked[:-1]) and asked[-1] == ("write back the accessed/dirty bits", True)
decisions(t.trace, "demand_page")

# %% [markdown]
# Every test came out "no" except the last one (the cell checks it).  Nine of them are
# refusals (the Switcher, an absent or bad top-level entry, an absent PTE, a write to a
# read-only page, a user touching a kernel page, device memory, a bad PTE, no place for a
# shadow PTE), and none applied.  The others choose a path: the Guest is not running on the
# boot-time linear mapping (two tests), nor PAE; the fault is not a write, and the Guest's PTE
# is not dirty, so the shadow entry will be read-only.  The last test, true, says there are
# real Guest tables to update: the Accessed bit is written back into the Guest's PTE, just after
# the shadow entry was made.  Let us compare the two PTEs now:

# %%
gpte_after = g.guest_pte(VADDR)
spte = li.walk_shadow(g, VADDR)[-1].value
print(f"guest PTE  {fmt.entry(gpte_after, g.x86)}  {g.x86.describe(gpte_after)}")
print(f"shadow PTE {fmt.entry(spte, g.x86)}  {g.x86.describe(spte)}")
assert gpte_after & 0x20 and not gpte_after & 0x40     # Accessed set, Dirty not
assert not spte & 0x2                                    # shadow is read-only!

# %% [markdown]
# Two things to notice.
#
# 1. **The frame changed.** The Guest said "page `0x300`"; the shadow says a host frame.  The
#    Guest's memory is just part of the Launcher's address space, starting at `mem_base`, so
#    guest page `n` is the Launcher's page `mem_base/4096 + n`, and the Host pins that page
#    to learn which real frame backs it.
# 2. **The shadow is read-only**, though the Guest's PTE says `RW`.  That is deliberate: the
#    Guest has not written to the page, so its PTE is not *Dirty*.  If the shadow were writable,
#    the Guest's first write would go straight through and nobody would set the Dirty bit in
#    the Guest's PTE — and the Guest's kernel relies on that bit to know which pages to write
#    back to disk.  So lguest maps it read-only and waits for the write fault.

# %%
with Tracer() as t2:
    access2 = g.touch(VADDR, write=True, user=True)
gpte_after = g.guest_pte(VADDR)
spte = li.walk_shadow(g, VADDR)[-1].value
print(access2)
print(f"guest PTE  {fmt.entry(gpte_after, g.x86)}  {g.x86.describe(gpte_after)}")
print(f"shadow PTE {fmt.entry(spte, g.x86)}  {g.x86.describe(spte)}")
assert access2.faults == 1 and spte & 0x2 and gpte_after & 0x40

# %% [markdown]
# The write faulted once more; this time the Guest's PTE earned its Dirty bit and the shadow
# became writable.  From now on the page costs nothing.  Here are the two walks, one figure
# each: first the Guest's, through its own tables in guest memory, then the CPU's, through the
# shadow:

# %%
plots.plot_walk(g, VADDR, which="guest")

# %%
plots.plot_walk(g, VADDR, which="shadow")

# %% [markdown]
# ## Where the frame comes from: `gpte_to_spte()` and `get_pfn()`
#
# `gpte_to_spte()` keeps the Guest's flags except *Global* and swaps the page number.  Why drop
# Global?  The C's comment at H:340 ([L206](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/page_tables.c#L206))
# gives the reason, which we paraphrase: the Guest sets Global because it believes it is using the
# CPU's global-pages feature (PGE); lguest only told it so, so that the Guest's TLB-flush
# hypercall would say whether it is flushing kernel mappings or only user ones (chapter 6:
# `LHCALL_FLUSH_TLB` with a non-zero argument); lguest itself has no use for the bit, so it
# throws it away.  If the host CPU had PGE on, the bit would be worse than useless: a global TLB
# entry survives a CR3 reload, and the Switcher reloads CR3 on every trip between Guest and Host,
# both of which map kernel addresses.  In fact lguest's host code turns PGE off on every host CPU
# while it is loaded (chapter 6's TLB section tells where), so the CPU ignores the bit anyway;
# dropping it keeps the shadow correct without relying on that.  The Host also leaves Global out
# of the Switcher's per-CPU entries (chapter 7).  `get_pfn()` is the Host's `get_user_pages_fast()` in a thin wrapper:
# it pins the Launcher's page and returns the frame, or `-1UL` if there is no such page.

# %%
twin("gpte_to_spte")

# %%
twin("get_pfn")

# %% [markdown]
# *Predict first:* the Guest maps a kernel page with Global set.  Which flags will the shadow PTE
# have?  Now run it:

# %%
from lguest_book.x86 import _PAGE_GLOBAL
gg = Guest(pae=False, seed=1)
gl_pte = gg.map(0xC1000000, 0x320, user=False, flags=_PAGE_GLOBAL)
gg.touch(0xC1000000)
gl_spte = li.walk_shadow(gg, 0xC1000000)[-1].value
from lguest_book import fmt
print(f"guest PTE  {fmt.entry(gl_pte, gg.x86)}  {gg.x86.describe(gl_pte)}")
print(f"shadow PTE {fmt.entry(gl_spte, gg.x86)}  {gg.x86.describe(gl_spte)}")
assert gl_pte & _PAGE_GLOBAL and not gl_spte & _PAGE_GLOBAL and not gl_spte & 0x2

# %% [markdown]
# Global is gone, as promised.  RW is gone too, for the other reason this chapter gave: the
# touch was a read and the Guest's PTE is clean (not Dirty), so the shadow entry stays read-only
# until the first write.
#
# The rule is about the Guest PTE's Dirty bit, not about the kind of fault: `demand_page()`
# asks `pte_dirty()` of the Guest's PTE *after* a write fault has set Dirty in it.  So a *read*
# of a page whose Guest PTE is already Dirty gets a writable shadow entry at once, and the
# write that follows costs nothing.  (The Guest's SET_PTE makes no shadow entry here, Dirty or
# not: as above, no shadow PTE page covers the region yet.)  *Predict*, then run:

# %%
gd = Guest(pae=False, seed=1)
gd.switch_to(gd.new_process("p"))
dirty_pte = gd.map(VADDR, 0x300, dirty=True)                  # Accessed and Dirty
read = gd.touch(VADDR, write=False, user=True)
dirty_spte = li.walk_shadow(gd, VADDR)[-1].value
then_write = gd.touch(VADDR, write=True, user=True)
print(f"guest PTE  {fmt.entry(dirty_pte, gd.x86)}  {gd.x86.describe(dirty_pte)}")
print(f"read:  {read}")
print(f"shadow PTE {fmt.entry(dirty_spte, gd.x86)}  {gd.x86.describe(dirty_spte)}")
print(f"write: {then_write}")
assert dirty_pte & 0x40 and dirty_pte & 0x20
assert read.faults == 1 and dirty_spte & 0x2                   # a read fault, a WRITABLE shadow
assert then_write.outcome == "ok" and then_write.faults == 0   # the write goes straight through
#
# ### NX under PAE: choose the host
#
# A PAE entry has a 64th bit, NX (no-execute).  Whether a shadow entry may carry it depends on
# the *host* CPU: `pfn_pte()` keeps only the bits the host supports.  The model's default host has
# no NX, so there NX would vanish anyway.  Here we choose a host that supports it
# (`Guest(pae=True, host_nx=True)`) and ask: does the Guest's NX reach the shadow?  *Predict*,
# then run.  `gpte_to_spte()` holds the flags in an `unsigned long` — 32 bits — so NX is cut off
# before `pfn_pte()` ever sees it; the Host's own entry for the per-CPU register page
# (`__PAGE_KERNEL`, chapter 7) keeps NX on the same host:

# %%
from lguest_book.x86 import _PAGE_NX_BIT
gn = Guest(pae=True, seed=1, host_nx=True)
pn = gn.new_process("p")
gn.switch_to(pn)
nx_pte = gn.map(VADDR, 0x300, flags=_PAGE_NX_BIT, accessed=False)
gn.touch(VADDR, user=True)
nx_spte = li.walk_shadow(gn, VADDR)[-1].value
regs_spte = li.walk_shadow(gn, gn.host.switcher_addr + 4096)[-1].value
print(f"guest PTE       {fmt.entry(nx_pte, gn.x86)}  {gn.x86.describe(nx_pte)}")
print(f"shadow PTE      {fmt.entry(nx_spte, gn.x86)}  {gn.x86.describe(nx_spte)}")
print(f"host regs page  {fmt.entry(regs_spte, gn.x86)}  {gn.x86.describe(regs_spte)}")
assert gn.x86.host_nx and nx_pte & _PAGE_NX_BIT and gn.guest_pte(VADDR) & _PAGE_NX_BIT
assert not nx_spte & _PAGE_NX_BIT and regs_spte & _PAGE_NX_BIT

# %% [markdown]
# The Guest's data page becomes executable in the tables the CPU really uses: only the Guest's
# own protection is lost (no Host promise breaks), and the model keeps it as
# `flaws.flaw("nx_dropped")`.  The C referee found the same thing when the model first got it
# wrong (the project README tells the story).

# %%
m = li.compare(g, VADDR, 1)[0]
print(f"guest frame {fmt.frame(m['guest_frame'], g.x86)} -> host frame {fmt.frame(m['host_frame'], g.x86)}")
print(f"the Launcher's page: mem_base/4096 + {fmt.frame(m['guest_frame'], g.x86)} = "
      f"{fmt.frame((g.lg.mem_base >> 12) + m['guest_frame'], g.x86)}")
print("who owns that host frame:", li.owner(g, m["host_frame"]))

# %% [markdown]
# Pinning takes a reference on the host page, so the Host cannot free it while the shadow
# points at it.  `release_pte()` (H:460) gives that reference back whenever a present shadow
# entry is replaced or thrown away — which is why `demand_page()` calls it on the old shadow
# entry before overwriting it.

# %%
twin("release_pte")

# %% [markdown]
# ## Walking the shadow tables: `find_spte()`
#
# `find_spte()` (H:331) returns a *pointer* to the shadow PTE for an address.  In the model a
# pointer is a pair `(frame, index)`: the host page that holds the entry, and the entry's number
# in it.  When a level is missing it allocates a zeroed page — with flags copied from the
# Guest's own entry at that level, so the shadow's upper levels are never more permissive than
# the Guest's.

# %%
twin("find_spte")

# %%
shadow_walk, guest_walk = li.walk_shadow(g, VADDR), li.walk_guest(g, VADDR)
# the shadow's top-level entry took its flags from the Guest's: never more permissive
assert shadow_walk[0].value & 0xFFF == guest_walk[0].value & 0xFFF
[(s.level, s.index, fmt.entry(s.value, g.x86), g.x86.describe(s.value)) for s in shadow_walk]

# %% [markdown]
# ## Step through it yourself
#
# The fault stepper replays one fault decision by decision: the check being made and its
# answer, each entry read or written, and the line of the model running — with both walks
# drawn as they stand after each step, the entry the step read or wrote outlined in red.
# *Next decision* jumps to the next check, *Next change* past the quiet steps to the next one
# that changes a table.  Change the address or the access and press *Reset* to try another
# fault.  Here a fresh page, a user-mode write; the stepper starts at step 0, before the access:

# %%
g3 = Guest(pae=False, seed=1)
p3 = g3.new_process("init")
g3.switch_to(p3)
g3.map(0x0804A000, 0x310, accessed=False)
stepper = widgets.FaultStepper(g3, 0x0804A000, write=True, user=True)
assert stepper.position == 0
stepper

# %% [markdown]
# The same object can be driven from code, which is how this book checks what the widget
# shows.  The steps that changed something:

# %%
for st in stepper.steps:
    if st.kind in ("read", "alloc", "write"):
        print(f"{st.index:2} {st.kind:5} {st.text}")

# %%
k = max(i for i, st in enumerate(stepper.steps) if "shadow entry" in st.text)
assert stepper.marked(k) and "written now" in stepper.picture_html(k)   # the widget outlines that entry
stepper.figure(k)   # the same walks as a picture (the widget above stays at step 0)

# %% [markdown]
# That picture is the model frozen just after the shadow PTE was written and *before* the
# Guest's PTE got its Accessed and Dirty bits back: the stepper replays the fault on a copy of
# the Guest and stops it mid-way.

# %% [markdown]
# ## The same story with PAE
#
# Under PAE there is a middle level, and `demand_page()` checks it too (`check_gpmd()`).  The
# logic is identical; only the number of lookups changes.  The trace's call tree (here of
# `demand_page()` alone, called as the page-fault trap calls it) shows each pointer computed and
# each entry read: `gpgd_addr` → `lgread` of the top-level entry, `gpmd_addr` → `lgread` of the
# middle entry, `gpte_addr` → `lgread` of the PTE, then `find_spte` walking the shadow's three
# levels.

# %%
gp = Guest(pae=True, seed=1)
p = gp.new_process("init")
gp.switch_to(p)
gp.map(VADDR, 0x300, accessed=False)
with Tracer() as tp:
    pae_result = pt.demand_page(gp.cpu, VADDR, 6)   # a user-mode write fault
tree = call_tree(tp.trace, decisions=False)
tree

# %%
names = [c.func for c in tp.trace.calls()]
reads = [r for r in repr(tree).splitlines() if "lgread(" in r]
assert pae_result[0] and [n for n in names if n in ("gpgd_addr", "gpmd_addr", "gpte_addr")] == \
    ["gpgd_addr", "gpmd_addr", "gpte_addr"]
assert [r.split("type_name=")[1] for r in reads] == ["'pgd_t')", "'pmd_t')", "'pte_t')"]
assert "spmd_addr" in names and "find_spte" in names
[e.label for e in tp.trace.decisions("demand_page") if e.outcome]

# %%
[(s.level, s.index, fmt.entry(s.value, gp.x86)) for s in li.walk_shadow(gp, VADDR)]

# %% [markdown]
# The middle level gets its own check, with its own kill: only the flags of an ordinary
# page-table entry are allowed, and the frame must lie in the Guest's memory.

# %%
twin("check_gpmd")

# %% [markdown]
# ## Every way to say no
#
# A fault `demand_page()` refuses is either **the Guest's own fault** (it goes back to the
# Guest, which handles it as it would on real hardware), **I/O memory** (the Launcher
# emulates the device), or **a hostile entry** (the Guest is killed).  Let's trigger each.

# %%
def attempt(vaddr, pte=None, *, write=False, user=True, pae=False):
    """A fresh Guest whose PTE for ``vaddr`` is ``pte`` (None: unmapped); touch it."""
    h = Guest(pae=pae, seed=1)
    proc = h.new_process("p")
    h.switch_to(proc)
    if pte is not None:
        h.set_pte(vaddr, pte)
    a = h.touch(vaddr, write=write, user=user)
    return a.outcome, h.dead

# %%
RO_USER = 0x300 << 12 | 0x25          # present, user, accessed, read-only
cases = {
    "not mapped at all":          attempt(VADDR),
    "write to a read-only page":  attempt(VADDR, RO_USER, write=True),
    "user touches kernel page":   attempt(VADDR, 0x300 << 12 | 0x23),
    "a page of device memory":    attempt(VADDR, (g.lg.pfn_limit + 1) << 12 | 0x27),
    "frame beyond all memory":    attempt(VADDR, (g.lg.device_limit + 1) << 12 | 0x27),
    "PSE bit in a PTE":           attempt(VADDR, 0x300 << 12 | 0xA7),
}
for case, (outcome, dead) in cases.items():
    print(f"{case:28} -> {outcome:12} {dead or ''}")
# the three kinds of refusal, as the prose above sorts them
assert all(cases[c] == ("guest-fault", None) for c in
           ("not mapped at all", "write to a read-only page", "user touches kernel page"))
assert cases["a page of device memory"] == ("mmio", None)
assert cases["frame beyond all memory"] == cases["PSE bit in a PTE"] == ("killed", "bad page table entry")

# %% [markdown]
# A timeline of a small workload makes the proportions visible: most accesses hit, a few
# faults are fixed by the shadow, and one goes back to the Guest.

# %%
g4 = Guest(pae=False, seed=1)
p4 = g4.new_process("p")
g4.switch_to(p4)
for i in range(4):
    g4.map(0x08048000 + i * 4096, 0x300 + i, accessed=False)
accesses = [g4.touch(0x08048000 + (i % 4) * 4096, write=(i % 3 == 0), user=True) for i in range(16)]
accesses.append(g4.touch(0x09000000, user=True))
plots.plot_fault_timeline(accesses)

# %%
# what the sentence above says of this run, checked on the data the timeline draws
from collections import Counter
kinds = Counter((a.outcome, a.faults) for a in accesses)
assert kinds == {("ok", 0): 10, ("ok", 1): 6, ("guest-fault", 1): 1}
kinds

# %% [markdown]
# Two helpers make the last two decisions.  `gpte_in_iomem()` says whether the frame lies in
# the device window between `pfn_limit` and `device_limit` (large pages never count), and
# `check_gpte()` kills the Guest for a large-page bit in a PTE or a frame beyond its memory:

# %%
twin("gpte_in_iomem")

# %%
twin("check_gpte")

# %% [markdown]
# Notice the order matters: the device-memory test comes *before* `check_gpte()`, so a PTE
# pointing between `pfn_limit` and `device_limit` is I/O (the Launcher emulates it), while one
# beyond `device_limit` kills the Guest.  And the permission tests come before both: a user
# read of a kernel-only page full of garbage is simply the Guest's own fault.
#
# ### Bit 7 of a 4 KiB PTE: PAT, not PSE
#
# In a directory entry, bit 7 is PSE (a large page).  In a 4 KiB PTE the same bit means
# something else: it is PAT, the third bit of the index into the CPU's page-attribute table
# (the memory type: write-back, write-combining, uncached...).  The C tests `_PAGE_PSE`, bit 7,
# on PTEs: `check_gpte()` kills the Guest for it, and `gpte_in_iomem()` answers "not I/O" for it.
# So a Guest that selects a memory type through the PAT bit is killed — and a device page mapped
# with that bit misses the I/O exit: instead of the Launcher emulating the access, the Guest
# dies.  Only the Guest that set the bit is hurt; the Host is safe.  *Predict* the three lines,
# then run:

# %%
PAT = 0x80                                   # bit 7: _PAGE_PSE's value, PAT's place in a PTE
io_pte = (g.lg.pfn_limit + 1) << 12 | 0x27   # a device page, present, user, writable
bit7 = {
    "RAM page with bit 7":        attempt(VADDR, 0x300 << 12 | 0x27 | PAT),
    "device page":                attempt(VADDR, io_pte),
    "device page with bit 7":     attempt(VADDR, io_pte | PAT),
}
for case, (outcome, dead) in bit7.items():
    print(f"{case:28} -> {outcome:12} {dead or ''}")
assert bit7["device page"] == ("mmio", None)
assert bit7["device page with bit 7"] == ("killed", "bad page table entry")
assert bit7["RAM page with bit 7"] == ("killed", "bad page table entry")
assert attempt(VADDR, io_pte | PAT, pae=True) == ("killed", "bad page table entry")  # PAE: the same

# %% [markdown]
# `lguest_book.flaws.flaw("pat_is_pse")` keeps this as a demonstration.
#
# Faults on the Switcher's addresses never even get that far: the Switcher lives at the top
# of the address space and is mapped by the Host alone (chapter 7).  `demand_page()` refuses a
# fault there first of all, before reading any Guest table, and kills nobody: the fault goes
# back to the Guest.

# %%
switcher = g.host.switcher_addr
with Tracer() as ts:
    sw = pt.demand_page(g.cpu, switcher, 2)   # a kernel-mode write fault on the Switcher
assert sw == (False, 0) and g.dead is None
assert not ts.trace.calls("lgread") and not ts.trace.writes()   # no Guest table read, nothing changed
sw, g.dead

# %% [markdown]
# ### A bad top-level entry
#
# The Guest's page-directory entry is checked by `check_gpgd()` before anything below it is
# read: any flag outside the short list Linux uses for tables, or a frame outside the Guest's
# memory, and the Guest dies.

# %%
twin("check_gpgd")

# %%
h = Guest(pae=False, seed=1)
proc = h.new_process("p")
h.switch_to(proc)
pgd_index = h.x86.pgd_index(VADDR)
h.write_entry(proc.gpgdir + 4 * pgd_index, 0x300 << 12 | 0x167)   # Global in a directory entry
with Tracer() as tb:
    bad_top = h.touch(VADDR, user=True)
print(bad_top, "—", h.dead)
assert bad_top.outcome == "killed" and h.dead == "bad page directory entry"
assert [r.args["type_name"] for r in tb.trace.calls("lgread")] == ["pgd_t"]   # nothing below it was read

# %% [markdown]
# ### When the Host runs out of memory
#
# `find_spte()` may need a fresh page for a missing shadow level.  If the allocator fails,
# the Guest is killed — lguest has no way to ask it to wait.  The model's host can be told to
# fail its next allocation:

# %%
h = Guest(pae=False, seed=1)
proc = h.new_process("p")
h.switch_to(proc)
h.map(0x50000000, 0x300)
h.host.fail_allocations(1)
oom = h.touch(0x50000000, user=True)
print(oom, "—", h.dead)
assert oom.outcome == "killed" and h.dead == "out of memory allocating pte page"

# %% [markdown]
# ### When the Launcher's page is not there
#
# The last way to die is in `get_pfn()`: `get_user_pages_fast()` cannot pin the Launcher's
# page, and `gpte_to_spte()` kills the Guest with "failed to get page" and the guest page number
# (in decimal: the C's format string says `%lu`).  It fails when the Launcher no longer maps
# the page (the model's `launcher.unmap()` punches such a hole), or when the fault needs a
# writable pin (`get_pfn(..., write)`, true when the Guest PTE is Dirty) of a page the Launcher
# maps read-only (`launcher.protect()`).  A read of the read-only page still works:

# %%
def launcher_trouble(knob, *, write):
    h = Guest(pae=False, seed=1)
    h.switch_to(h.new_process("p"))
    h.map(VADDR, 0x300)
    getattr(h.lg.launcher, knob)(0x300)
    return h.touch(VADDR, write=write, user=True), h.dead

trouble = {
    "page unmapped, read":     launcher_trouble("unmap", write=False),
    "page read-only, read":    launcher_trouble("protect", write=False),
    "page read-only, write":   launcher_trouble("protect", write=True),
}
for case, (acc, dead) in trouble.items():
    print(f"{case:24} -> {acc.outcome:8} {dead or ''}")
assert [(a.outcome, d) for a, d in trouble.values()] == [
    ("killed", "failed to get page 768"), ("ok", None), ("killed", "failed to get page 768")]
assert 768 == 0x300

# %% [markdown]
# ## Exercises
#
# 1. Under what conditions does `demand_page()` return `(False, 0)` *without* killing the
#    Guest?  List them in order, and find the line of the twin for each.
# 2. Change the `attempt` cell so the device-memory case is a *kernel-mode* write to a
#    read-only device page.  Which check refuses it first?  Why is that the right answer for an
#    emulated device?
# 3. The Guest maps a page read-only, reads it, then makes it writable with SET_PTE and writes.
#    How many faults does that take?  Predict, then check with `g.touch()` and `access.faults`.
# 4. Use `li.refcounts(g)` to find the host frame that backs guest page `0x300`, and watch its
#    reference count as the shadow entry is made and (with `g.flush_user()`) thrown away.
#
# For more, `lguest_book.practice.fault(seed=N)` makes a new fault question each seed (run
# `print(p)`, answer, then `p.check(your_answer)`; `p.answer()` when stuck).
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* read the twin's `return (False, 0)` lines and the `kill_guest` calls apart.
#    *Answer:* in order: the address is at or above `switcher_addr`; the Guest's top-level entry
#    is not present; under PAE, its middle entry is not present; the PTE is not present; a write
#    to a PTE without RW; a user access to a PTE without U.  The refusals that also kill are
#    `check_gpgd()`, `check_gpmd()`, `check_gpte()` and a failed allocation in `find_spte()`;
#    the I/O case returns False with a non-zero `iomem`.
# 2. *Hint:* which comes first, the permission tests or `gpte_in_iomem()`?  *Answer:* the
#    read-only test refuses it (`errcode & 2` and no RW) before the device test is reached, so the
#    fault goes back to the Guest.  Right, because the Guest's own tables forbid the write; on real
#    hardware it would fault too, and emulating it would let a Guest write through a mapping it
#    made read-only.
# 3. *Hint:* is there a shadow PTE page for the SET_PTE to update, and does the new PTE have
#    Accessed set?  *Answer:* the read costs 1 fault either way: in a fresh process no shadow PTE
#    page covers the address, `__guest_set_pte()` finds the shadow's top-level entry not present
#    and returns (it never allocates), so the first SET_PTE does nothing, Accessed or not.  The read's fault builds the PTE
#    page and a read-only entry (the PTE is clean).  The second SET_PTE does find that entry, and
#    then the Accessed bit decides: with `g.map()`'s default (Accessed set) the shortcut installs
#    a writable shadow entry at once, so the write costs **none** (and the Dirty bit is never
#    set: the `writable_not_dirty` flaw); with `accessed=False` the shortcut does not fire, the
#    SET_PTE clears the shadow entry, and the write faults once: 1 + 1.  (Checked in the cell
#    below.)
# 4. *Answer:* no host frame before the first touch (the Launcher's memory is demand-zero); 2
#    after the fault (the Launcher's mapping and the shadow PTE); 1 after the flush.  Chapter 6
#    draws the same accounting for a whole Guest.
#
# </details>

# %%
# The numbers in the answers above, checked.
def ex3(accessed):
    h = Guest(pae=False, seed=1)
    q = h.new_process("p")
    h.switch_to(q)
    h.map(VADDR, 0x300, writable=False, accessed=accessed)
    assert not li.walk_shadow(h, VADDR)[0].present      # the first SET_PTE found no PTE page
    first = h.touch(VADDR, user=True).faults
    h.map(VADDR, 0x300, writable=True, accessed=accessed)
    return first, h.touch(VADDR, write=True, user=True).faults
assert ex3(True) == (1, 0) and ex3(False) == (1, 1)

# answer 2: a kernel write to a read-only device page is the Guest's own fault
assert attempt(VADDR, (g.lg.pfn_limit + 1) << 12 | 0x21, write=True, user=False) == ("guest-fault", None)

# answer 4: no frame, then 2 references, then 1
h = Guest(pae=False, seed=1)
q = h.new_process("p")
h.switch_to(q)
h.map(VADDR, 0x300, accessed=False)
assert h.lg.launcher.frames[0x300] == 0 and not [f for f, (_, o) in li.refcounts(h).items() if o == ("guest", 0x300)]
h.touch(VADDR, user=True)
backing = h.lg.launcher.frames[0x300]
assert li.refcounts(h)[backing][0] == 2
h.flush_user()
assert li.refcounts(h)[backing][0] == 1

# %% [markdown]
# ### Graded exercise: make a shadow PTE (H:340)
#
# Write `gpte_to_spte(cpu, gpte, write)`.  Keep the Guest PTE's flags except *Global*; replace
# its guest frame by the host frame behind it.  Guest frame *n* is the Launcher's page
# `mem_base // 4096 + n`; `get_pfn(lg.launcher, page, write)` pins it and returns the host frame,
# or `0xffffffff` on failure (a page the Launcher does not map, or a read-only one when `write`
# is set) — then kill the Guest with `kill_guest(cpu, f"failed to get page {n}")` and keep no
# flags at all.  The C keeps the flags in an `unsigned long`, 32 bits: under PAE the Guest
# PTE's high flag bits (NX, bit 63, and the bits for software) are dropped — chapter 9's
# `nx_dropped`.  Build the entry with `L.pfn_pte(frame, flags)`.  The checks compare what your
# call did too: the Guest's fate and the host's page references.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch2-gpte-to-spte")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch2-gpte-to-spte-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import get_pfn
from lguest_book.lguest import kill_guest
from lguest_book.x86 import _PAGE_GLOBAL


def gpte_to_spte(cpu, gpte, write):
    ### BEGIN SOLUTION
    lg = cpu.lg
    layout = lg.x86
    keep = layout.pte_flags(gpte) & ~_PAGE_GLOBAL & 0xFFFFFFFF  # an unsigned long: 32 bits
    guest_frame = layout.pte_pfn(gpte)
    host_frame = get_pfn(lg.launcher, (lg.mem_base // 4096 + guest_frame) & 0xFFFFFFFF, write)
    if host_frame == 0xFFFFFFFF:
        kill_guest(cpu, f"failed to get page {guest_frame}")
        keep = 0
    return layout.pfn_pte(host_frame, keep)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch2-gpte-to-spte-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch2-gpte-to-spte", gpte_to_spte)
### BEGIN HIDDEN TESTS
exercises.check("ch2-gpte-to-spte", gpte_to_spte, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - `demand_page()` is a wall of refusals followed by one act: make the shadow PTE, write the
#   Accessed/Dirty bits back to the Guest.
# - On a fault, `demand_page()` makes the shadow PTE writable only if the Guest PTE is (now)
#   Dirty: a write fault sets Dirty first and gets a writable entry; a read of a clean page gets
#   a read-only one, so the first write to it costs a second fault, and that is how the Guest's
#   Dirty bit gets set; a read of a page already Dirty gets a writable entry at once.
#   (Chapter 4's shortcut does not keep this rule: an Accessed, writable, clean PTE gets a
#   *writable* shadow entry — the `writable_not_dirty` flaw.)
# - Guest frames become host frames through the Launcher's mapping, pinned by `get_pfn()`;
#   `release_pte()` unpins them.
# - Between `pfn_limit` and `device_limit` lies I/O memory for the Launcher; beyond it, death.
#   A Guest also dies when the Launcher's page cannot be pinned (`get_pfn()` fails), or when
#   the Host cannot allocate a shadow page.
# - Bit 7 of a PTE is PAT, but the C reads it as PSE: a Guest using it is killed, and a device
#   page with it loses its I/O exit (`pat_is_pse`).
# - Global never reaches the shadow; under PAE neither does NX, even on a host that supports it
#   (`nx_dropped`).

# %% [markdown]
# ## References
#
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B "Virtual Machine Monitors" (shadow page tables)
# - Keith Adams and Ole Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization", ASPLOS 2006 — shadow page tables, hidden and true faults, tracing, and why early hardware support did not beat them
# - Intel® 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A, ch. 4 "Paging" (4.7 on page-fault error codes, 4.10 on caching translations)
