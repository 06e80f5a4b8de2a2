"""Keeping the book: its notebooks, their text twins, and their stored outputs.

Each chapter is a notebook ``book/NN-name.ipynb`` paired by jupytext (``book/jupytext.toml``)
with a text file ``book/NN-name.py`` in the percent format.  Edit either; then

* :func:`sync` brings the pair back together (the newer side wins, as jupytext does);
* :func:`execute` runs a notebook top to bottom in a fresh kernel and stores its outputs
  (and its widgets' state, so a reader sees them before running anything);
* :func:`check` reports what is wrong with the book without changing it: pairs out of
  sync, notebooks never executed or executed out of order, chapters without a plot, a
  widget, a "What you will learn" opening or exercises.

``lguest-book book sync|execute|check`` are the same from the shell; ``python -m pytest``
runs every notebook under nbval and compares its outputs with the stored ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def chapters(book: Path | str = BOOK) -> list[Path]:
    """The chapter notebooks, in order."""
    return sorted(Path(book).glob("[0-9][0-9]-*.ipynb"))


def text_twin(notebook: Path) -> Path:
    return notebook.with_suffix(".py")


def _read_pair(notebook: Path):
    import jupytext

    nb = jupytext.read(notebook)
    text = jupytext.read(text_twin(notebook))
    return nb, text


def pair_in_sync(notebook: Path) -> bool:
    """Do the notebook and its text twin hold the same cells (sources and kinds)?"""
    twin = text_twin(notebook)
    if not twin.exists():
        return False
    nb, text = _read_pair(notebook)

    def cells(book):
        return [(c.cell_type, c.source.strip()) for c in book.cells]

    return cells(nb) == cells(text)


def sync(book: Path | str = BOOK) -> list[Path]:
    """Pair every text file with its notebook (creating missing notebooks)."""
    import jupytext
    from jupytext.cli import jupytext as jupytext_cli

    done = []
    for twin in sorted(Path(book).glob("[0-9][0-9]-*.py")):
        notebook = twin.with_suffix(".ipynb")
        if not notebook.exists():
            nb = jupytext.read(twin)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            jupytext.write(nb, notebook)
        jupytext_cli(["--sync", "--quiet", str(notebook)])
        done.append(notebook)
    return done


def execute(notebook: Path, timeout: int = 120) -> float:
    """Run ``notebook`` in a fresh kernel (cwd = the book folder), store its outputs and
    widget state, and write it and its text twin back.  Returns the seconds it took."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(notebook)
    nb = jupytext.read(text_twin(notebook)) if text_twin(notebook).exists() else nbformat.read(notebook, 4)
    if notebook.exists():  # keep the notebook's own metadata (kernelspec, jupytext pairing)
        nb.metadata.update(nbformat.read(notebook, 4).metadata)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    client.execute()
    seconds = time.perf_counter() - start
    jupytext.write(nb, notebook)
    jupytext.write(nb, text_twin(notebook), fmt="py:percent")
    return seconds


@dataclass
class Report:
    notebook: Path
    problems: list[str] = field(default_factory=list)


def check_notebook(notebook: Path) -> Report:
    import nbformat

    report = Report(Path(notebook))
    nb = nbformat.read(notebook, 4)
    if not pair_in_sync(notebook):
        report.problems.append("the notebook and its text twin differ (run `lguest-book book sync`)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code if c.source.strip()]
    if not counts or None in counts:
        report.problems.append("not every code cell has been executed (run `lguest-book book execute`)")
    elif counts != list(range(1, len(counts) + 1)):
        report.problems.append("cells were executed out of order")
    outputs = [o for c in code for o in c.get("outputs", [])]
    if any(o.get("output_type") == "error" for o in outputs):
        report.problems.append("a stored output is an error")
    data = [o.get("data", {}) for o in outputs]
    if not any("image/png" in d for d in data):
        report.problems.append("no plot among the stored outputs")
    if not any(WIDGET_VIEW in d for d in data):
        report.problems.append("no widget among the stored outputs")
    elif "widgets" not in nb.metadata:
        report.problems.append("widget state is not stored (readers would see no widget)")
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    if "what you will learn" not in prose:
        report.problems.append('no "What you will learn" opening')
    if "exercise" not in prose:
        report.problems.append("no exercises")
    return report


def check(book: Path | str = BOOK) -> list[Report]:
    return [check_notebook(nb) for nb in chapters(book)]
