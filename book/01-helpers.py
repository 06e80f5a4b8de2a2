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
# # Chapter 1 — The page-table code and its helpers
#
# lguest's narrative reaches the page tables at **H:300**, with a warning that this is the most
# complicated part of the Host, and a map of seven parts.  Before any of them, it introduces a
# handful of helpers (**H:320**) that turn "the entry for this address" into a location — in the
# shadow tables, which the Host owns, or in the Guest's tables, which live in Guest memory.  This
# chapter is about those helpers and the two page-table layouts they hide.
#
# ## What you will learn
#
# - the seven parts of page_tables.c, and which chapter covers each;
# - the 2-level (non-PAE) and 3-level (PAE) layouts: index fields, table sizes, entry sizes;
# - the flag bits of an x86 page-table entry, with their real values;
# - `spgd_addr()`, `spmd_addr()`, `spte_addr()` and `gpgd_addr()`, `gpmd_addr()`, `gpte_addr()`:
#   what each returns and why the shadow ones return *pointers* while the Guest ones return
#   *addresses*.

# %%
from lguest_book.guest import Guest
from lguest_book.notebook import twin
from lguest_book.x86 import NONPAE, PAE
from lguest_book import page_tables as pt, plots, widgets
import lguest_book.inspect as li
from lguest_book import fmt

# %% [markdown]
# ## The seven parts
#
# | part | what happens | chapter |
# |---|---|---|
# | (i) | looking up an entry when the Guest faults | 2 |
# | (ii) | making sure the Guest's kernel stack is mapped | 3 |
# | (iii) | the Guest tells us an entry changed | 4 |
# | (iv) | switching page tables | 5 |
# | (v) | flushing (throwing away) shadow entries | 6 |
# | (vi) | mapping the Switcher when the Guest is about to run | 7 |
# | (vii) | setting the tables up (and tearing them down) | 8 |
#
# Every function of the file has a twin in `lguest_book.page_tables`, in the same order:

# %%
print(len(pt.C_FUNCTIONS), "functions:")
print(", ".join(pt.C_FUNCTIONS))

# %% [markdown]
# ## Reading the C beside the Python
#
# Every twin in this book starts with three lines: the Python's own place, the C function's line
# range in Linux 4.7's `drivers/lguest/page_tables.c` with a link to it on a public source
# browser at tag v4.7, and who wrote the function's tokens (below).  The book never stores the
# kernel's code, so the twins you see here show only the Python.  To put the C beside it, give
# `twin()` a copy of the C you have: `twin("spgd_addr", c=True)` reads it live from the cregit
# rendering kept beside this repository (or from any `page_tables.c` you name with
# `source=PATH` or `LGUEST_BOOK_C_SOURCE=PATH`) and shows the two side by side; without a copy it
# says where to get one.  In a terminal: `lguest-book where spgd_addr --c`.  Try it in a scratch
# cell; this one only shows where things are:

# %%
from lguest_book import csource
for name in ("spgd_addr", "gpte_addr", "demand_page"):
    print(f"{name:12} {csource.where(name)}")
print(csource.url(csource.MARKER_LINES["H:320"]))
assert csource.LINES["demand_page"][0][:2] == (393, 538)

# %% [markdown]
# The line numbers are the real file's (1239 lines at v4.7).  Two functions have one body per
# layout, `gpte_addr()` and `release_pgd()`, and a few exist only under PAE.
#
# ## Who wrote it
#
# The seed this project was built from is the file as cregit renders it: after each function, a
# table of who wrote how many of its tokens, in how many commits.  Those tables are data, and
# they tell the file's history.  Rusty Russell wrote lguest and most of this file; the PAE
# layout came later, and it shows: every body that exists only under PAE holds tokens of Matias
# Zabaljauregui, and in five of the seven he wrote most of them.  The chart draws each function
# (in file order) as a bar of its tokens, split by author:

# %%
people = [p for p, _, _ in csource.OVERALL]
bodies = [(f"{n} [{v}]" if v else n, csource.AUTHORS[n][i], v)
          for a, n, i, v in sorted((a, n, i, v) for n, spans in csource.LINES.items()
                                   for i, (a, _, v) in enumerate(spans))]
palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#D55E00", "#000000"]
fig = plots.new_figure((6.4, 7.5))
ax = fig.add_subplot()
for row, (label, table, _) in enumerate(bodies):
    left = 0
    for person, tokens, _ in table:
        ax.barh(row, tokens, left=left, color=palette[people.index(person)], height=0.8)
        left += tokens
ax.set_yticks(range(len(bodies)), [b[0] for b in bodies], fontsize=7)
ax.invert_yaxis()
ax.set_xlabel("tokens (cregit, Linux 4.7)")
from matplotlib.patches import Patch
ax.legend(handles=[Patch(color=palette[i], label=p) for i, p in enumerate(people[:4])], fontsize=7, frameon=False, loc="lower right")
ax.set_title("page_tables.c: who wrote each function's tokens", fontsize=9)

# what the prose above and below says of this data
pae_only = [(label, table) for label, table, v in bodies if v == "PAE"]
assert len(pae_only) == 7 and all(any(p == "matias zabaljauregui" for p, _, _ in t) for _, t in pae_only)
majority = {label for label, t in pae_only if max(t, key=lambda r: r[1])[0] == "matias zabaljauregui"}
assert len(majority) == 5
total = sum(t for _, t, _ in csource.OVERALL)
assert (total, csource.OVERALL[0][:2]) == (4035, ("rusty russell", 2941))
longest = sorted(bodies, key=lambda b: -sum(t for _, t, _ in b[1]))[:2]
assert [b[0] for b in longest] == ["demand_page", "map_switcher_in_guest"]
fig

# %% [markdown]
# Over the whole file, Rusty Russell wrote 2941 of the 4035 tokens (73 %) and Matias
# Zabaljauregui 970 (24 %), Glauber de Oliveira Costa 115, and five others one to three tokens
# each.  The longest bars are `demand_page()` and `map_switcher_in_guest()`.

# %% [markdown]
# ## A paging refresher
#
# H:300 sends readers who are not at home with page tables elsewhere; here is the minimum this
# book uses (OSTEP ch. 18 and 20 tell it at length; Intel's SDM vol. 3A ch. 4 is the reference).
#
# - The CPU translates every **virtual address** through tables in memory.  CR3 holds the
#   physical address of the top-level table; each level's entry holds the physical frame of the
#   next table, and the last one (the **PTE**) the frame of the page itself.  The low 12 bits of
#   the address are the offset inside the 4 KiB page.
# - Each entry carries **flags**: Present (P), writable (RW), user-accessible (U), Accessed (A)
#   and Dirty (D), which the CPU sets itself on use, and a few more (Global, PSE, PAT; NX under
#   PAE).  An access is allowed only if *every* level allows it.
# - A missing entry or a forbidden access raises a **page fault**: CR2 holds the address, and an
#   error code says whether it was a write (bit 1) and from user mode (bit 2).  Under lguest that
#   fault goes to the Host first (chapter 2).
# - The CPU caches translations in its **TLB**; changing an entry requires a flush (chapter 6).
#
# ## Two layouts
#
# A 32-bit x86 Guest uses one of two page-table formats, chosen when its kernel is built; lguest
# supports both, and so does the model — per Guest.
#
# - **Without PAE**: a virtual address is 10 bits of top-level (PGD) index, 10 bits of PTE
#   index, and a 12-bit offset.  Tables are one 4 KiB page of 1024 entries of 4 bytes; one PGD
#   entry covers 4 MiB.
# - **With PAE**: 2 bits of PDPT index (4 entries), 9 bits of middle-level (PMD) index, 9 bits of
#   PTE index, 12 bits of offset.  Entries are 8 bytes, 512 to a page; one PMD entry covers
#   2 MiB.  The wider entries allow physical addresses above 4 GiB and the NX bit.

# %%
vaddr = 0x0804A123
for L in (NONPAE, PAE):
    print(f"{L.name:8} entries of {L.entry_bytes} bytes; {L.PTRS_PER_PGD} top-level entries of "
          f"{L.PGDIR_SIZE >> 20} MiB; PTE pages of {L.PTRS_PER_PTE}")
    print(f"         {fmt.vaddr(vaddr)} -> {L.split(vaddr)}")

# %% [markdown]
# The same address, split two ways.  Here it is drawn for a running Guest of each kind — the
# shadow walk, level by level:

# %%
g = Guest(pae=False, seed=1)
p = g.new_process("p")
g.switch_to(p)
g.map(0x0804A000, 0x300)
g.touch(vaddr, user=True)
plots.plot_walk(g, vaddr)

# %%
gp = Guest(pae=True, seed=1)
pp = gp.new_process("p")
gp.switch_to(pp)
gp.map(0x0804A000, 0x300)
gp.touch(vaddr, user=True)
plots.plot_walk(gp, vaddr)

# %% [markdown]
# ## The flags
#
# The low 12 bits of an entry are flags (PAE adds more at the top, NX among them).  The ones this
# file cares about:

# %%
for name, bit in plots.FLAG_BITS:
    print(f"{name:4} {bit:#6x}")
from lguest_book.x86 import _PAGE_TABLE
print(f"_PAGE_TABLE, what Linux puts in a directory entry: {_PAGE_TABLE:#x} ({NONPAE.describe(_PAGE_TABLE)})")

# %% [markdown]
# `check_gpgd()` (chapter 2) accepts a Guest top-level entry only if its flags are within
# `CHECK_GPGD_MASK`: `_PAGE_TABLE` (0x67) without PAE, and only `_PAGE_PRESENT` with PAE, where
# the four PDPT entries have almost no flags at all.

# %%
print(f"non-PAE CHECK_GPGD_MASK = {NONPAE.CHECK_GPGD_MASK:#x}, PAE CHECK_GPGD_MASK = {PAE.CHECK_GPGD_MASK:#x}")

# %% [markdown]
# ## The shadow helpers return pointers
#
# `spgd_addr(cpu, i, vaddr)` finds the shadow top-level entry for `vaddr` in cached top level
# `i`.  The C returns a `pgd_t *`; the model returns the pair *(host frame, index)* — which is
# what a pointer into a page-table page is.  Reading through it is `host.deref(ptr)` and writing
# `host.store(ptr, value)`.  Keeping pointers explicit lets the model do what the C does when an
# index runs one past the end of a page (chapter 4 has a flaw that depends on exactly that).

# %%
twin("spgd_addr")

# %%
ptr = pt.spgd_addr(g.cpu, g.cpu.cpu_pgd, vaddr)
print("pointer:", fmt.ptr(*ptr, g.x86), " value:", fmt.entry(g.host.deref(ptr), g.x86))

# %%
twin("spte_addr")

# %% [markdown]
# `spte_addr()` takes the top-level *entry* (not a pointer to it), follows it to the PTE page and
# returns a pointer into that page.  It insists that the entry be present: a `BUG_ON`.  Callers
# always check first, so a `BUG_ON` firing means a bug in the Host — in the model it raises
# `KernelOops`.  Let's make it fire on purpose:

# %%
from lguest_book.host import KernelOops
try:
    pt.spte_addr(g.cpu, 0, vaddr)
except KernelOops as oops:
    print("KernelOops:", oops)

# %%
twin("spmd_addr")

# %%
ptr = pt.spmd_addr(gp.cpu, gp.host.deref(pt.spgd_addr(gp.cpu, gp.cpu.cpu_pgd, vaddr)), vaddr)
print("PAE mid-level pointer:", fmt.ptr(*ptr, gp.x86))
try:
    pt.spmd_addr(g.cpu, 0x1067, vaddr)
except ValueError as err:
    print("on a non-PAE Guest:", err)

# %% [markdown]
# ## The Guest helpers return guest-physical addresses
#
# The Guest's tables are in Guest memory, which the Host reads with `lgread()` — a bounds-checked
# copy from the Launcher's mapping.  So `gpgd_addr()`, `gpmd_addr()` and `gpte_addr()` compute
# *guest-physical addresses*, not pointers.  `gpgd_addr()` starts from the Guest top level the
# current slot shadows:

# %%
twin("gpgd_addr")

# %%
twin("gpmd_addr")

# %% [markdown]
# Under PAE the walk has one more step: `gpmd_addr()` follows the Guest's PDPT entry to its
# middle-level page.  It takes no `cpu` — only the entry — and, like the others, insists the
# entry is present.

# %%
twin("gpte_addr")

# %%
top = pt.gpgd_addr(g.cpu, vaddr)
gpgd = g.read_entry(top)
pte_at = pt.gpte_addr(g.cpu, gpgd, vaddr)
print(f"Guest PGD entry at {fmt.paddr(top, g.x86)} = {fmt.entry(gpgd, g.x86)}")
print(f"Guest PTE at {fmt.paddr(pte_at, g.x86)} = {fmt.entry(g.read_entry(pte_at), g.x86)}  ({g.x86.describe(g.read_entry(pte_at))})")
assert [s.where for s in li.walk_guest(g, vaddr)] == [top, pte_at]

# %% [markdown]
# The C has two versions of `gpte_addr()`, one per layout (with PAE, the entry passed is the
# middle-level one).  The model has one function with the `#ifdef` turned into an `if`.

# %% [markdown]
# ## Explore
#
# The table explorer shows any table of any cached top level, shadow or Guest.  Pick the PTE
# level and the address `0x804a000` to see the entry we just used on both sides.  (The
# explorer's *slot* is the cached top level, one of four the Host keeps: chapter 5.)

# %%
explorer = widgets.TableExplorer(g)
explorer.select(level="pte", vaddr=vaddr)
explorer

# %%
print(explorer.detail)
guest_side = widgets.TableExplorer(g, which="guest")   # a second explorer: the one above stays as shown
guest_side.select(level="pte", vaddr=vaddr)
print(guest_side.detail)
assert "flags P|U|A" in explorer.detail and "flags P|RW|U|A" in guest_side.detail

# %% [markdown]
# The two entries differ twice.  The frame: guest frame `0x300` on the Guest's side, the host
# frame behind it on the shadow's.  And the flags: the Guest's PTE is writable (RW), the
# shadow's is not, because our one access was a *read*; chapter 2 explains why lguest keeps a
# shadow entry read-only until the Guest's first write.
#
# ## Hostile input
#
# These helpers do no checking of Guest data themselves: a Guest top level anywhere in the
# address space gives a Guest address anywhere, and it is `lgread()`'s bounds check that catches
# it (chapter 5 shows a Guest killed that way).  *Users* of the model who pass nonsense get an
# error naming the argument:

# %%
for call in (lambda: pt.gpgd_addr(g.cpu, -4), lambda: pt.spgd_addr(g.cpu, 9, 0), lambda: pt.gpte_addr("cpu", 0, 0)):
    try:
        call()
    except (ValueError, TypeError) as err:
        print(type(err).__name__, "-", err)

# %% [markdown]
# ## Exercises
#
# 1. Split `0xC0123456` under both layouts by hand, then check with `L.split()`.
# 2. Under PAE, which PDPT entry covers the kernel at `0xC0000000`, and which PMD entry of it
#    holds the Switcher at `0xFFE00000` (a PAE Guest's `switcher_addr`)?
# 3. Compute the guest-physical address `gpte_addr()` returns for `0x08048000` from the Guest's
#    PGD entry printed above, without calling it.  Then call it to check.
# 4. Why can `spgd_addr()` not simply return the entry's *value* instead of a pointer?  Which
#    callers write through it?
#
# For more, `lguest_book.practice.walk(seed=N)` makes a new walk question each seed (`print(p)`,
# answer, then `p.check(your_answer)`; `p.answer()` when stuck).
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Answer:* without PAE, top-level index `0x300` (768), PTE index `0x123`, offset `0x456`;
#    with PAE, PDPT index 3, PMD index 0, PTE index `0x123`, offset `0x456`.
# 2. *Answer:* PDPT entry 3 covers `0xC0000000`–`0xFFFFFFFF`, so both the kernel and the
#    Switcher; the Switcher is in PMD entry `0x1ff` (511), the last 2 MiB.
# 3. *Hint:* `gpte_addr()` is the frame of the Guest's top-level entry times 4096, plus the PTE
#    index times the entry size.  *Answer:* `(pgd_entry >> 12 << 12) + 0x48 * 4` for `0x08048000`
#    without PAE (PTE index `0x48`).
# 4. *Answer:* the callers need to *change* the entry: `find_spte()` installs a freshly allocated
#    table in it (`set_pgd`), `release_pgd()` clears it, and `guest_set_pgd()` and
#    `flush_user_mappings()` hand it to `release_pgd()`.  A value would be a copy.
#
# </details>

# %%
# The numbers in answers 1, 2 and 3, checked.
assert NONPAE.split(0xC0123456) == {"pgd": 0x300, "pte": 0x123, "offset": 0x456}
assert PAE.split(0xC0123456) == {"pgd": 3, "pmd": 0, "pte": 0x123, "offset": 0x456}
assert PAE.pgd_index(0xC0000000) == PAE.pgd_index(0xFFE00000) == 3 and PAE.pmd_index(0xFFE00000) == 0x1FF
assert gp.host.switcher_addr == 0xFFE00000
assert NONPAE.pte_index(0x08048000) == 0x48
assert pt.gpte_addr(g.cpu, gpgd, 0x08048000) == (gpgd >> 12 << 12) + 0x48 * 4   # answer 3

# %% [markdown]
# ### Graded exercise: where is the Guest's PTE? (H:320)
#
# Write `gpte_addr(cpu, gentry, vaddr)`: the guest-physical address of the Guest's PTE for
# `vaddr`, given the Guest's directory entry above it (the top-level entry without PAE, the
# middle-level one with PAE).  `cpu.lg.x86` is the layout: `L.pae`, `L.pte_index(vaddr)`,
# `L.entry_bytes`, `L.pgd_pfn(e)`, `L.pmd_pfn(e)`.  The address is an `unsigned long`, 32 bits:
# under PAE, bits of the entry above bit 31 (NX, say) are no part of it.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch1-gpte-addr")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch1-gpte-addr-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gpte_addr(cpu, gentry, vaddr):
    ### BEGIN SOLUTION
    layout = cpu.lg.x86
    table_frame = layout.pmd_pfn(gentry) if layout.pae else layout.pgd_pfn(gentry)
    slot = layout.pte_index(vaddr)
    return (table_frame * 4096 + slot * layout.entry_bytes) & 0xFFFFFFFF
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch1-gpte-addr-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch1-gpte-addr", gpte_addr)
### BEGIN HIDDEN TESTS
exercises.check("ch1-gpte-addr", gpte_addr, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - Seven parts, one chapter each; 39 functions (38 of page_tables.c, plus `pin_stack_pages`).
# - Non-PAE: 10 | 10 | 12 bits, 4-byte entries, 4 MiB per top-level entry.  PAE: 2 | 9 | 9 | 12,
#   8-byte entries, 2 MiB per middle-level entry.
# - Shadow helpers return pointers into Host pages; Guest helpers return guest-physical
#   addresses, to be read through `lgread()`'s bounds check.

# %% [markdown]
# ## References
#
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, ch. 18 "Paging: Introduction" and ch. 20 "Paging: Smaller Tables"
# - Intel® 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A, ch. 4 "Paging" (4.7 on page-fault error codes, 4.10 on caching translations)
# - cregit, token-level authorship of the Linux sources, <https://cregit.linuxsources.org/> (this project's seed is its page for `drivers/lguest/page_tables.c` at 4.7)
