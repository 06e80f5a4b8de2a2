"""Grading that cannot be fooled, proved with real nbgrader: one course (chapter 3), a class of
cheating and honest submissions delivered as an LMS zip export, the whole instructor cycle
through ``lguest-book classroom`` (course, generate, collect --zip, autograde, feedback,
export, report).  Every cheat scores 0, with feedback saying why; every honest answer scores
full marks; a copy of the model's own function scores what its code earns and is flagged in
the instructor's report."""

import contextlib
import csv
import io
import json
import zipfile
from pathlib import Path

import nbformat
import pytest

from lguest_book import classroom, grading
from lguest_book.cli import main

pytest.importorskip("nbgrader")

CH3 = next(p for p in classroom.graded_chapters() if p.name.startswith("03-"))
STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()"
HEAD = "from lguest_book.page_tables import find_spte\n\n\n"
REAL_SOURCE = str(grading.PACKAGE_DIR / "page_tables.py")


def body(code: str) -> str:
    """An answer cell whose whole text is ``code`` (replacing the released cell)."""
    return code


def inside(code: str) -> str:
    """An answer written where the stub is, inside the released ``def page_writable``."""
    return "\n".join("    " + line if line else line for line in code.strip("\n").splitlines())


# name -> (how the answer cell's text changes, other changes to the notebook or None, why it is 0)
CHEATS = {
    "import-reference": (body("from lguest_book.page_tables import page_writable\n"), None, "withheld"),
    "exercises-reference": (body("from lguest_book import exercises\npage_writable = exercises.reference('page_writable')\n"), None, "withheld"),
    "captured-earlier-cell": (body("def page_writable(cpu, vaddr):\n    return SAVED(cpu, vaddr)\n"),
                              "import lguest_book.page_tables as pt\nSAVED = pt.page_writable\n", "NameError"),
    "captured-in-cell": (body("import lguest_book.page_tables as pt\nSAVED = pt.page_writable\n\n"
                              "def page_writable(cpu, vaddr):\n    return SAVED(cpu, vaddr)\n"), None, "withheld"),
    "code-object": (body("import types\nimport lguest_book.page_tables as pt\n"
                         "page_writable = types.FunctionType(pt.page_writable.__code__, vars(pt))\n"), None, "withheld"),
    "wrapper": (body("import functools\nimport lguest_book.page_tables as pt\nREF = pt.page_writable\n\n"
                     "@functools.wraps(REF)\ndef page_writable(cpu, vaddr):\n    return bool(REF(cpu, vaddr))\n"), None, "withheld"),
    "gc-search": (body("import gc\npage_writable = next(f for f in gc.get_objects() if callable(f) and "
                       "getattr(f, '__name__', '') == 'page_writable' and getattr(f, '__module__', '') == 'lguest_book.page_tables')\n"),
                  None, "withheld"),
    "no-op-check": (body("import lguest_book.exercises\nlguest_book.exercises.check = lambda *a, **k: None\n\n"
                         "def page_writable(cpu, vaddr):\n    return True\n"), None, "expected False, got True"),
    "sys-modules": (body("import sys, types\nfake = types.ModuleType('lguest_book.exercises')\nfake.check = lambda *a, **k: None\n"
                         "sys.modules['lguest_book.exercises'] = fake\n\ndef page_writable(cpu, vaddr):\n    return True\n"),
                    None, "expected False, got True"),
    "patched-comparison": (body("import lguest_book.exercises as ex\nex._same = lambda a, b: True\n"
                                "ex.run_pair = lambda *a, **k: (1, None)\nex.snapshot = lambda g: {}\n\n"
                                "def page_writable(cpu, vaddr):\n    return True\n"), None, "expected False, got True"),
    "ipython-hook": (body("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n\n"
                          "def page_writable(cpu, vaddr):\n    return True\n"),
                     "import sys\nsys.excepthook = lambda *a: None\n", "NameError"),
    "read-real-source": (body(f"src = open({REAL_SOURCE!r}).read()\nns = {{}}\nexec(src, ns)\npage_writable = ns['page_writable']\n"),
                         None, "refuses to open"),
    "exec-package-copy": (body("import lguest_book.page_tables as pt\nns = dict(vars(pt))\n"
                               "exec(open(pt.__file__).read(), ns)\npage_writable = ns['page_writable']\n"), None, "withheld"),
    # Not a cheat but a wrong answer that looks right: it forgets the Switcher, whose register
    # page the shadow maps writable once the Guest has run.
    "forgot-the-switcher": (body("from lguest_book.page_tables import find_spte\n\n\ndef page_writable(cpu, vaddr):\n"
                                 "    where = find_spte(cpu, vaddr, False, 0, 0)\n"
                                 "    return where is not None and (cpu.lg.host.deref(where) & 3) == 3\n"),
                            None, "page_writable(switcher_addr + 0x00001000) after the Guest ran: expected False, got True"),
    "always-equal": (body("class Yes:\n    def __eq__(self, other):\n        return True\n\n"
                          "def page_writable(cpu, vaddr):\n    return Yes()\n"), None, "an object of type Yes"),
    "forged-channel": (body("import os\nfake = b'{\"source_error\": null, \"runs\": [{\"cases\": [], \"workloads\": [], \"error\": null},'"
                            " b'{\"cases\": [], \"workloads\": [], \"error\": null}]}'\nfor fd in range(3, 64):\n"
                            "    try:\n        os.write(fd, fake)\n    except OSError:\n        pass\nos._exit(0)\n"),
                       None, "no result"),
    "subprocess": (body("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'print(1)'])\n"
                        "def page_writable(cpu, vaddr):\n    return True\n"), None, "refuses"),
    "kill-kernel": (body("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"), "import os\nos._exit(1)\n", "refuses os.kill"),
    "exit-process": (body("import os\nos._exit(3)\n"), None, "stopped the grader's process"),
    "hang": (body("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"), None, "did not finish"),
    "memory-bomb": (body("hog = bytearray(8 << 30)\n"), None, "MemoryError"),
    "ctypes": (body("import ctypes\nctypes.CDLL(None)\n"), None, "refuses to import ctypes"),
    "tampered-cells": ("", "TAMPER", "NotImplementedError"),
}

HONEST = {
    "honest-reference": None,  # the instructor's own solution
    "honest-walrus": body("import lguest_book.page_tables as pt\n\n\ndef page_writable(cpu, vaddr):\n"
                          "    host = cpu.lg.host\n"
                          "    where = pt.find_spte(cpu, vaddr, False, 0, 0) if vaddr < host.switcher_addr else None\n"
                          "    return where is not None and (host.deref(where) & 3) == 3\n"),
    "honest-helpers": body("from lguest_book.page_tables import find_spte\nfrom lguest_book.x86 import _PAGE_PRESENT, _PAGE_RW\n\n"
                           "WANT = _PAGE_PRESENT | _PAGE_RW\n\n\ndef _entry(cpu, vaddr):\n"
                           "    if vaddr >= cpu.lg.host.switcher_addr:\n        return 0\n"
                           "    pointer = find_spte(cpu, vaddr, False, 0, 0)\n"
                           "    return 0 if pointer is None else cpu.lg.host.deref(pointer)\n\n\n"
                           "def page_writable(cpu, vaddr):\n    return (_entry(cpu, vaddr) & WANT) == WANT\n"),
    "honest-inside-stub": HEAD + "def page_writable(cpu, vaddr):\n" + inside(
        "if vaddr >= cpu.lg.host.switcher_addr:\n    return False\nspte = find_spte(cpu, vaddr, False, 0, 0)\n"
        "try:\n    flags = cpu.lg.x86.pte_flags(cpu.lg.host.deref(spte))\nexcept Exception:\n    return False\n"
        "print('checking', hex(vaddr))\nreturn bool(flags & 1) and bool(flags & 2)") + "\n",
    "honest-copy": body("from lguest_book.page_tables import find_spte, ULONG_MASK\n"
                        "from lguest_book.x86 import _PAGE_PRESENT, _PAGE_RW\n\n\n"
                        "def page_writable(c, address):\n"
                        "    if address >= c.lg.host.switcher_addr:\n        return False\n"
                        "    entry = find_spte(c, address, False, 0, 0)\n    if entry is None:\n        return False\n"
                        "    f = c.lg.x86.pte_flags(c.lg.host.deref(entry)) & ULONG_MASK\n"
                        "    return (f & (_PAGE_PRESENT | _PAGE_RW)) == (_PAGE_PRESENT | _PAGE_RW)\n"),
}


def _submission(released: nbformat.NotebookNode, solution: nbformat.NotebookNode, answer, extra):
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    answer_cell = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    grade_cell = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    if answer is None:
        nb.cells[answer_cell].source = next(c.source for c in solution.cells
                                            if c.metadata.get("nbgrader", {}).get("solution"))
    elif answer:
        nb.cells[answer_cell].source = answer
    if extra == "TAMPER":
        # The grade cell replaced by a print, its points raised, a fake success stored, and the
        # answer cell (left as the stub) turned into a grade cell worth 100 points.
        nb.cells[grade_cell].source = "print('all checks passed')"
        nb.cells[grade_cell].metadata["nbgrader"]["points"] = 50
        nb.cells[grade_cell].outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ all passed\n")]
        nb.cells[answer_cell].metadata["nbgrader"].update(grade=True, points=100)
    elif extra:
        nb.cells.insert(answer_cell, nbformat.v4.new_code_cell(extra))
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    course = root / "course"
    assert classroom.make_course(course, notebooks=[CH3], time_limit=4.0, timeout=8.0) == ["ch03"]
    assert main(["classroom", "generate", "ch03", "--course", str(course)]) == 0
    released = nbformat.read(course / "release" / "ch03" / CH3.name, 4)
    solution = nbformat.read(course / "source" / "ch03" / CH3.name, 4)
    archive = root / "lms-export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, (answer, extra, _why) in CHEATS.items():
            z.writestr(f"export/{name}_{CH3.name}", nbformat.writes(_submission(released, solution, answer, extra)))
        for name, answer in HONEST.items():
            z.writestr(f"export/{name}/{CH3.name}", nbformat.writes(_submission(released, solution, answer, None)))
        z.writestr(f"export/blank_{CH3.name}", nbformat.writes(released))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["classroom", "collect", "ch03", "--course", str(course), "--zip", str(archive)]) == 0
    assert err.getvalue() == ""  # no warning in a normal run
    assert classroom.submitted(course, "ch03") == sorted([*CHEATS, *HONEST, "blank"])
    done = classroom.autograde(course, "ch03")
    return course, done


def _verdict(course: Path, student: str) -> dict:
    nb = nbformat.read(course / "autograded" / student / "ch03" / CH3.name, 4)
    return nb.metadata["lguest_book_grading"]["ch3-page-writable-check"]


def test_catalogue_size():
    assert len(CHEATS) >= 12 and len(HONEST) >= 4


@pytest.mark.parametrize("student", sorted(CHEATS))
def test_every_cheat_scores_zero_and_is_told_why(graded, student):
    course, _ = graded
    assert classroom.scores(course, "ch03", student)["total"] == (0.0, 2.0)
    verdict = _verdict(course, student)
    assert not verdict["ok"]
    assert CHEATS[student][2] in verdict["text"], verdict["text"]
    # what the student's feedback will show: the grade cell's stored error
    cell = next(c for c in nbformat.read(course / "autograded" / student / "ch03" / CH3.name, 4).cells
                if c.metadata.get("nbgrader", {}).get("grade"))
    assert cell.outputs[0].output_type == "error" and CHEATS[student][2] in cell.outputs[0].evalue


@pytest.mark.parametrize("student", sorted(HONEST))
def test_every_honest_answer_gets_full_marks(graded, student):
    course, _ = graded
    assert classroom.scores(course, "ch03", student)["total"] == (2.0, 2.0)
    assert _verdict(course, student)["ok"]


def test_the_untouched_student_version_scores_zero(graded):
    course, _ = graded
    assert classroom.scores(course, "ch03", "blank")["total"] == (0.0, 2.0)


def test_a_copy_of_the_model_is_flagged_for_the_instructor_only(graded, capsys):
    course, _ = graded
    rows = {r["student"]: r for r in classroom.report(course, "ch03")}
    assert [s for s, r in rows.items() if r["flags"]] == ["honest-copy"]
    assert "same syntax tree" in rows["honest-copy"]["flags"][0]
    assert main(["classroom", "report", "ch03", "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert "FLAG ch3-page-writable-check: copy" in out and "1 submission(s) flagged" in out


def test_a_normal_run_logs_no_warning_but_the_tampered_notebook(graded):
    _, done = graded
    warnings = classroom.warnings_of(done)
    assert not any("SAWarning" in w for w in warnings)
    # nbgrader reports the one submission whose locked grade cell was really changed, and
    # the flagged copy; nobody else's cells are "changed"
    changed = [w for w in warnings if "has changed" in w]
    assert changed and all("ch3-page-writable-check" in w for w in changed)
    assert len([w for w in warnings if "checksum" in w]) == 1
    assert all("has changed" in w or "flagged for the instructor" in w for w in warnings), warnings


def test_feedback_pages_and_csv_export(graded, capsys):
    course, _ = graded
    # one student's page (each nbgrader call costs seconds): an honest answer's verdict shows,
    # the hidden tests' text does not
    assert main(["classroom", "feedback", "ch03", "--course", str(course), "--student", "honest-walrus"]) == 0
    assert capsys.readouterr().err == ""  # no nbgrader warning (display_data_priority) in a normal run
    pages = sorted((course / "feedback").glob("*/ch03/*.html"))
    assert [p.parent.parent.name for p in pages] == ["honest-walrus"]
    honest = pages[0].read_text()
    from lguest_book import exercises
    n = exercises.evaluate("ch3-page-writable", exercises.reference("page_writable"), hidden=True).total
    assert f"hidden checks ✓ ch3-page-writable: {n}/{n} checks passed" in honest and "hidden=True" not in honest
    assert main(["classroom", "export", "--course", str(course), "--to", "grades.csv"]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert float(rows["honest-helpers"]["score"]) == 2.0 and float(rows["hang"]["score"]) == 0.0
    assert len(rows) == len(CHEATS) + len(HONEST) + 1


def test_the_release_shows_no_line_of_the_function_under_exercise(graded):
    course, _ = graded
    released = nbformat.read(course / "release" / "ch03" / CH3.name, 4)
    assert classroom.leaks(released) == []
    text = (course / "release" / "ch03" / CH3.name).read_text()
    assert "left out of the student edition" in text
    # the instructor's book keeps the model's source
    assert classroom.leaks(nbformat.read(CH3, 4))


def test_cut_out_keeps_the_signature_and_every_other_line_where_it_was():
    source = grading.PACKAGE_DIR.joinpath("page_tables.py").read_text()
    cut = grading.cut_out(source, "page_writable")
    assert len(cut.splitlines()) == len(source.splitlines())
    before, after = source.splitlines(), cut.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    start = next(i for i, line in enumerate(before) if line.startswith("def page_writable("))
    assert changed and start <= min(changed) and max(changed) < start + 15
    assert "def page_writable(cpu: LgCpu, vaddr: int):" in cut  # the signature stays: arity is still checked
    assert "withheld while grading" in cut
    with pytest.raises(ValueError, match="no top-level function"):
        grading.cut_out(source, "no_such_function")
