"""The real book, as a reader and an instructor rely on it (nbval re-runs the cells; these
tests check what nbval does not: pairing, completeness, coverage of the C)."""

import re

import nbformat
import pytest

from lguest_book import book
from lguest_book import page_tables as pt

CHAPTERS = book.chapters()


def test_the_book_has_its_chapters_numbered_from_zero():
    assert len(CHAPTERS) >= 11
    assert [nb.name[:2] for nb in CHAPTERS] == [f"{i:02d}" for i in range(len(CHAPTERS))]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[nb.stem for nb in CHAPTERS])
def test_chapter_is_paired_executed_and_complete(notebook):
    # in sync with its text twin, executed in order, a plot, a widget with stored state,
    # a "What you will learn" opening and exercises
    assert book.check_notebook(notebook).problems == []


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[nb.stem for nb in CHAPTERS])
def test_chapter_is_stored_as_execute_would_store_it(notebook):
    # derived ids and no timing metadata: re-executing an unchanged chapter changes nothing
    stored = nbformat.read(notebook, 4)
    assert book.stabilise(nbformat.read(notebook, 4), notebook.stem) == stored


def test_every_c_function_has_its_twin_shown_somewhere_in_the_book():
    shown = set()
    for notebook in CHAPTERS:
        source = "\n".join(c.source for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
        shown |= set(re.findall(r"""twin\(\s*["']([A-Za-z_]+)["']""", source))
    assert set(pt.C_FUNCTIONS) - shown == set()
