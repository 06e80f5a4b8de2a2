"""The classroom edition: nbgrader courses from the book, and self-study student copies.

The graded exercises live in the chapters themselves, in nbgrader's own format: a solution
cell (metadata ``nbgrader.solution``) whose answer sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, and a locked grading cell (``nbgrader.grade``, with points) that calls
:func:`lguest_book.exercises.check`, with the instructor's extra checks between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.  So nbgrader's commands work on them:

* :func:`make_course` lays out an nbgrader course: ``source/chNN/NN-name.ipynb`` for every
  chapter with graded cells (the student edition: cells showing the model's source of a
  function under exercise replaced by its task), and ``nbgrader_config.py`` (offline, sqlite
  gradebook inside the course) whose autograde step is :class:`lguest_book.grading.SecureGrade`:
  the verdicts are decided outside the students' code.
* :func:`generate`, :func:`release`, :func:`collect` (exchange or LMS zip files),
  :func:`autograde`, :func:`feedback`, :func:`export` run nbgrader's steps with this
  environment's nbgrader; :func:`scores` and :func:`report` read the results.
* :func:`student_copy` makes the self-study version without any nbgrader machinery:
  solutions replaced by nbgrader's stub, hidden tests removed, checks kept, answer sources hidden.
"""

from __future__ import annotations

import os
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
# `nbgrader validate` still runs a notebook in a kernel (autograde does not, see below).
c.ExecutePreprocessor.timeout = 300
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}

# Grading the student's code cannot reach (lguest_book/grading.py).  Autograde does not run
# the submission in a kernel: SecureGrade reads each grade cell's checks from the
# instructor's text, runs the answer cell's text in a sandboxed process against a copy of the
# package without the function under exercise, compares what it did with the model's own
# behaviour here, and writes the verdict into the grade cell, which SaveAutoGrades scores.
# RestoreCells is nbgrader's OverwriteCells without its false "checksum has changed" alarm
# for grade cells with hidden tests, and it also restores every known cell's grading flags.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "lguest_book.grading.RestoreCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "lguest_book.grading.SecureGrade",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.RestoreCells.add_missing_cells = True  # a deleted grade cell comes back, and scores 0
c.SecureGrade.time_limit = {time_limit!r}  # seconds for each run of an exercise's checks
c.SecureGrade.timeout = {timeout!r}  # wall-clock seconds for one answer's sandbox, whatever it does
c.SecureGrade.jobs = 0  # answers graded at once (0: one per CPU)
# Feedback shows the verdicts, not the hidden tests' text.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "lguest_book.grading.FeedbackHiddenTests",  # nbgrader's ClearHiddenTests, minus a harmless warning
]
# Collecting from the exchange: each submission is filed under the unix user who made it, and
# one holding anything but its submitter's own files (a symbolic link to the instructor's
# source, say) is not collected (lguest_book/hub_exchange.py).
c.ExchangeFactory.collect = "lguest_book.hub_exchange.OwnerCheckedCollect"
# Submissions exported from an LMS as zip files (`lguest-book classroom collect ch03 --zip FILE`,
# nbgrader zip_collect): each notebook named STUDENT_NN-chapter.ipynb, or STUDENT/NN-chapter.ipynb.
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/]+?)[_/](?P<file_id>[0-9][0-9]-[^/]+[.]ipynb)$"

# nbgrader 0.9 builds each new submission's rows by hand and adds them to its session itself
# (Gradebook.add_submission: `self.db.add(submission)`); SQLAlchemy 2 notes, harmlessly, that it
# no longer cascades them in through backrefs while a lazy load autoflushes.  Only that notice
# is silenced: any other SQLAlchemy warning still shows.
import warnings
from sqlalchemy.exc import SAWarning
warnings.filterwarnings("ignore", category=SAWarning,
                        message=r"Object of type <Submitted\\w+> not in session, add operation along")
{exchange}'''


class CourseError(ValueError):
    """A bad course directory: the message names it, in one line."""


def _check_target(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise CourseError(f"{dest} is a file, not a directory: choose another course directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise CourseError(f"{dest} is not empty (an existing course?): use --force to refresh its "
                          "nbgrader_config.py and source/ notebooks")
    probe = dest
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CourseError(f"{dest}: cannot write to {probe}")


def make_course(dest: Path | str, book: Path | str = BOOK, notebooks: list[Path] | None = None, *,
                force: bool = False, exchange: Path | str | None = None,
                time_limit: float = 10.0, timeout: float = 60.0) -> list[str]:
    """Create an nbgrader course at ``dest`` (refuses a non-empty directory unless ``force``);
    returns the assignment ids.  ``exchange``: the folder of nbgrader's exchange (release,
    fetch, submit, collect), if the class uses one."""
    from .locate import make_writable_dir, unmake

    dest = Path(dest).resolve()
    _check_target(dest, force)
    notebooks = graded_chapters(book) if notebooks is None else [Path(n) for n in notebooks]
    if not notebooks:
        raise ValueError("no notebook with graded cells was given or found")
    made: list[Path] = []  # what this call made, removed again if it fails: a retry needs no --force
    before = set(dest.iterdir()) if dest.is_dir() else None
    lines = ""
    try:
        if exchange is not None:  # first: a bad exchange leaves no half-made course behind
            try:
                made += make_writable_dir(exchange)
            except OSError as err:
                raise CourseError(f"--exchange {exchange}: cannot make or write that folder "
                                  f"({err.strerror or err})") from None
            if made:  # a new exchange: every user may submit to it (release_assignment would change it so)
                os.chmod(exchange, 0o777)
            lines = f"c.Exchange.root = {str(Path(exchange).resolve())!r}\n"
        try:
            made = make_writable_dir(dest / "source") + made
        except OSError as err:
            raise CourseError(f"{dest}: {err.strerror or err}") from None
        (dest / "nbgrader_config.py").write_text(CONFIG.format(
            root=str(dest), db=str(dest / "gradebook.db"), exchange=lines, time_limit=float(time_limit),
            timeout=float(timeout)))
        ids = []
        for nb in notebooks:
            aid = assignment_id(nb)
            folder = dest / "source" / aid
            folder.mkdir(parents=True, exist_ok=True)
            hide_answer_sources_file(nb, folder / nb.name)
            ids.append(aid)
    except BaseException:
        if before is None:  # the course folder is this call's own: all of it goes
            shutil.rmtree(dest, ignore_errors=True)
        elif dest.is_dir():  # an existing folder: what this call added to it goes
            for entry in set(dest.iterdir()) - before:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        unmake(made)
        raise
    return ids


class NbgraderError(RuntimeError):
    """An nbgrader step failed; the message says which and why (nbgrader's own error lines)."""


def _course(course: Path | str) -> Path:
    course = Path(course).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise CourseError(f"{course} is not a course made by `lguest-book classroom course` (no nbgrader_config.py)")
    return course


def assignments(course: Path | str) -> list[str]:
    """The assignment ids of a course: its ``source/`` folders."""
    return sorted(p.name for p in (_course(course) / "source").glob("*") if p.is_dir())


def check_assignment(course: Path | str, assignment: str) -> None:
    """Refuse, in one line, an assignment the course does not have (before nbgrader says so
    twice, or a report finds nothing to say)."""
    known = assignments(course)
    if assignment not in known:
        raise CourseError(f"no assignment {assignment} in this course; there are {', '.join(known) or 'none'}")


def exchange_root(course: Path | str) -> Path:
    """The exchange nbgrader releases to and collects from for ``course``: its
    ``nbgrader_config.py``'s ``Exchange.root`` (``classroom course --exchange DIR``), else
    nbgrader's default (``/usr/local/share/nbgrader/exchange``)."""
    from traitlets.config.loader import PyFileConfigLoader

    course = _course(course)
    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
        root = config.Exchange.root if "root" in config.Exchange else None
    except Exception:  # noqa: BLE001 - an instructor's edit nbgrader itself will report
        root = None
    if not root:
        from nbgrader.exchange.default.exchange import Exchange

        root = Exchange.class_traits()["root"].default_value
    return Path(root)


WARNINGS: list[str] = []  # every warning nbgrader logged in this process's steps (none in a normal run)


def _nbgrader(course: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course`` with this environment's nbgrader, activated or not.
    Returns the finished process; its warnings and errors are in ``.stderr``."""
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise NbgraderError("nbgrader is not installed here: run `scripts/bootstrap classroom` "
                            "(or pip install 'lguest-book[classroom]')") from None
    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = dict(os.environ)
    # nbgrader runs the `alembic` command of its own environment: put that environment first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONWARNINGS", "")
    done = subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=env)
    WARNINGS.extend(warnings_of(done))
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line or "Error" in line]
        detail = "\n".join(errors[-8:]) or (done.stdout + done.stderr)[-2000:]
        raise NbgraderError(f"nbgrader {args[0]} failed:\n{detail}")
    return done


# nbgrader logs these at WARNING level while doing what it was asked: zip_collect making the
# folders it extracts into, autograde --force replacing an earlier grading of a submission.
# release_assignment making the exchange (our own message names it), zip_collect --force
# clearing a student's earlier submission before it puts the new one in.
ROUTINE = ("Directory not found. Creating:", "Removing existing assignment:", "Creating exchange directory:",
           "Clearing existing files in")


def warnings_of(done: subprocess.CompletedProcess) -> list[str]:
    """The WARNING and ERROR lines nbgrader logged, but its :data:`ROUTINE` notices (none in
    a normal run)."""
    records: list[str] = []  # a log record is its "[App | LEVEL]" line and the indented lines after it
    for stream in (done.stdout, done.stderr):
        for line in stream.splitlines():
            if records and line[:1] in (" ", "\t") and records[-1].startswith("[") and line.strip():
                records[-1] += " " + line.strip()
            elif line.strip():
                records.append(line.rstrip())
    return [" ".join(r.split()) for r in records
            if ("WARNING" in r or "ERROR" in r or "Warning:" in r) and not any(x in r for x in ROUTINE)]


def generate(course: Path | str, assignment: str) -> Path:
    """``nbgrader generate_assignment``: the student version lands in ``release/``."""
    course = _course(course)
    _nbgrader(course, "generate_assignment", assignment, "--force")
    return course / "release" / assignment


def release(course: Path | str, assignment: str) -> tuple[Path, Path]:
    """``nbgrader generate_assignment`` then ``release_assignment``: students can fetch it
    from the exchange (:func:`exchange_root`: ``classroom course --exchange DIR``, else
    nbgrader's default, which nbgrader makes if it is missing).  Returns (the student version's
    folder in ``release/``, the exchange's folder)."""
    course = _course(course)
    root = exchange_root(course)
    cannot = (f"cannot make or write the exchange at {root}: give the course one of its own, "
              f"`lguest-book classroom course {course} --exchange DIR --force`")
    from .locate import make_writable_dir, unmake

    try:  # a probe: what it makes goes again (nbgrader makes the exchange itself, with its permissions)
        unmake(make_writable_dir(root))
    except OSError:
        raise CourseError(cannot) from None
    generate(course, assignment)
    try:
        done = _nbgrader(course, "release_assignment", assignment, "--force")
    except NbgraderError as err:
        if str(root) in str(err) or "Could not create" in str(err):
            raise CourseError(cannot) from None
        raise
    found = re.search(r"Destination: (.*)/[^/]+/outbound/[^/\n]+$", done.stdout + done.stderr, re.M)
    return course / "release" / assignment, Path(found.group(1)) if found else root


def submit(course: Path | str, assignment: str, student: str, notebooks: list[Path]) -> Path:
    """Place a student's notebooks where nbgrader collects submissions."""
    folder = Path(course).resolve() / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.copy(nb, folder / Path(nb).name)
    return folder


def submitted(course: Path | str, assignment: str) -> list[str]:
    """The students with a submission of ``assignment`` in ``submitted/``."""
    root = Path(course).resolve() / "submitted"
    return sorted(p.parent.name for p in root.glob(f"*/{assignment}") if p.is_dir())


def collect(course: Path | str, assignment: str, zips: list[Path | str] = ()) -> list[str]:
    """Bring submissions into ``submitted/``: from the exchange (``nbgrader collect``), or
    from zip files exported by an LMS (``nbgrader zip_collect``; inside a zip, each notebook is
    named ``STUDENT_NN-chapter.ipynb`` or sits in a folder ``STUDENT/``).  Returns the
    students who have a submission."""
    import zipfile

    course = _course(course)
    if zips:
        for z in map(Path, zips):  # every file first: a bad one leaves the course as it was
            if not z.is_file():
                raise CourseError(f"{z}: no such zip file")
            if not zipfile.is_zipfile(z):
                raise CourseError(f"{z}: not a zip file")
        archive = course / "downloaded" / assignment / "archive"
        archive.mkdir(parents=True, exist_ok=True)
        for z in map(Path, zips):
            shutil.copy(z, archive / z.name)
        if not (course / "release" / assignment).is_dir():
            generate(course, assignment)  # zip_collect checks notebook names against release/
        _nbgrader(course, "zip_collect", assignment, "--force")
    else:
        _nbgrader(course, "collect", assignment, "--update")
    return submitted(course, assignment)


def autograde(course: Path | str, assignment: str, student: str | None = None) -> subprocess.CompletedProcess:
    """``nbgrader autograde`` (its grading step is :class:`lguest_book.grading.SecureGrade`)."""
    args = ["autograde", assignment, "--create", "--force"]
    if student:
        args.append(f"--student={student}")
    return _nbgrader(_course(course), *args)


def feedback(course: Path | str, assignment: str, student: str | None = None) -> list[Path]:
    """``nbgrader generate_feedback``: one HTML page per student and notebook in ``feedback/``."""
    course = _course(course)
    _nbgrader(course, "generate_feedback", assignment, "--force", *([f"--student={student}"] if student else []))
    return sorted((course / "feedback").glob(f"{student or '*'}/{assignment}/*.html"))


def export(course: Path | str, to: Path | str) -> Path:
    """``nbgrader export``: every grade of every student, as CSV."""
    course = _course(course)
    to = Path(to).resolve()
    _nbgrader(course, "export", f"--to={to}")
    return to


def scores(course: Path | str, assignment: str, student: str) -> dict:
    """{"total": (score, max), grade_id: (score, max), ...} from the course's gradebook."""
    import warnings

    from nbgrader.api import Gradebook

    course = Path(course).resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            sub = gb.find_submission(assignment, student)
            out = {"total": (sub.score, sub.max_score)}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    out[grade.cell.name] = (grade.score, grade.max_score)
    return out


def report(course: Path | str, assignment: str) -> list[dict]:
    """The instructor's report: per student, the score and what the grader flagged (an answer
    that is the model's own function after renaming), read from the autograded notebooks."""
    import nbformat

    course = _course(course)
    rows = []
    for student in sorted(p.parent.name for p in (course / "autograded").glob(f"*/{assignment}")):
        try:
            total = scores(course, assignment, student)["total"]
        except Exception:  # noqa: BLE001 - autograded but not in the gradebook
            total = (None, None)
        flags, failed = [], []
        for nb_path in sorted((course / "autograded" / student / assignment).glob("*.ipynb")):
            results = nbformat.read(nb_path, 4).metadata.get("lguest_book_grading", {})
            for grade_id, r in results.items():
                flags += [f"{grade_id}: {f}" for f in r.get("flags", [])]
                if not r.get("ok"):
                    failed.append(grade_id)
        rows.append({"student": student, "score": total[0], "max": total[1], "failed": failed, "flags": flags})
    return rows


# --- self-study ------------------------------------------------------------------------------
def strip_solutions(source: str) -> str:
    """Solution regions become nbgrader's stub (keeping their indentation); hidden tests go."""
    def stub(match: re.Match) -> str:
        indent = match.group(1)
        return "".join(f"{indent}{line}\n" for line in STUB.splitlines())

    return HIDDEN.sub("", SOLUTION.sub(stub, source))


# --- no answer in plain sight ----------------------------------------------------------------
ANSWER_TAG = "answer-source"  # a cell tagged so shows the source of a function under exercise


def exercise_targets() -> dict[str, object]:
    """{name of a function under exercise: its Exercise}."""
    from . import exercises as ex

    out = {}
    for e in ex.EXERCISES.values():
        ref = e.reference_impl or ex.reference(e.target)
        out[ref.__name__] = e
        out[e.target] = e
    return out


def answer_lines() -> dict[str, set[str]]:
    """{function under exercise: the lines of its model source that appear nowhere else in its
    file} (stripped; comments, docstrings and very short lines left out)."""
    import inspect

    from . import exercises as ex

    out: dict[str, set[str]] = {}
    for e in ex.EXERCISES.values():
        ref = e.reference_impl or ex.reference(e.target)
        whole = Path(inspect.getsourcefile(ref)).read_text().splitlines()
        counts: dict[str, int] = {}
        def bare(line: str) -> str:
            return line.split("  #")[0].strip()

        for line in whole:
            counts[bare(line)] = counts.get(bare(line), 0) + 1
        body = inspect.getsource(ref).splitlines()[1:]
        lines = set()
        for line in body:
            text = bare(line)
            if len(text) < 14 or text.startswith(("#", '"""', "'")) or counts.get(text, 0) > 1:
                continue
            lines.add(text)
        out[e.target] = lines
    return out


def _texts(cell) -> list[str]:
    out = [cell.get("source", "")]
    for o in cell.get("outputs", []):
        if "text" in o:
            out.append("".join(o["text"]))
        for value in (o.get("data") or {}).values():
            out.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else "")
    return out


def _shows(cell, target: str) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    if ANSWER_TAG in tags:
        return True
    return cell.get("cell_type") == "code" and bool(re.search(
        r"\b(twin|source|getsource)\(\s*(['\"])%s\2" % re.escape(target), cell.get("source", "")))


def leaks(nb, lines: dict[str, set[str]] | None = None) -> list[tuple[int, str, str]]:
    """(cell index, function, line) for every line of a function under exercise that a cell's
    source or stored output shows (solution regions aside: nbgrader strips those)."""
    lines = answer_lines() if lines is None else lines
    out = []
    for i, cell in enumerate(nb.cells):
        texts = _texts(cell)
        texts[0] = strip_solutions(texts[0])
        joined = "\n".join(texts)
        for target, wanted in lines.items():
            for line in wanted:
                if line in joined:
                    out.append((i, target, line))
    return out


def hide_answer_sources(nb):
    """The student edition of a chapter: every cell that shows the source of a function under
    exercise (a twin cell, a cell tagged ``answer-source``) becomes a note saying what the
    function must do; any other stored output showing a line of one is cleared."""
    import nbformat

    targets = exercise_targets()
    lines = answer_lines()
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"):
            continue  # nbgrader's own cells: solutions are stripped by nbgrader
        shown = [name for name in targets if _shows(cell, name)]
        if shown:
            e = targets[shown[0]]
            note = nbformat.v4.new_markdown_cell(
                f"**`{e.target}()`** · {e.marker} — its code is left out of the student edition: writing it "
                f"is the graded exercise of chapter {e.chapter} (*{e.title}*).  What it must do:\n\n> {e.task}")
            note["id"] = cell.get("id", f"answer-{i}")
            note.metadata["tags"] = [ANSWER_TAG + "-hidden"]
            nb.cells[i] = note
    for i in reversed(range(len(nb.cells))):
        meta = nb.cells[i].get("metadata", {}).get("nbgrader", {})
        before = nb.cells[i - 1].get("metadata", {}).get("tags", []) if i else []
        if meta.get("solution") and not meta.get("grade") and nb.cells[i].get("cell_type") == "code" \
                and "grading-note" not in before:
            nb.cells.insert(i, _grading_note(nb.cells[i].get("id", str(i))))
    for i, _target, _line in leaks(nb, lines):
        cell = nb.cells[i]
        if cell.get("cell_type") == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"):
            cell.outputs = []
            cell.execution_count = None
    return nb


GRADING_NOTE = (
    "*How this exercise is graded.*  The check below runs in your notebook as you work.  When your "
    "instructor grades it, only **the text of the next cell** is run, in a fresh process of its own "
    "where the model's own version of the function you write is withheld, and compared with the "
    "model: so keep in that cell every import your answer needs, and write the function yourself.")


def _grading_note(cell_id: str):
    import nbformat

    note = nbformat.v4.new_markdown_cell(GRADING_NOTE)
    note["id"] = f"note-{cell_id}"[:64]
    note.metadata["tags"] = ["grading-note"]
    return note


def hide_answer_sources_file(src: Path | str, dst: Path | str) -> Path:
    import nbformat

    nb = nbformat.read(src, 4)
    nbformat.write(hide_answer_sources(nb), dst)
    return Path(dst)


def student_copy(src: Path | str, dst: Path | str) -> Path:
    """Write the self-study version of notebook ``src`` to ``dst`` (a file or a folder):
    solutions stubbed, hidden tests removed, checks kept, answer sources hidden."""
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
    nbformat.write(hide_answer_sources(nb), dst)
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
