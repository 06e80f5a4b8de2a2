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
# # Chapter 0 — The setting, and how to use this book
#
# This is a book about roughly a thousand lines of C: `drivers/lguest/page_tables.c` from
# Linux 4.7, the part of the lguest hypervisor that keeps **shadow page tables**.  lguest was
# written to be read — its source carries a numbered narrative (H:300, H:330, ...) that walks
# through the code in the order one would explain it — and this book follows that narrative.
# What it adds is that every claim can be *run*: the package `lguest_book` is a faithful,
# executable model of the file, one Python function for each C function, with the same name,
# the same checks in the same order, and the same outcomes — quirks and flaws included.
#
# ## What you will learn
#
# - how to read this book: alone in JupyterLab, in a course, or as a test suite;
# - what a hypervisor, a Guest, the Launcher and the Switcher are, in lguest's terms;
# - why a Guest's page tables cannot be given to the CPU as they are, and what a *shadow* page
#   table is instead;
# - your first fault, fixed by the Host, seen from both sides;
# - the four addresses of one access (Guest-virtual, Guest-physical, Launcher-virtual, host
#   frame), and what sits at the top of a Guest's address space.

# %% [markdown]
# ## How to use this book
#
# **Studying alone.**  Open the book with `lguest-book open` (or `jupyter lab book/`).  Every
# chapter has been run already, so you can read it with its results before running anything.
# Then run it (*Run → Run All Cells*), change the numbers, press the widgets' buttons.  Each
# chapter ends with exercises; the classroom edition's graded ones check themselves when you
# run the cell below your answer.
#
# **In a course.**  The graded exercises carry nbgrader's markers: an instructor generates the
# student version and grades submissions with nbgrader's own commands; `lguest-book classroom`
# prepares a course folder.  The README's classroom section has the three commands.
#
# **As a test suite.**  `python -m pytest` re-runs every chapter in a fresh kernel and compares
# every output with the one stored here (that is how the book is kept true), along with the
# model's own tests and two referees that compare the model with the original C compiled with
# gcc and with a real x86 MMU (QEMU's page walker, through Unicorn).
#
# The chapters, in the order of lguest's narrative:
#
# | chapter | part of page_tables.c |
# |---|---|
# | 1 | H:300, H:320 — the helpers; 2-level and PAE layouts |
# | 2 | (i) H:330 — looking up a fault: `demand_page()` |
# | 3 | (ii) H:360 — making sure the Guest's stack is mapped |
# | 4 | (iii) H:400–H:420 — the Guest changes an entry |
# | 5 | (iv) H:430, H:435 — switching page tables |
# | 6 | (v) H:440–H:470 — flushing |
# | 7 | (vi) H:480, H:481, H:501 — mapping the Switcher |
# | 8 | (vii) H:500, H:508 — setting up and tearing down |
# | 9 | H:490 and the mysteries M:007–M:009 — why it matters |
# | 10 | experiments: testing what the comments claim |
# | 11 | the hostile-guest lab |

# %% [markdown]
# ## The cast
#
# - The **Host** is a Linux kernel with the `lg` module loaded: it owns the real CPU and the real
#   page tables.
# - The **Guest** is another Linux kernel, built to run under lguest.  It runs at privilege level
#   1 (not 0), so every privileged thing it wants — loading a page table, setting its kernel
#   stack, flushing the TLB — it asks of the Host with a *hypercall*.
# - The **Launcher** is an ordinary user program on the Host.  It allocates the Guest's memory in
#   its own address space (starting at `mem_base`), loads the Guest kernel there, and runs it by
#   calling into the `lg` module.  Guest "physical" page *n* is simply the Launcher's page
#   `mem_base/4096 + n`.
# - The **Switcher** is a few pages of code and data mapped at the very top of both Host and Guest
#   address spaces, which carry the CPU across from one to the other.
#
# In the model, `Guest(...)` builds all of it: a modelled host (frames, a page allocator,
# reference counts, host CPUs, the Switcher's pages), the Launcher's mapping, lguest's state for
# the Guest, and a small Guest kernel that writes its own page tables in its memory and makes
# lguest's hypercalls.

# %%
from lguest_book.guest import Guest
from lguest_book.trace import Tracer
from lguest_book import plots, widgets, fmt
import lguest_book.inspect as li

g = Guest(pae=False, seed=0)
g

# %%
li.limits(g)

# %% [markdown]
# ## Why the Guest's page tables cannot be used
#
# A Guest kernel builds page tables like any Linux kernel: "virtual page `0x8048` is in physical
# page `0x300`".  But its "physical page `0x300`" is not the machine's page `0x300` — that one
# belongs to the Host, or to another Guest.  It is whatever host frame backs the Launcher's page
# `mem_base/4096 + 0x300`.  If the CPU used the Guest's tables, the Guest would reach memory that
# is not its own.  And the Guest is not trusted: its tables may say anything.
#
# So the Host keeps a second set of tables, the **shadow** page tables, which the CPU really
# uses.  Each shadow entry is a checked and *translated* copy of a Guest entry: same flags (almost),
# but the frame number of the real host page.  The Guest never sees them.  (lguest's author
# points out the name is backwards: the "shadow" is the real thing, and the Guest's tables are
# the reflection.)
#
# The shadow starts empty.  When the Guest touches a page, the CPU finds nothing in the shadow,
# faults, and the Host looks at the Guest's own tables to decide what to do — chapter 2.  Here it
# is, once, from the outside:

# %%
p = g.new_process("init")
g.switch_to(p)
g.map(0x08048000, 0x300)
print("Guest's PTE: ", g.x86.describe(g.guest_pte(0x08048000)))
print("shadow PTE:  ", g.x86.describe(li.walk_shadow(g, 0x08048000)[-1].value))
with Tracer() as t:
    access = g.touch(0x08048000, write=True, user=True)
print(access)
assert (access.outcome, access.faults) == ("ok", 1) and li.owner(g, access.hpa >> 12) == ("guest", 0x300)
print("shadow PTE:  ", g.x86.describe(li.walk_shadow(g, 0x08048000)[-1].value))
print("host frame", fmt.frame(access.hpa >> 12, g.x86), "is", li.owner(g, access.hpa >> 12))

# %% [markdown]
# The Guest's access faulted once; the Host's `demand_page()` found the Guest's PTE, checked it,
# pinned the host frame backing guest page `0x300`, and wrote a shadow PTE pointing at that
# frame.  The access then went through.  (The shadow PTE also gained Dirty: the access was a
# write, and chapter 2 explains why a read would have left the shadow read-only.)  The whole
# story took these calls, in order:

# %%
story = [e.func for e in t.trace.calls() if e.func in
         ("demand_page", "find_spte", "gpte_to_spte", "get_pfn", "lgread", "lgwrite", "kill_guest")]
# the first four look-ups happen before the fault, while the Host prepares to enter the Guest
first = story.index("demand_page")
assert story[:first] == ["find_spte"] * 4
assert all(e.func == "map_switcher_in_guest" for e in t.trace.calls() if e.depth == 0 and e.func != "demand_page")
story

# %% [markdown]
# The four `find_spte()` calls before `demand_page()` are not part of the fault: every entry
# into the Guest first runs `map_switcher_in_guest()` (chapter 7), which looks up the shadow
# entries of the Switcher's two per-CPU pages to refresh them.  Then the Guest runs, faults,
# and `demand_page()` reads the Guest's top-level entry and PTE (the two `lgread`s), finds the
# shadow PTE's place (`find_spte`), builds the entry (`gpte_to_spte`, which pins the page with
# `get_pfn`), and writes Accessed and Dirty back into the Guest's PTE (`lgwrite`).
#
# Guest frame and host frame, side by side for the first pages of the program — the Guest's view
# on the left, the CPU's on the right:

# %%
plots.plot_side_by_side(g, 0x08048000, pages=4)

# %% [markdown]
# ## One access, four addresses
#
# That one access involved four address spaces, and it is worth naming them once.  The Guest's
# program uses a **Guest-virtual** address; the Guest's own tables turn it into a
# **Guest-physical** address (what the Guest believes is RAM); guest-physical memory is really
# part of the Launcher's address space, so it is also a **Launcher-virtual** address, `mem_base`
# above; and the Host's own tables for the Launcher process name the **host frame** behind that.
# The shadow PTE is the short cut: one entry from the first to the last, which is what lets the
# CPU do the whole chain in one walk.  The figure is computed from the model, and the cell checks
# that the short cut and the chain agree:

# %%
from matplotlib.patches import Rectangle
v = 0x08048000
gpa = li.walk_guest(g, v)[-1].value & ~0xFFF & 0xFFFFFFFF      # the Guest's PTE names its page
lva = g.lg.mem_base + gpa                                      # guest-physical 0 is mem_base
frame = g.lg.launcher.frames[gpa >> 12]                        # the Host's page behind the Launcher's page
shadow_frame = li.walk_shadow(g, v)[-1].value >> 12
assert shadow_frame == frame == access.hpa >> 12               # the short cut is the chain

fig = plots.new_figure((6.4, 2.4))
ax = fig.add_subplot()
from lguest_book import fmt
boxes = [("Guest-virtual", fmt.vaddr(v)), ("Guest-physical", fmt.paddr(gpa, g.x86)),
         ("Launcher-virtual", fmt.vaddr(lva)), ("host frame", fmt.frame(frame, g.x86))]
steps = ["Guest's page tables", "+ mem_base", "Host's tables\nfor the Launcher"]
for i, (name, value) in enumerate(boxes):
    ax.add_patch(Rectangle((i * 3, 0), 2.2, 1, fc="#F2F2F2", ec="#000000"))
    ax.text(i * 3 + 1.1, 0.65, name, ha="center", fontsize=8)
    ax.text(i * 3 + 1.1, 0.3, value, ha="center", fontsize=8, family="monospace")
for i, label in enumerate(steps):
    ax.annotate("", xy=(i * 3 + 3, 0.5), xytext=(i * 3 + 2.2, 0.5), arrowprops=dict(arrowstyle="->"))
    ax.text(i * 3 + 2.6, -0.35, label, ha="center", fontsize=7)
ax.annotate("", xy=(10.1, 1.05), xytext=(1.1, 1.05),
            arrowprops=dict(arrowstyle="->", color="#D55E00", connectionstyle="arc3,rad=-0.15"))
ax.text(5.6, 1.75, "the shadow PTE: one step, walked by the CPU", ha="center", fontsize=8, color="#D55E00")
ax.set_xlim(-0.2, 11.4); ax.set_ylim(-0.7, 2.1); ax.axis("off")
fig

# %% [markdown]
# ## The top of the address space
#
# The Guest does not own all 4 GiB of its virtual address space.  Its kernel lives above
# `kernel_address` (`0xC0000000` here); the Host's **Switcher** — the few pages of code and
# per-CPU state that switch between Host and Guest — sits at `switcher_addr`, near the very top,
# mapped into every shadow top level; and at the Guest's INIT the Host tells it how much of the
# top to keep clear (`reserve_mem` in `lguest_data`: everything from the Switcher up).  The
# cell reads those numbers from the model and checks how they fit:

# %%
data = g.lguest_data()
sw = g.host.switcher_addr
assert data["reserve_mem"] == (1 << 32) - sw and data["kernel_address"] == g.kernel_address < sw
print(f"kernel_address {fmt.vaddr(g.kernel_address)}   switcher_addr {fmt.vaddr(sw)}   "
      f"reserve_mem {data['reserve_mem']} bytes ({data['reserve_mem'] // 4096} pages)")

fig = plots.new_figure((6.4, 1.9))
ax = fig.add_subplot()
regions = [(0, g.kernel_address, "user (per process)", "#F0E442"),
           (g.kernel_address, sw, "Guest kernel (shared)", "#56B4E9"),
           (sw, 1 << 32, "Switcher (Host)", "#D55E00")]
for lo, hi, name, colour in regions:
    ax.barh(0, hi - lo, left=lo, color=colour, height=0.6, ec="#000000")
    if hi - lo > 1 << 28:
        ax.text((lo + hi) / 2, 0, name, ha="center", va="center", fontsize=7)
ax.annotate("Switcher (Host) + reserve", xy=(sw, 0.3), xytext=(sw - (1 << 29), 0.7), fontsize=7,
            ha="center", arrowprops=dict(arrowstyle="->"))
ax.set_xticks([0, g.kernel_address, sw], ["0", fmt.vaddr(g.kernel_address), fmt.vaddr(sw)], fontsize=7)
ax.set_xlim(0, 1 << 32); ax.set_yticks([]); ax.set_ylim(-0.5, 0.9)
ax.set_title("a Guest's 4 GiB (the Switcher's slice is drawn to scale: it is tiny)", fontsize=8)
fig

# %% [markdown]
# And the same thing, one decision at a time — press *Step*:

# %%
fresh = Guest(pae=False, seed=0)
q = fresh.new_process("init")
fresh.switch_to(q)
fresh.map(0x08048000, 0x300)
widgets.FaultStepper(fresh, 0x08048000, write=True, user=True)

# %% [markdown]
# ## What a hostile Guest can try
#
# Everything the Guest gives the Host — its page tables, its hypercall arguments — may be
# malicious.  The Host's answer to anything impossible is to kill the Guest with a reason, and to
# carry on.  For example, a PTE pointing past the end of the Guest's memory (and past the
# device pages the Launcher may place just above it, `device_limit`; chapter 2):

# %%
bad = Guest(pae=False, seed=0)
r = bad.new_process("r")
bad.switch_to(r)
bad.set_pte(0x08048000, (bad.lg.device_limit + 1) << 12 | 0x07)
print(bad.touch(0x08048000, user=True), "—", bad.dead)

# %% [markdown]
# The book shows where the C keeps this promise — and, in a few places, where it does not.

# %% [markdown]
# ## Exercises
#
# 1. Make a Guest with `mem_pages=8192` and find the host frame that backs guest page `0x1000`
#    after touching a kernel address that maps it.  What is `mem_base/4096 + 0x1000`?
# 2. Touch the same address twice.  How many faults does the second access take, and why?
# 3. Use `li.limits(g)` to find where the Switcher lives.  What does `g.touch()` return for a
#    *user* read of that address?
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* the Guest kernel maps guest-physical memory at `kernel_address`, so guest page
#    `0x1000` is at `0xC1000000`.  *Answer:* touch it, then read `access.hpa >> 12` (or
#    `g.lg.launcher.frames[0x1000]`): a host frame from the host's allocator, `0x8015` with seed
#    1.  `mem_base/4096 + 0x1000` is `0x41000`: the *Launcher's* page number, a virtual page of
#    the Launcher process, not a host frame — the two differ, and the shadow PTE names the
#    host frame.
# 2. *Answer:* none: the first access made the shadow entry, and the CPU uses it from then on.
# 3. *Answer:* `guest-fault`: the Switcher's pages are mapped kernel-only, the CPU refuses the
#    user read, and `demand_page()` declines every address at or above `switcher_addr`, so the
#    fault goes back to the Guest.  The Guest is not killed.
#
# </details>

# %%
# The answers above, checked.
h = Guest(pae=False, mem_pages=8192, seed=1)
a1 = h.touch(0xC1000000)
assert a1.hpa >> 12 == h.lg.launcher.frames[0x1000] == 0x8015 and h.lg.mem_base // 4096 + 0x1000 == 0x41000
assert h.touch(0xC1000000).faults == 0
a3 = h.touch(h.host.switcher_addr, user=True)
assert a3.outcome == "guest-fault" and h.dead is None

# %% [markdown]
# ## Summary
#
# - lguest runs a Guest kernel at privilege level 1; the Launcher provides its memory; the
#   Switcher carries the CPU between Host and Guest.
# - The Guest's page tables name guest frames; the CPU needs host frames.  The Host keeps shadow
#   tables with translated, checked entries, built lazily on faults.
# - Every function in `lguest_book.page_tables` is the Python twin of the C function of the same
#   name; the chapters run them.

# %% [markdown]
# ## References
#
# - The lguest documentation in Linux 4.7: `Documentation/virtual/lguest/lguest.txt`, <https://elixir.bootlin.com/linux/v4.7/source/Documentation/virtual/lguest/lguest.txt>, and the narrative of `drivers/lguest/` itself, <https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/>
# - Rusty Russell, "lguest: Implementing the little Linux hypervisor", Proceedings of the Linux Symposium (OLS) 2007
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B "Virtual Machine Monitors"
# - Keith Adams and Ole Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization", ASPLOS 2006 — shadow page tables, hidden and true faults, tracing, and why early hardware support did not beat them
