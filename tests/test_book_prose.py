"""The book's writing rules (book/README.md), checked on the chapters' text twins."""

import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]-*.py"))


def cells(path):
    """(is_markdown, text) of every cell after the header."""
    parts = re.split(r"^(# %%.*)$", path.read_text(), flags=re.M)
    return [("[markdown]" in head, body) for head, body in zip(parts[1::2], parts[2::2])]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_ends_with_its_references(path):
    last = cells(path)[-1][1]
    assert "# ## References" in last and last.count("\n# - ") >= 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_ungraded_exercises_have_collapsed_hints_and_answers(path):
    text = path.read_text()
    exercises = text.split("# ## Exercises", 1)[1].split("# ### Graded", 1)[0]
    assert "<details>" in exercises and "</details>" in exercises


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_stored_cell_asks_for_the_c(path):
    """twin(..., c=True) reads kernel code: only live, never in a stored cell."""
    code = [c for md, c in cells(path) if not md]
    assert not any(re.search(r"twin\([^)]*\bc\s*=\s*True", c) for c in code)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colour_claims_are_not_made_about_figures(path):
    """Figures are redrawn by their own module; prose names data, not colours."""
    prose = " ".join(c for md, c in cells(path) if md)
    assert not re.search(r"\bthe (red|green|blue|orange|yellow|purple) (square|cell|bar|row|line)\b", prose, re.I)
