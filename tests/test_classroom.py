"""The classroom edition: every chapter's graded cells graded as autograde grades them, the
course's source notebooks and the self-study copy free of answers, the course command's
refusals.  (The real nbgrader round trip, with the cheating catalogue, is
tests/test_grading_catalogue.py.)"""

import re
from pathlib import Path

import nbformat
import pytest

from lguest_book import book, classroom

pytest.importorskip("nbgrader")

GRADED = classroom.graded_chapters()


def _solutions(nb_path: Path) -> list[str]:
    """The text of every solution region of a chapter (what a student must not see)."""
    nb = nbformat.read(nb_path, 4)
    out = []
    for cell in nb.cells:
        for m in re.finditer(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S):
            out.extend(line.strip() for line in m.group(1).splitlines() if line.strip())
    return out


def test_graded_exercises_in_every_chapter_1_to_8_and_the_lab():
    assert [p.name[:2] for p in GRADED] == ["01", "02", "03", "04", "05", "06", "07", "08", "11"]
    for nb in GRADED:
        cells = nbformat.read(nb, 4).cells
        kinds = [c.metadata["nbgrader"] for c in cells if "nbgrader" in c.metadata]
        assert any(k["solution"] for k in kinds) and any(k["grade"] and k["points"] > 0 for k in kinds)


def test_every_chapter_grades_its_own_solution_full_and_the_stub_zero():
    """Each chapter's grade cells, graded the way autograde grades them (in the sandbox,
    against the model's own observations), without nbgrader's overhead; the one nbgrader
    round trip is tests/test_grading_catalogue.py."""
    from lguest_book.grading import Grader, gradable

    import concurrent.futures

    grader = Grader(time_limit=10, timeout=60)
    try:
        jobs = []
        for nb_path in GRADED:
            cells = gradable(nbformat.read(nb_path, 4))
            assert cells, nb_path
            for _index, answer, checks in cells:
                lab_challenge = all(c.exercise.startswith("lab:") for c in checks)
                assert lab_challenge or {c.hidden for c in checks} == {False, True}, (nb_path.name, checks)
                jobs.append((nb_path.name, answer, checks))
        wrong_checks = [c for _i, _a, cs in gradable(nbformat.read(GRADED[2], 4)) for c in cs]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # as autograde does
            good = list(pool.map(lambda j: grader.grade(j[1], j[2]), jobs))
            stub = list(pool.map(lambda j: grader.grade(classroom.strip_solutions(j[1]), j[2]), jobs))
            wrong = pool.submit(grader.grade, "def page_writable(cpu, vaddr):\n    return True  # never looks\n",
                                wrong_checks).result()
        for (name, _answer, checks), g, st in zip(jobs, good, stub):
            lab_challenge = all(c.exercise.startswith("lab:") for c in checks)
            assert g.ok and ("replayed on a pristine Host" if lab_challenge else "hidden checks ✓") in g.text, (name, g.text)
            assert not st.ok and "NotImplementedError" in st.text, (name, st.text)
        assert not wrong.ok and "page_writable(0x08049000) after a read: expected False, got True" in wrong.text
    finally:
        grader.close()


def test_course_source_notebooks_show_no_answer_once_solutions_are_stripped(tmp_path):
    ids = classroom.make_course(tmp_path / "c")
    for aid, original in zip(ids, GRADED):
        nb = nbformat.read(tmp_path / "c" / "source" / aid / original.name, 4)
        for cell in nb.cells:  # what generate_assignment does to solutions and hidden tests
            cell.source = classroom.strip_solutions(cell.source)
        assert classroom.leaks(nb) == [], aid
        notes = [c for c in nb.cells if "left out of the student edition" in c.source]
        assert all(c.cell_type == "markdown" for c in notes)
        if aid not in ("ch05", "ch11"):  # chapter 5's policy and the lab's attack are new code: the book never prints them
            assert classroom.leaks(nbformat.read(original, 4)), f"{aid}: the instructor's book keeps the model's source"
            assert notes, aid


def test_course_refuses_a_non_empty_target_and_answers_bad_ones_in_one_line(tmp_path, capsys):
    from lguest_book.cli import main

    course = tmp_path / "c"
    assert main(["classroom", "course", str(course)]) == 0
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\n# the instructor's own line\n")
    capsys.readouterr()
    assert main(["classroom", "course", str(course)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert "the instructor's own line" in config.read_text()
    assert main(["classroom", "course", str(course), "--force"]) == 0
    assert "the instructor's own line" not in config.read_text()
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert main(["classroom", "course", str(afile)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and len(err.strip().splitlines()) == 1
    assert main(["classroom", "generate", "ch03", "--course", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a course" in err and len(err.strip().splitlines()) == 1


def test_self_study_copy_has_no_solution_text(tmp_path):
    copies = classroom.student_copies(tmp_path)
    assert [c.name for c in copies] == [p.name for p in book.chapters()]
    for original in GRADED:
        text = (tmp_path / original.name).read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert "exercises.check(" in text or "lab.check_attack(" in text  # the checks stay
        # The copy keeps the book's outputs, but not the model's own source of a function a
        # student is asked to write, nor the answer itself.
        copy = nbformat.read(tmp_path / original.name, 4)
        assert classroom.leaks(copy) == [], original.name
        sources = "\n".join(c.source for c in copy.cells)
        assert "raise NotImplementedError()" in sources
        for line in _solutions(original):
            if len(line) > 25:
                assert line not in sources, f"{original.name}: solution line leaked: {line}"


def test_cli_makes_a_course_and_copies(tmp_path, capsys):
    from lguest_book.cli import main

    assert main(["classroom", "course", str(tmp_path / "c")]) == 0
    assert "lguest-book classroom generate ch01" in capsys.readouterr().out
    assert (tmp_path / "c" / "nbgrader_config.py").exists()
    assert sorted(p.name for p in (tmp_path / "c" / "source").iterdir()) == [f"ch0{i}" for i in range(1, 9)] + ["ch11"]
    assert main(["classroom", "student-copy", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("*.ipynb"))) == len(book.chapters())


def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_bad_exchange_leaves_no_half_made_course(tmp_path, capsys):
    from lguest_book.cli import main

    course = tmp_path / "c"
    assert main(["classroom", "course", str(course), "--exchange", "/proc/nonexistent/exchange"]) == 2
    assert "--exchange /proc/nonexistent/exchange: cannot make or write that folder" in _one_line(capsys)
    assert not course.exists()  # so a retry needs no --force
    assert main(["classroom", "course", str(course), "--exchange", str(tmp_path / "ex")]) == 0
    out = capsys.readouterr().out
    assert "gradebook.db" not in out.split("(")[1].split(";")[0]  # not claimed before generate makes it
    assert not (course / "gradebook.db").exists() and (tmp_path / "ex").is_dir()


def test_classroom_steps_refuse_an_unknown_assignment_once_in_one_line(tmp_path, capsys):
    from lguest_book.cli import main

    course = tmp_path / "c"
    classroom.make_course(course, notebooks=[GRADED[0], GRADED[2]])
    for step in ("generate", "release", "collect", "autograde", "feedback", "report"):
        assert main(["classroom", step, "ch99", "--course", str(course)]) == 2, step
        assert _one_line(capsys) == (f"lguest-book classroom {step}: no assignment ch99 in this course; "
                                     "there are ch01, ch03")
    assert not (course / "gradebook.db").exists()  # nbgrader never ran


def test_release_names_its_exchange_and_collect_takes_only_zip_files(tmp_path, capsys):
    import zipfile

    from lguest_book.cli import main

    course, exchange = tmp_path / "c", tmp_path / "exchange"
    classroom.make_course(course, notebooks=[GRADED[2]])  # no --exchange: nbgrader's default one
    assert classroom.exchange_root(course) == Path("/usr/local/share/nbgrader/exchange")
    config = course / "nbgrader_config.py"  # (here in tmp_path, and not made yet, as the default may not be)
    config.write_text(config.read_text() + f"c.Exchange.root = {str(exchange)!r}\n")
    assert main(["classroom", "release", "ch03", "--course", str(course)]) == 0
    out, err = capsys.readouterr()
    # our line names the exchange; nbgrader's "Creating exchange directory" warning is not repeated
    assert f"released to the exchange at {exchange}: students can fetch it" in out and err == ""
    assert (exchange / "lguest-book" / "outbound" / "ch03").is_dir()
    # a zip file that is not one: refused before anything is copied or collected
    assert main(["classroom", "collect", "ch03", "--course", str(course), "--zip", "/etc/passwd"]) == 2
    assert _one_line(capsys) == "lguest-book classroom collect: /etc/passwd: not a zip file"
    assert not (course / "downloaded").exists()
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(course / "release" / "ch03" / GRADED[2].name, f"export/alice_{GRADED[2].name}")
    for _again in range(2):  # the second replaces alice's submission: nbgrader's notice of it is ours to fold
        assert main(["classroom", "collect", "ch03", "--course", str(course), "--zip", str(archive)]) == 0
        out, err = capsys.readouterr()
        assert "1 submission(s) in submitted/: alice" in out and err == ""
    # an exchange that cannot be made: one line, with the way out
    config.write_text(config.read_text() + "c.Exchange.root = '/proc/nonexistent/exchange'\n")
    assert main(["classroom", "release", "ch03", "--course", str(course)]) == 2
    assert _one_line(capsys) == ("lguest-book classroom release: cannot make or write the exchange at "
                                 f"/proc/nonexistent/exchange: give the course one of its own, "
                                 f"`lguest-book classroom course {course.resolve()} --exchange DIR --force`")


def test_opening_a_self_study_copy_adds_no_text_twin_with_the_answers(tmp_path, capsys):
    from lguest_book.cli import main

    copy = tmp_path / "my-book"
    assert main(["classroom", "student-copy", "--out", str(copy)]) == 0
    assert main(["open", str(copy), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "kept your" in out and "05-switching.ipynb" in out
    # the book's .py twins would pair with the blank notebooks and bring the answers back: a twin
    # comes only beside a notebook that is the book's own (a chapter with nothing to blank)
    twins = {p.stem for p in copy.glob("[0-9][0-9]-*.py")}
    same = {p.stem for p in copy.glob("[0-9][0-9]-*.ipynb")
            if p.read_bytes() == (book.BOOK / p.name).read_bytes()}
    assert twins == same and "05-switching" not in twins and "11-lab" not in twins
    assert (copy / "README.md").is_file() and (copy / "jupytext.toml").is_file()  # the rest is copied
    assert "BEGIN SOLUTION" not in (copy / "05-switching.ipynb").read_text()
