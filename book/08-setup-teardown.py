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
# # Chapter 8 — Part (vii): setting up, looking up, tearing down
#
# The last part of page_tables.c is the life cycle around everything else: the shadow tables
# a Guest starts with before it has any page tables of its own, the moment the Guest
# introduces itself with the INIT hypercall, the helpers that turn a Guest *virtual* address
# into a Guest *physical* one, and the teardown that must give every page back.  Markers
# **H:500** and **H:508**.
#
# ## What you will learn
#
# - what `init_guest_pagetable()` builds when the Launcher creates a Guest, and what "linear
#   mode" means;
# - what `page_table_guest_data_init()` learns from the Guest at INIT (`kernel_address`) and
#   tells it back (`reserve_mem`), with the 32-bit arithmetic that computes it;
# - how `__guest_pa()` and `guest_pa()` walk the Guest's own tables, and who needs them;
# - how `free_guest_pagetable()` returns every page — and how to prove it.

# %%
from lguest_book.guest import Guest
from lguest_book.host import Host
from lguest_book.lguest import Lguest
from lguest_book.x86 import layout_for
from lguest_book.notebook import twin
from lguest_book.trace import Tracer
from lguest_book import page_tables as pt, hypercalls as hc
import lguest_book.inspect as li
from lguest_book import plots, widgets, fmt

# %% [markdown]
# ## Before the Guest has page tables
#
# When the Launcher creates a Guest, the Guest kernel has not run a single instruction and has
# built no page tables.  Yet it must run on *some* tables, and they must contain the Switcher.
# `init_guest_pagetable()` takes a slot with `new_pgdir()` (the "Guest top level" it shadows is
# address 0, which means nothing), switches the CPU into **linear mode**, and maps the
# Switcher.

# %%
twin("init_guest_pagetable")

# %%
g = Guest(pae=False, seed=1, boot=False)
print("linear mode:", g.cpu.linear_pages)
print("cache:", [(s["slot"], s["allocated"]) for s in li.pgdir_cache(g)])
assert g.cpu.linear_pages and [s["slot"] for s in li.pgdir_cache(g) if s["allocated"]] == [g.cpu.cpu_pgd] == [1]

# %% [markdown]
# One slot is allocated, and it is slot 1, not 0: `new_pgdir()` always picks its slot with
# `prandom_u32()` (chapter 5), and this seeded Guest's first draw lands on 1.
#
# In linear mode `demand_page()` does not read any Guest table: it invents a top-level entry and
# a writable PTE that maps each virtual page to the guest-physical page *of the same number*.
# That is what a kernel's early boot code expects — it runs before it turns paging on, where
# virtual equals physical.

# %%
a = g.touch(0x00123000, write=True)
spte = li.walk_shadow(g, 0x00123000)[-1].value
print(a.outcome, "— shadow PTE", g.x86.describe(spte), "— backs", li.owner(g, spte >> 12))
assert a.outcome == "ok" and li.owner(g, spte >> 12) == ("guest", 0x123) and spte & 0x2

# %% [markdown]
# Guest page `0x123` (291), as promised.  Step through a linear-mode fault and notice which
# checks are skipped — there is no Guest table to read, so the later checks (present? a write
# to a read-only page?) look at the invented PTE, and pass:

# %%
linear = Guest(pae=False, seed=1, boot=False)
stepper = widgets.FaultStepper(linear, 0x00456000, write=True)
stepper

# %%
[st.text for st in stepper.steps if st.kind in ("check", "read") and st.func == "demand_page"][:6]

# %%
present = [e.index for e in li.shadow_table(g) if e.present]
assert present == [g.x86.pgd_index(0x00123000), g.x86.pgd_index(g.host.switcher_addr)]
print("present top-level entries:", [fmt.index(i) for i in present])
plots.plot_directory(g)

# %% [markdown]
# The shadow top level in linear mode: the Switcher's slot, the slot of the page we touched,
# and nothing else.  The linear mapping is thrown away for good on the
# Guest's first NEW_PGTABLE (chapter 5).
#
# If the host has no memory for the first top level, the Guest is never born: the Launcher gets
# `-ENOMEM` (−12), and nothing is left allocated.

# %%
host = Host(layout_for(False))
lg = Lguest(host, mem_pages=4096)
baseline = dict(host.refcount)
host.fail_allocations(1, after=1)       # the register page succeeds, the top level fails
launched = hc.launch(lg)
print("launch:", launched)
print("nothing leaked:", host.refcount == baseline)
assert launched == -12 and host.refcount == baseline

# %% [markdown]
# ## INIT: the Guest introduces itself
#
# The Guest's first hypercall must be INIT, with the guest-physical address of its
# `lguest_data` page — a page of fields shared by Guest and Host.  Two of them belong to the
# page-table code: the Guest tells the Host its `kernel_address` (where the kernel's half of
# every address space begins), and the Host tells the Guest `reserve_mem`, how much of the top of
# the address space it must leave alone for the Switcher.

# %%
twin("page_table_guest_data_init")

# %%
g = Guest(pae=False, seed=1)
d = g.lguest_data()
print(f"kernel_address = {fmt.vaddr(d['kernel_address'])}")
print(f"reserve_mem    = {fmt.vaddr(d['reserve_mem'])}  (switcher_addr = {fmt.vaddr(g.host.switcher_addr)})")
gp = Guest(pae=True, seed=1)
print(f"PAE: reserve_mem = {fmt.vaddr(gp.lguest_data()['reserve_mem'])}  (switcher_addr = {fmt.vaddr(gp.host.switcher_addr)})")
assert (d["reserve_mem"], gp.lguest_data()["reserve_mem"]) == (4 << 20, 2 << 20)

# %% [markdown]
# `reserve_mem` is computed as `~switcher_addr + 1` in a 32-bit `unsigned long`: the two's
# complement, which is 4 GiB minus `switcher_addr` — 4 MiB without PAE, 2 MiB with it.  The
# model does the same arithmetic:

# %%
for sa in (0xFFC00000, 0xFFE00000):
    print(f"{fmt.vaddr(sa)}: {fmt.vaddr((~sa + 1) & 0xFFFFFFFF)}")

# %% [markdown]
# The check that follows protects `flush_user_mappings()`, which loops over top-level entries up
# to the kernel's: a kernel address in the Switcher's slot would make a user flush release the
# Switcher.  So a Guest that claims such a kernel address is killed at INIT.  The same
# hypercall also dies for a `lguest_data` outside Guest memory, and INIT is allowed exactly once:

# %%
def init_with(kernel_address=0xC0000000, data_pa=0x200000, twice=False):
    h = Guest(pae=False, seed=1, boot=False, kernel_address=kernel_address)
    if data_pa < 0x1000000:                     # (only a page inside guest memory can be written)
        h.write_phys(data_pa + 8, kernel_address.to_bytes(4, "little"))  # lguest_data.kernel_address
    h.hypercall(hc.LHCALL_LGUEST_INIT, data_pa)
    if twice:
        h.hypercall(hc.LHCALL_LGUEST_INIT, data_pa)
    return h.dead

print("kernel in the Switcher:", repr(init_with(kernel_address=0xFFC00000)))
print("lguest_data off the end:", repr(init_with(data_pa=0xFFFFF000)))
print("INIT twice:             ", repr(init_with(twice=True)))
print("a well-behaved Guest:   ", repr(init_with()))
assert init_with(kernel_address=0xFFC00000).startswith("bad kernel address") and init_with() is None
assert init_with(data_pa=0xFFFFF000).endswith("(null)") and init_with(twice=True) == "already have lguest_data"

# %% [markdown]
# Note the `(null)` in the second message: the kernel's `%p` prints a NULL pointer that way,
# because `lguest_data` was never set.  The model formats its messages as the kernel would.

# %% [markdown]
# ## From Guest-virtual to Guest-physical
#
# Sometimes the Host must read Guest memory by *virtual* address — for instance, to look at the
# instruction that trapped, at the Guest's `eip`.  `__guest_pa()` walks the Guest's own tables
# (not the shadow!) to find the guest-physical address; `guest_pa()` is the same but kills the
# Guest if the address is not mapped.

# %%
twin("__guest_pa")

# %%
twin("guest_pa")

# %%
print(f"{fmt.vaddr(0xC0123456)} -> {fmt.paddr(pt.guest_pa(g.cpu, 0xC0123456), g.x86)}")
ok, pa = pt.__guest_pa(g.cpu, 0x08048000)
print(f"{fmt.vaddr(0x08048000)} -> ok={ok}, paddr={fmt.paddr(pa, g.x86)}")
pt.guest_pa(g.cpu, 0x08048000)
print("and guest_pa() on it kills:", g.dead)
assert (ok, pa) == (False, 0xFFFFFFFF) and g.dead.startswith("Bad address")

# %% [markdown]
# ### Under PAE, an address beyond 4 GiB
#
# A PAE PTE can name a frame above 4 GiB.  `__guest_pa()` returns the address in an
# `unsigned long` — 32 bits — and computes it as `pte_pfn(gpte) * PAGE_SIZE`, also in 32 bits,
# so the high bits are simply lost: frame `0x100300` (4 GiB + 3 MiB) comes back as guest-physical
# `0x300…`, an ordinary page of the Guest's memory.  `__guest_pa()` does not check the frame
# against `pfn_limit` either (only `demand_page()` does, through `check_gpte()`), so the Host's
# later read through that address succeeds, on the wrong page.  *Predict* both results, then
# run:

# %%
gp = Guest(pae=True, seed=1)
q = gp.new_process("q")
gp.switch_to(q)
gp.map(0x08048000, 0x300)
gp.write_entry(li.walk_guest(gp, 0x08048000)[-1].where, 0x100300 << 12 | 0x27)   # frame 4 GiB + 0x300 pages
ok, pa = pt.__guest_pa(gp.cpu, 0x08048123)
from lguest_book import fmt
print(f"__guest_pa: ok={ok}, paddr={fmt.paddr(pa, gp.x86)}   (the true address would be {fmt.paddr(0x100300 << 12 | 0x123, gp.x86)})")
print("demand_page on the same PTE:", gp.touch(0x08048000, user=True), "—", gp.dead)
assert ok and pa == 0x300123 and gp.dead == "bad page table entry"

# %% [markdown]
# The Guest only fools itself (the address it gets names its own page 0x300), so no Host promise
# is broken; but the two walks of the same PTE disagree — `demand_page()` kills, `__guest_pa()`
# answers.

# %% [markdown]
# ## Tearing down
#
# When the Launcher closes the Guest, `free_guest_pagetable()` releases every shadow entry of
# every slot (so every page reference a fault took is returned) and then frees the top-level
# pages themselves.  Here is the promise "a Guest cannot leak host pages" put to a simple test:
# record every page reference count before the Guest exists, run a busy Guest, tear it down, and
# compare.

# %%
twin("free_guest_pagetable")

# %%
fresh_host = dict(Host(layout_for(False)).refcount)   # a host on which no Guest ever ran
print("a fresh host holds:", {fmt.frame(f, pae=False): c for f, c in fresh_host.items()})
g = Guest(pae=False, seed=1)
procs = [g.new_process(f"p{i}") for i in range(6)]
for i, p in enumerate(procs):
    g.switch_to(p)
    g.map(0x08048000, 0x300 + i)
    g.touch(0x08048000, write=True, user=True)
    g.touch(g.kernel_address + 0x100000 + i * 4096)
print("frames in use while running:", len(g.host.refcount))
g.shutdown()
kernel_refs = {f: c for f, (c, who) in li.refcounts(g).items() if who[0] != "guest"}
print("frames the kernel still holds:", {fmt.frame(f, pae=False): c for f, c in kernel_refs.items()})
print("same as a fresh host:", kernel_refs == fresh_host)
assert kernel_refs == fresh_host and all(c == 1 for c, who in li.refcounts(g).values())

# %%
plots.plot_refcounts(g)

# %% [markdown]
# A smaller run of the same kind, recorded, with its teardown as the last event.  The
# scrubber opens on that last event: no shadow table left, and the reference counts it
# dropped listed in red.  Slide back to watch the tables grow switch by switch.

# %%
from lguest_book.recorder import Recorder

run = Recorder(Guest(pae=False, seed=1))
run_procs = [run.new_process(f"p{i}") for i in range(3)]
for i, p in enumerate(run_procs):
    run.switch_to(p)
    run.map(0x08048000, 0x300 + i)
    run.touch(0x08048000, write=True, user=True)
run.shutdown()
scrubber = widgets.Scrubber(run, position=len(run.recording) - 1)
assert scrubber.event.kind == "teardown" and scrubber.counts()["shadow"] == 0
scrubber

# %% [markdown]
# After teardown, the host holds only the Switcher's pages (one reference each, its own) and the
# Launcher's memory (one reference per page, the Launcher's own mapping).  The project's
# property tests repeat this check for thousands of random, hostile Guests — with the known
# exceptions of chapter 4's flaws, where the C itself breaks the promise.

# %% [markdown]
# ## Exercises
#
# 1. In linear mode, what happens if the Guest touches an address beyond its memory, say
#    `0x7F000000`?  Predict from `demand_page()`, then try it on a `Guest(boot=False)`.
# 2. Compute `reserve_mem` for a hypothetical Switcher at `0xFF800000`.  What would a 64-bit
#    `unsigned long` have given instead, and why does the 32-bit answer matter?
# 3. `__guest_pa()` does not look at `_PAGE_USER` or `_PAGE_RW`.  Is that a problem for its
#    callers?  Why or why not?
# 4. Use `flaws.FLAWS` to find a flaw that makes the teardown check above fail, and run its demo
#    followed by `g.shutdown()` and a reference-count comparison.
#
# <details><summary>Hints and answers (open after trying)</summary>
#
# 1. *Hint:* in linear mode the "Guest PTE" is made up from the address itself.  *Answer:* the
#    made-up PTE names frame `0x7F000`, beyond both `pfn_limit` (`0x1000`) and `device_limit`
#    (`0x1100`): not I/O, so `check_gpte()` kills the Guest with `bad page table entry`
#    (checked below).
# 2. *Answer:* `top = ~0xFF800000 + 1` is `0x800000` (8 MiB, the top 2048 pages).  In 64 bits the
#    intermediate value is `0xFFFFFFFF00800000`, but `top` is a `u32`, so only `0x800000` is kept
#    — the same answer.  It matters because it is the size of the hole the Guest must leave at
#    the top of its address space: "4 GiB minus `switcher_addr`".
# 3. *Answer:* no: the Host uses it to read the Guest's memory *for* the Host's own purposes (the
#    instruction at `eip`, the stack it pushes a trap frame onto), with the Host's rights and
#    through `lgread()`'s bounds check, so no Host protection depends on the Guest's U or RW bits.
#    It could mislead the Host only about the Guest's own memory (see the PAE case above).
# 4. *Answer:* `double_release` (the count falls to 0 while the Launcher still maps the page) and
#    `pinned_not_present` (a count stays above 1 after teardown).
#
# </details>

# %%
# The answers 1, 2 and 4, checked.
from lguest_book import flaws
h = Guest(pae=False, seed=1, boot=False)
assert h.touch(0x7F000000).outcome == "killed" and h.dead == "bad page table entry"
assert (h.lg.pfn_limit, h.lg.device_limit) == (0x1000, 0x1100)
assert (~0xFF800000 + 1) & 0xFFFFFFFF == 0x800000 and (~0xFF800000 + 1) & (2**64 - 1) == 0xFFFFFFFF00800000
assert flaws.flaw("double_release").demo(False)["refs_after_teardown"] == 0
pinned = flaws.flaw("pinned_not_present").demo(False)
assert pinned["refs_after_teardown"] > pinned["expected_after_teardown"]

# %% [markdown]
# ### Graded exercise: guest-virtual to guest-physical (H:500)
#
# Write `__guest_pa(cpu, vaddr)` returning `(ok, paddr)`.  In linear mode (`cpu.linear_pages`)
# the answer is `(True, vaddr)`.  Otherwise walk the Guest's own tables with
# `lgread(cpu, address, "pgd_t" / "pmd_t" / "pte_t")`, using `gpgd_addr`, `gpmd_addr` (PAE only)
# and `gpte_addr`.  If an entry on the way is not present, return `(False, 0xffffffff)`; else the
# page's guest-physical address (`L.pte_pfn(gpte) * PAGE_SIZE`: under PAE the PTE's high bits,
# NX say, are no part of it) plus the offset of `vaddr` in its page.
#
# Write your answer in the next cell, then run the cell after it: it swaps your function into
# the model, runs a Guest on it beside one running the reference, and compares everything.
# `exercises.show("ch8-guest-pa")` prints the task again.

# %% nbgrader={"grade": false, "grade_id": "ch8-guest-pa-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.page_tables import gpgd_addr, gpmd_addr, gpte_addr
from lguest_book.lguest import lgread


def __guest_pa(cpu, vaddr):
    ### BEGIN SOLUTION
    if cpu.linear_pages:
        return True, vaddr
    layout = cpu.lg.x86
    entry = lgread(cpu, gpgd_addr(cpu, vaddr), "pgd_t")
    if not entry & 1:
        return False, 0xFFFFFFFF
    if layout.pae:
        entry = lgread(cpu, gpmd_addr(entry, vaddr), "pmd_t")
        if not entry & 1:
            return False, 0xFFFFFFFF
    pte = lgread(cpu, gpte_addr(cpu, entry, vaddr), "pte_t")
    if not pte & 1:
        return False, 0xFFFFFFFF
    return True, (layout.pte_pfn(pte) * 4096 | vaddr & 0xFFF) & 0xFFFFFFFF
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch8-guest-pa-check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from lguest_book import exercises

exercises.check("ch8-guest-pa", __guest_pa)
### BEGIN HIDDEN TESTS
exercises.check("ch8-guest-pa", __guest_pa, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - A new Guest starts in linear mode on one shadow top level, with the Switcher mapped.
# - INIT tells the Host `kernel_address` and the Guest `reserve_mem` (4 GiB − `switcher_addr`,
#   in 32 bits); a kernel address in the Switcher's slot is fatal.
# - `__guest_pa()`/`guest_pa()` walk the Guest's own tables for the Host; under PAE they cut a
#   frame above 4 GiB to 32 bits and answer with an ordinary low address.
# - `free_guest_pagetable()` gives back every page; reference counts prove it.

# %% [markdown]
# ## References
#
# - The lguest documentation in Linux 4.7: `Documentation/virtual/lguest/lguest.txt`, <https://elixir.bootlin.com/linux/v4.7/source/Documentation/virtual/lguest/lguest.txt>, and the narrative of `drivers/lguest/` itself, <https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/>
# - Remzi H. Arpaci-Dusseau and Andrea C. Arpaci-Dusseau, *Operating Systems: Three Easy Pieces* (OSTEP), <https://pages.cs.wisc.edu/~remzi/OSTEP/>, Appendix B
