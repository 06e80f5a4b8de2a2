"""Reading on a forge: every stored output of every chapter can be read without running
anything and without JavaScript: figures as PNG, everything else as text, and each widget as
a line that says what it would show."""

from __future__ import annotations

import nbformat
import pytest

from lguest_book import book
from lguest_book.book import BOOK, WIDGET_VIEW, chapters

READABLE = ("image/png", "text/plain", "text/markdown", "text/html")


@pytest.mark.parametrize("notebook", chapters(BOOK), ids=lambda p: p.stem)
def test_every_stored_output_reads_without_javascript(notebook):
    nb = nbformat.read(notebook, 4)
    for n, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                continue
            data = output.get("data", {})
            assert any(kind in data for kind in READABLE), (notebook.name, n, sorted(data))
            if WIDGET_VIEW in data:
                assert book.readable_fallback(data.get("text/plain", "")), (notebook.name, n, data.get("text/plain"))


def test_book_check_reports_a_widget_that_falls_back_to_its_repr(tmp_path):
    source = next(nb for nb in chapters(BOOK) if "widgets" in nbformat.read(nb, 4).metadata)
    nb = nbformat.read(source, 4)
    output = next(o for c in nb.cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {}))
    output["data"]["text/plain"] = "VBox(children=(HBox(children=(Text(value='0x804a000', description='address'),)),))"
    nbformat.write(nb, tmp_path / source.name)
    (tmp_path / source.name).with_suffix(".py").write_text(source.with_suffix(".py").read_text())
    problems = book.check_notebook(tmp_path / source.name).problems
    assert any("readers without JavaScript" in p and "VBox(children=" in p for p in problems), problems
    assert not [p for p in book.check_notebook(source).problems if "readers without JavaScript" in p]
