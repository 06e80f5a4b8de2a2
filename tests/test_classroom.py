"""The classroom edition, end to end and offline: a real nbgrader round trip over every graded
chapter, and the self-study copy."""

import re
import shutil
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


def test_graded_exercises_in_every_chapter_1_to_8():
    assert [p.name[:2] for p in GRADED] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    for nb in GRADED:
        cells = nbformat.read(nb, 4).cells
        kinds = [c.metadata["nbgrader"] for c in cells if "nbgrader" in c.metadata]
        assert any(k["solution"] for k in kinds) and any(k["grade"] and k["points"] > 0 for k in kinds)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Generate every assignment, then autograde three submissions of each: the reference
    solutions, the untouched student version, and (chapter 3) a wrong answer."""
    root = tmp_path_factory.mktemp("course")
    ids = classroom.make_course(root)
    released = {}
    for aid, nb in zip(ids, GRADED):
        rel = classroom.generate(root, aid)
        released[aid] = rel / nb.name
        classroom.submit(root, aid, "solver", [root / "source" / aid / nb.name])
        classroom.submit(root, aid, "blank", [released[aid]])
    wrong = nbformat.read(released["ch03"], 4)
    for cell in wrong.cells:
        if "raise NotImplementedError()" in cell.source:
            cell.source = cell.source.replace(
                "# YOUR CODE HERE\n    raise NotImplementedError()",
                "return True  # forgot to look at the shadow table at all")
    nbformat.write(wrong, root / "wrong.ipynb")
    classroom.submit(root, "ch03", "wrong", [root / "wrong.ipynb"])
    (root / "submitted" / "wrong" / "ch03" / "wrong.ipynb").rename(root / "submitted" / "wrong" / "ch03" / GRADED[2].name)
    for aid in ids:
        classroom.autograde(root, aid)
    return root, ids, released


def test_generated_student_version_has_stubs_and_no_hidden_tests(course):
    root, ids, released = course
    for aid, nb_path in released.items():
        text = nb_path.read_text()
        assert "raise NotImplementedError()" in text
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert "hidden=True" not in text
        for line in _solutions(next(p for p in GRADED if classroom.assignment_id(p) == aid)):
            if len(line) > 25:
                assert line not in text, f"{aid}: solution line leaked: {line}"


def test_reference_solutions_get_full_marks(course):
    root, ids, _ = course
    for aid in ids:
        total = classroom.scores(root, aid, "solver")["total"]
        assert total[0] == total[1] > 0, (aid, total)


def test_untouched_student_version_gets_zero_on_every_graded_cell(course):
    root, ids, _ = course
    for aid in ids:
        grades = classroom.scores(root, aid, "blank")
        assert grades["total"][0] == 0, (aid, grades)
        assert all(score == 0 for name, (score, _) in grades.items() if name != "total")


def test_a_wrong_answer_gets_no_marks_for_that_cell(course):
    root, _, _ = course
    grades = classroom.scores(root, "ch03", "wrong")
    assert grades["ch3-page-writable-check"] == (0.0, 2.0)


def test_self_study_copy_has_no_solution_text(tmp_path):
    copies = classroom.student_copies(tmp_path)
    assert [c.name for c in copies] == [p.name for p in book.chapters()]
    for original in GRADED:
        text = (tmp_path / original.name).read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert "exercises.check(" in text  # the checks stay
        # The copy keeps the book's outputs (the Python twins of the model's functions are part
        # of the textbook); what must not be there is the answer a student is asked to write.
        sources = "\n".join(c.source for c in nbformat.read(tmp_path / original.name, 4).cells)
        assert "raise NotImplementedError()" in sources
        for line in _solutions(original):
            if len(line) > 25:
                assert line not in sources, f"{original.name}: solution line leaked: {line}"


def test_cli_makes_a_course_and_copies(tmp_path, capsys):
    from lguest_book.cli import main

    assert main(["classroom", "course", str(tmp_path / "c")]) == 0
    assert "nbgrader generate_assignment ch01" in capsys.readouterr().out
    assert (tmp_path / "c" / "nbgrader_config.py").exists()
    assert sorted(p.name for p in (tmp_path / "c" / "source").iterdir()) == [f"ch0{i}" for i in range(1, 9)]
    assert main(["classroom", "student-copy", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("*.ipynb"))) == 10
