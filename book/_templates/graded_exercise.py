# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How a graded exercise looks in a chapter (a template, not a chapter)
#
# Three cells: the task (markdown), the answer (an nbgrader *solution* cell: the answer sits
# between `### BEGIN SOLUTION` and `### END SOLUTION`, which nbgrader replaces by a stub in the
# student version), and the check (a locked nbgrader *grade* cell with points, calling
# `lguest_book.exercises.check`; the instructor's extra checks sit between
# `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`).  Register the exercise itself
# (its cases and workloads) in `lguest_book/exercises.py`.
#
# How autograde grades it (`lguest_book/grading.py`): the check cell is never trusted to run
# in the student's kernel.  The grader reads the `exercises.check(...)` calls from the
# instructor's text of the grade cell, runs the *text* of the solution cell(s) above it in a
# sandboxed process where the model's own version of the function is withheld, and compares
# what the answer did with the model.  So the answer cell must be self-contained (its imports
# inside it), and a grade cell must call `exercises.check(ID, NAME)` (and
# `exercises.check(ID, NAME, hidden=True)` in its hidden region) with literal arguments.  A
# twin cell that prints the function under exercise (`twin("page_writable")`, or any cell
# tagged `answer-source`) is replaced in the student edition by the exercise's task.

# %% [markdown]
# ### Graded exercise: is this stack page writable? (H:360)
#
# Write `page_writable(cpu, vaddr)`: `True` only when the current shadow table maps `vaddr`
# present **and** writable.  Nothing at or above `cpu.lg.host.switcher_addr` counts.  Use
# `find_spte(cpu, vaddr, False, 0, 0)` (it returns `None` when there is no shadow PTE) and
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

