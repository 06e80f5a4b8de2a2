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
# # Chapter 11 — The hostile-guest lab
#
# page_tables.c opens (P:700) by warning that the Guest's page tables can be neither trusted nor
# used: every entry must be checked and converted before the CPU may follow it.  The chapters so
# far showed where the checks hold, and the places where the C itself breaks its promises (chapter
# 9 collects them in one catalogue, `flaws.FLAWS`).  In
# this lab you stop reading about attacks and make them: you are the Guest, and the Host is the
# one under test.
#
# ## What you will learn
#
# - exactly what a Guest kernel can do to the Host: store anything in its own memory, make any
#   hypercall with any arguments, touch any address — and nothing more;
# - the five promises the Host makes, and how to check them after every single step;
# - how to turn a hunch into an attack, and a failed run into a minimal replay;
# - how to patch the Host, prove the patch restores a promise, and check it changes nothing else;
# - how fuzzing finds what you did not think of, and why one challenge here cannot be won.

# %%
from lguest_book import lab
from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER

for name, text in lab.PROMISES.items():
    print(f"{name:16} {text}")

# %% [markdown]
# ## The attacker
#
# An `Attacker` is a booted Guest kernel with no scruples.  Its *steps* are the only things a
# Guest can do — `poke` (store an entry anywhere in its own memory), `hypercall` (any call, any
# registers; with shorthands `set_pte`, `set_pgd`, `set_pmd`, `new_pgtable`, `flush`,
# `set_stack`, `lguest_init`), `touch` — plus what a Linux Guest builds from them (`map`,
# `new_process`, `switch_to`, `alloc_page`).  Reading its own memory (`peek`,
# `entry_address`, `limits`) is free.  After every step the Host runs the Guest again and the
# promises are checked.  An honest Guest breaks none:

# %%
a = lab.Attacker()
proc = a.new_process()
a.switch_to(proc)
page = a.alloc_page()
a.map(0x08048000, page)
print(a.touch(0x08048000, write=True, user=True))
print(a)
print("steps:", "; ".join(str(s) for s in a.steps))
assert a.broken == []

# %% [markdown]
# Every step is plain data — a name and integers — so an attack can be replayed exactly on a fresh
# machine, shrunk, or graded somewhere the attacker's code never runs:

# %%
again = lab.replay(a.steps)
assert [str(s) for s in again.steps] == [str(s) for s in a.steps] and again.broken == []
print(again)

# %% [markdown]
# ## What a broken promise looks like
#
# Chapter 4 showed `guest_set_pgd`'s bound test (`idx > PTRS_PER_PGD`, so index `PTRS_PER_PGD`
# itself passes).  Here is the attack written as steps, run on the Host the flaw needs (one whose
# Switcher sits near the very top of memory, and whose random choices all come out 0:
# `lab.host_settings("foreign-put")`), and what the promise checker reports.  The attack fills
# a page of its own with three fake "entries" naming a Switcher page, maps that page at
# `0xffc00000` — whose shadow PTE page is, on this Host, the frame right after the shadow top
# level — and asks the Host to release top-level entry 1024, one past the end:

# %%
from lguest_book import fmt

host = lab.host_settings("foreign-put")
result = lab.attempt("foreign-put", lab.KNOWN_ATTACKS["foreign-put"])
for i, step in enumerate(result.steps):
    print(f"step {i}: {step}")
print(str(result).splitlines()[0])
broken = next(b for b in result.broken if b.promise == "no-leak" and b.action != "teardown")
broken.replay = lab.shrink(result.steps, "no-leak", **host)
print(broken)
switcher_frame = result.steps[1].args[1] >> 12            # the frame the fake entries name
assert result.succeeded and broken.step == len(result.steps) - 1
assert broken.evidence == [f"put_page on frame {fmt.frame(switcher_frame)} whose count was already 0",
                           f"put_page on frame {fmt.frame(switcher_frame)} whose count was already -1",
                           f"switcher frame {fmt.frame(switcher_frame)} has -2 references (its owner keeps 1)"]

# %% [markdown]
# The picture draws the whole attack: the reference counts of every frame its last step changed,
# before and after it.  The Switcher's page `0x08001` (the Host's, not the Guest's) is released
# once for each of the three fake entries — from 1 to 0, which frees it while the Switcher
# still uses it, then to −1 and −2, the two put_page calls the evidence reports — and the
# Guest's own page `0x0800c`, the one mapped at `0xffc00000` that the Host took for a PTE page,
# loses the reference the shadow entry held.

# %%
fig = lab.picture(broken, result.steps, **host)
assert {f: c for f, c in fig.after_counts.items() if c < 0} == {switcher_frame: -2}
assert switcher_frame == 0x08001 and fig.owners[switcher_frame][0] == "switcher"
assert fig.owners[0x0800c] == ("guest", 0x00205) and fig.after_counts[0x0800c] == 1
fig

# %% [markdown]
# The minimal replay is shorter than the attack, and it breaks the promise on a different frame.
# Without `alloc_page`, the page mapped at `0xffc00000` (`0x00205`) is the next free page, so the
# Guest also takes it for the PTE page of that region: the `map` step writes the Guest PTE
# `0x00205063` into the very page it maps.  The Host then reads that page (host frame `0x0800c`)
# as a shadow PTE page, finds one "present entry", `0x00205063`, and drops a reference on *host*
# frame `0x00205` — a frame of the Host that neither the Guest nor lguest owns.  The fake entries
# were never needed: any present-looking value in that page names a host frame, and shrinking
# found the cheapest one.

# %%
minimal = lab.first_broken(broken.replay, "no-leak", **host)
print(minimal)
small = lab.picture(broken, **host)
assert [str(s) for s in broken.replay] == ["map(0xffc00000, 0x00205, 0x63)", str(result.steps[-1])]
assert {f: c for f, c in small.after_counts.items() if c < 0} == {0x00205: -1}
assert small.owners[0x00205] == ("host", None)
assert minimal.evidence == ["put_page on frame 0x00205 whose count was already 0"]
small

# %% [markdown]
# ## The challenges
#
# Each challenge is a goal with a checker and a ladder of hints; most are the flaws the book
# taught, one (`amplify`) is not in the book at all, and one (`foreign-map`) cannot be done.

# %%
for c in lab.CHALLENGES.values():
    print(f"{c.id:22} {c.where:32} {c.goal}")
assert sum(not c.possible for c in lab.CHALLENGES.values()) == 1
assert any(c.where == "not yet in the book" for c in lab.CHALLENGES.values())

# %% [markdown]
# Climb a ladder one rung at a time (the widget), or ask for hints in code: `lab.hints("amplify", 2)`.

# %%
lab.hint_ladder("amplify")

# %% [markdown]
# ### Your turn: crash the Host
#
# Write `attack(a)` that makes the Host oops while the Guest is alive: replace the
# `raise NotImplementedError` below with your steps.  Use the hint ladder if you need it.  The
# cell after it runs your attack on a fresh Guest with `lab.attempt`, which checks the promises
# after every step and says whether you succeeded (until you write it, it says your attack
# raised `NotImplementedError`); `lab.check_attack("crash-host", attack)` does the same and fails
# unless you did.  This exercise is for self-study: it is not graded.

# %%
def attack(a):
    # your steps on `a` here (its actions are listed under "The attacker" above)
    raise NotImplementedError("write your attack: replace this line with the steps")

# %%
print(lab.attempt("crash-host", attack))

# %% [markdown]
# <details><summary>A worked answer (open after trying)</summary>
#
# Two processes, both cached; switch to the second, so the first is cached but not current. A
# SET_PGD on the first one's Switcher entry makes the Host release that entry — but its
# `switcher_mapped` flag stays true, because `guest_set_pgd` re-maps the Switcher only in the
# *current* top level (H:400).  Switching back to the first process then runs
# `map_switcher_in_guest` on a top level whose Switcher PTE page is gone, and
# `remove_switcher_percpu_map` dereferences NULL (H:481).
#
# ```python
# def attack(a):
#     first = a.new_process()
#     second = a.new_process()
#     a.switch_to(first)
#     a.switch_to(second)                       # first is now cached but not current
#     g = a.guest
#     a.set_pgd(a.gpgdir(first), g.x86.pgd_index(g.host.switcher_addr))
#     a.switch_to(first)                        # the Host oopses here
# ```
#
# The same code is `lab.KNOWN_ATTACKS["crash-host"]`, which the next cell runs.
# </details>

# %%
# The worked answer, checked: the Host oopses at the last step, with the Guest alive.
crashed = lab.attempt("crash-host", lab.KNOWN_ATTACKS["crash-host"])
print(crashed)
oops = next(b for b in crashed.broken if b.promise == "no-oops")
assert crashed.succeeded and oops.step == len(crashed.steps) - 1 and oops.action == "switch_to(1)"
assert "NULL pointer" in oops.evidence[0]

# %% [markdown]
# ### Graded challenge: amplify (not yet in the book)
#
# A shadow PTE page costs the Host a whole page of its own memory.  Write `attack(a)` that makes
# the Host hold 64 more pages of shadow tables than it did at boot, while your user space maps a
# single page of memory.  Nothing of the Guest's memory needs to grow: think about what the Host
# shadows *per top-level entry*.  (In the classroom edition this cell is graded: the answer cell's
# text — so keep its imports in it — runs in a separate process that can only hand back the
# steps its Attacker took, and those steps are replayed and judged on a pristine Host.)

# %% nbgrader={"grade": false, "grade_id": "ch11-amplify-answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
from lguest_book.x86 import _PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER


def attack(a):
    ### BEGIN SOLUTION
    g = a.guest
    L = g.x86
    table, data = a.alloc_page(), a.alloc_page()
    a.poke(table << 12, (data << 12) | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED)
    a.switch_to(a.new_process())
    for i in range(64):  # 64 user top-level entries, all pointing at one PTE page
        a.poke(a.gpgdir() + i * 4, (table << 12) | 0x067)
    for i in range(64):
        a.touch(i << L.PMD_SHIFT, user=True)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ch11-amplify-check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from lguest_book import lab

lab.check_attack("amplify", attack)

# %% [markdown]
# ## The challenge that cannot be won
#
# `foreign-map` asks for a shadow PTE that maps a host frame outside the Guest's memory.  Argue
# from the C why no Guest can get one, then let the fuzzer and the property tests (promise 2 in
# `tests/test_properties.py`) back you up.
#
# <details><summary>The argument</summary>
#
# Every present shadow PTE is written by `gpte_to_spte` (H:340), whose frame comes from
# `get_pfn` (H:350): the Launcher's `get_user_pages_fast` on `mem_base + gpfn * PAGE_SIZE`, so it
# is a page of the Launcher's mapping of Guest memory or nothing.  The Guest's frame number is
# bounded first: `check_gpte` (H:330) kills a Guest whose PTE names a page at or beyond
# `pfn_limit`, and I/O pages never get a shadow entry.  The only other shadow PTEs are the
# Switcher's, made by the Host itself (H:480, H:501).  The flaws that corrupt reference counts
# (`foreign-put`, `freed-while-mapped`) release frames; none of them *installs* one.
# </details>

# %%
bar = lab.progress_bar(60)                      # one tick per hostile Guest
report = lab.fuzz(runs=60, seed=3, progress=bar)
assert bar.widget.value == bar.widget.max
print(report)
assert "own-memory" not in report.found    # 60 hostile Guests: nobody reached a foreign frame
assert "no-leak" in report.found            # ... but the fuzzer rediscovers a known flaw

# %% [markdown]
# The fuzzer ran random hostile Guests (the property tests' generator, in the lab's vocabulary)
# and kept the first break of each promise, shrunk to a minimal replay.  `lab.fuzz(seconds=60)`
# runs for a minute instead of a fixed number of Guests.  The replay it found is one step: a
# `map` whose flags, `0x60`, are Accessed and Dirty without Present — chapter 4's
# `pinned_not_present` (the `pinned-after-teardown` challenge), rediscovered by chance.  The cell
# below checks that reading.

# %%
(step,) = report.found["no-leak"].replay
assert step.name == "map" and step.args[2] == _PAGE_ACCESSED | _PAGE_DIRTY and not step.args[2] & _PAGE_PRESENT

# %% [markdown]
# ## Patch the Host, and re-attack
#
# The lab ends as a security fix does: patch, prove the patch, and prove it breaks nothing else.
# Here is a fix of `guest_set_pgd`'s bound: the same function with `>=` where the C has `>`.
# `lab.reattack` runs every known attack and the fuzzer against the unpatched and the patched
# Host, and compares the two Hosts step by step on random Guests.

# %%
from lguest_book import page_tables as pt
from lguest_book.lguest import kill_guest

def guest_set_pgd(lg, gpgdir, idx):
    cpu0 = lg.cpus[0]
    if idx >= lg.x86.PTRS_PER_PGD:           # the fix: one past the end is out of bounds too
        kill_guest(cpu0, f"Attempt to set pgd {idx}/{lg.x86.PTRS_PER_PGD}")
        return
    slot = pt.find_pgdir(lg, gpgdir)
    if slot < len(lg.pgdirs):
        pt.release_pgd(lg.host, lg.host.entry_ptr(lg.pgdirs[slot].pgdir, idx))
        if not pt.allocate_switcher_mapping(cpu0):
            kill_guest(cpu0, "Cannot populate switcher mapping")
        lg.pgdirs[slot].last_host_cpu = -1

fix = lab.reattack({"guest_set_pgd": guest_set_pgd}, runs=30, compare_runs=30)
print(fix)
rows = {r["challenge"]: r for r in fix.rows}
assert rows["foreign-put"]["before"] and not rows["foreign-put"]["after"]   # the attack no longer works
assert all(r["before"] == r["after"] for c, r in rows.items() if c != "foreign-put")  # the others are untouched
from lguest_book import hypercalls as hc
one_past_the_end = {False: 1024, True: 4}
assert fix.differences                                                    # the random Guests did try it...
assert all(step.name == "hypercall" and step.args[0] == hc.LHCALL_SET_PGD and step.args[2] == one_past_the_end[pae]
           for pae, run, i, step in fix.differences)                       # ...and nothing else differs

# %% [markdown]
# ## Exercises
#
# 1. *Predict, then run.*  With the fix above, what does a Guest that makes SET_PGD with index
#    `PTRS_PER_PGD` see now?  Check with an `Attacker`.
#
#    <details><summary>Answer</summary>It is killed ("Attempt to set pgd 1024/1024"), as a Guest
#    asking for 1025 always was.</details>
#
# 2. Fix `pinned-after-teardown`: which test is missing in `__guest_set_pte`?  Patch it, then
#    `lab.reattack({"__guest_set_pte": yours})`.  Does your fix also change `clean-writable`?
#
#    <details><summary>Hint</summary>The shortcut converts any entry with Accessed or Dirty set,
#    present or not.</details>
#
#    <details><summary>Answer</summary>The missing test is Present: convert the entry at once
#    only when `_PAGE_PRESENT` is set *and* Accessed or Dirty is.  `reattack` then shows
#    `pinned-after-teardown` failing and everything else unchanged — `clean-writable` still
#    succeeds, because it is a different flaw (`writable_not_dirty`: a present, clean entry made
#    writable).  Checked below.</details>
#
# 3. Write an attack that breaks `dead-stays-dead`.  If you cannot, say which lines of
#    hypercalls.c and core.c stop you (the model follows them: `do_hcall` and `enter_guest`).
#
#    <details><summary>Answer</summary>It cannot be done with the lab's steps.  A Guest acts
#    only from inside `run_guest()` in
#    [core.c](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/core.c) (H:030): its
#    loop `while (!cpu->lg->dead)` runs the pending hypercalls first (`do_hypercalls()`), then
#    checks `if (cpu->lg->dead) break;` once more ("Just make absolutely sure the Guest is still
#    alive") before `lguest_arch_run_guest()` enters the Guest, and the `return -ENOENT` after the
#    loop ends the Launcher's read.  Every later read of `/dev/lguest` finds `lg->dead` set in
#    `read()` ([lguest_user.c](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/lguest_user.c))
#    and returns the death message without calling `run_guest()` again; and
#    [hypercalls.c](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/hypercalls.c)'s
#    `do_hypercalls()` (H:100) is only ever called from that loop.  The model's `do_hcall`
#    returns at once for a dead Guest and its `enter_guest` refuses one (chapter 7 showed it for
#    a Guest killed by a failed allocation); each step of the lab is one hypercall, one access or
#    one store, so once a step kills the Guest nothing after it runs.
#
#    One gap the lab cannot reach: the C's `do_hcall()` (H:120) does not itself test `lg->dead`,
#    and `do_async_hcalls()` (H:124) runs every call queued in the Guest's asynchronous
#    hypercall ring, and `do_hypercalls()` then the synchronous one, without looking at it
#    between calls.  So in the C, calls a Guest queues *behind* a fatal one in the same batch
#    still change the Host's tables after the kill, before `run_guest()`'s check.  The lab's
#    Attacker has no asynchronous ring (and the model's `do_hcall` refuses a dead Guest), so
#    there the promise holds.</details>
#
# 4. Run `lab.fuzz(seconds=60, pae=True)`.  Which promises break under PAE, and which flaw is
#    behind each minimal replay?
#
#    <details><summary>Answer (for the repeatable run `lab.fuzz(runs=60, seed=3, pae=True)`)</summary>
#    Only `no-leak` breaks, and its minimal replay again ends in a `map` with flags `0x20`
#    (Accessed, not Present): `pinned_not_present`, as without PAE.  A timed run may find more —
#    then match each replay against the flaw catalogue.  Checked below.</details>

# %%
# Answers 1, 2 and 4, checked.
from lguest_book import exercises
with exercises.use("guest_set_pgd", guest_set_pgd):      # answer 1: the patched bound
    victim = lab.Attacker()
    victim.set_pgd(victim.gpgdir(), victim.guest.x86.PTRS_PER_PGD)
assert victim.guest.dead == "Attempt to set pgd 1024/1024"
original = exercises.reference("__guest_set_pte")       # answer 2: the Present test added, as a
def present_first(cpu, idx, vaddr, gpte):                # wrapper: a non-present entry never takes
    if not gpte & _PAGE_PRESENT:                         # the Accessed/Dirty shortcut
        gpte &= ~(_PAGE_DIRTY | _PAGE_ACCESSED)
    return original(cpu, idx, vaddr, gpte)
fix2 = {r["challenge"]: r for r in lab.reattack({"__guest_set_pte": present_first}, runs=30, compare_runs=30).rows}
assert fix2["pinned-after-teardown"]["before"] and not fix2["pinned-after-teardown"]["after"]
assert all(r["before"] == r["after"] for c, r in fix2.items() if c != "pinned-after-teardown")
pae_report = lab.fuzz(runs=60, seed=3, pae=True)           # answer 4
assert set(pae_report.found) == {"no-leak"}
last = pae_report.found["no-leak"].replay[-1]
assert last.name == "map" and last.args[2] == _PAGE_ACCESSED

# %% [markdown]
# ## References
#
# - The lguest sources at v4.7: [page_tables.c](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/page_tables.c),
#   [hypercalls.c](https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/hypercalls.c).
# - A. Zeller and R. Hildebrandt, "Simplifying and isolating failure-inducing input", IEEE TSE
#   28(2), 2002 (delta debugging, which `lab.shrink` uses).
# - OSTEP, the virtual machine monitor appendix (why the Guest must not be trusted).
