"""The classroom edition: nbgrader courses from the book, and self-study student copies.

The graded exercises live in the chapters themselves, in nbgrader's own format: a solution
cell (metadata ``nbgrader.solution``) whose answer sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, and a locked grading cell (``nbgrader.grade``, with points) that calls
:func:`lguest_book.exercises.check`, with the instructor's extra checks between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.  So nbgrader's commands work on them
unchanged:

* :func:`make_course` lays out an nbgrader course: ``source/chNN/NN-name.ipynb`` for every
  chapter with graded cells, ``nbgrader_config.py`` (offline, sqlite gradebook inside the course).
* :func:`generate` and :func:`autograde` run ``nbgrader generate_assignment`` and
  ``nbgrader autograde`` in it; :func:`scores` reads the gradebook.
* :func:`student_copy` makes the self-study version without any nbgrader machinery:
  solutions replaced by nbgrader's stub, hidden tests removed, checks kept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .book import BOOK, chapters

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*(\n|$)", re.S | re.M)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*(\n|$)", re.S | re.M)
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def graded_chapters(book: Path | str = BOOK) -> list[Path]:
    """The chapter notebooks that contain nbgrader grading cells."""
    import nbformat

    out = []
    for nb_path in chapters(book):
        nb = nbformat.read(nb_path, 4)
        if any(c.metadata.get("nbgrader", {}).get("grade") for c in nb.cells):
            out.append(nb_path)
    return out


def assignment_id(notebook: Path) -> str:
    return f"ch{Path(notebook).name[:2]}"


CONFIG = '''# nbgrader configuration for the lguest-book course (made by `lguest-book classroom course`).
c = get_config()
c.CourseDirectory.course_id = "lguest-book"
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
# Student code runs through the model with its own time limits; this is nbgrader's backstop.
c.ExecutePreprocessor.timeout = 300
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
'''


def make_course(dest: Path | str, book: Path | str = BOOK, notebooks: list[Path] | None = None) -> list[str]:
    """Create (or refresh) an nbgrader course at ``dest``; returns the assignment ids."""
    dest = Path(dest).resolve()
    notebooks = graded_chapters(book) if notebooks is None else [Path(n) for n in notebooks]
    if not notebooks:
        raise ValueError("no notebook with graded cells was given or found")
    (dest / "source").mkdir(parents=True, exist_ok=True)
    (dest / "nbgrader_config.py").write_text(CONFIG.format(root=str(dest), db=str(dest / "gradebook.db")))
    ids = []
    for nb in notebooks:
        aid = assignment_id(nb)
        folder = dest / "source" / aid
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(nb, folder / nb.name)
        ids.append(aid)
    return ids


def _nbgrader(course: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    import os

    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = dict(os.environ)
    # nbgrader runs the `alembic` command of its own environment: put that environment first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def generate(course: Path | str, assignment: str) -> Path:
    """``nbgrader generate_assignment``: the student version lands in ``release/``."""
    course = Path(course).resolve()
    _nbgrader(course, "generate_assignment", assignment, "--force")
    return course / "release" / assignment


def submit(course: Path | str, assignment: str, student: str, notebooks: list[Path]) -> Path:
    """Place a student's notebooks where nbgrader collects submissions."""
    folder = Path(course).resolve() / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.copy(nb, folder / Path(nb).name)
    return folder


def autograde(course: Path | str, assignment: str, student: str | None = None) -> None:
    args = ["autograde", assignment, "--create", "--force"]
    if student:
        args.append(f"--student={student}")
    _nbgrader(Path(course).resolve(), *args)


def scores(course: Path | str, assignment: str, student: str) -> dict:
    """{"total": (score, max), grade_id: (score, max), ...} from the course's gradebook."""
    from nbgrader.api import Gradebook

    course = Path(course).resolve()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(assignment, student)
        out = {"total": (sub.score, sub.max_score)}
        for nb in sub.notebooks:
            for grade in nb.grades:
                out[grade.cell.name] = (grade.score, grade.max_score)
    return out


# --- self-study ------------------------------------------------------------------------------
def strip_solutions(source: str) -> str:
    """Solution regions become nbgrader's stub (keeping their indentation); hidden tests go."""
    def stub(match: re.Match) -> str:
        indent = match.group(1)
        return "".join(f"{indent}{line}\n" for line in STUB.splitlines())

    return HIDDEN.sub("", SOLUTION.sub(stub, source))


def student_copy(src: Path | str, dst: Path | str) -> Path:
    """Write the self-study version of notebook ``src`` to ``dst`` (a file or a folder)."""
    import nbformat

    src, dst = Path(src), Path(dst)
    if dst.is_dir() or not dst.suffix:
        dst.mkdir(parents=True, exist_ok=True)
        dst = dst / src.name
    nb = nbformat.read(src, 4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if "BEGIN SOLUTION" in cell.source or "BEGIN HIDDEN TESTS" in cell.source or meta.get("solution") or meta.get("grade"):
            cell.source = strip_solutions(cell.source)
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
    nbformat.write(nb, dst)
    return dst


def student_copies(dest: Path | str, book: Path | str = BOOK) -> list[Path]:
    """Self-study copies of every chapter with graded cells (the others are copied as they are)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    graded = set(graded_chapters(book))
    for nb in chapters(book):
        out.append(student_copy(nb, dest) if nb in graded else Path(shutil.copy(nb, dest / nb.name)))
    return out
