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

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .locate import source_book

BOOK = source_book()  # the clone's book/, or the copy the installed wheel carries
# The kernelspec exactly as ipykernel installs it, so JupyterLab finds nothing to rewrite on open.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
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
            nb.metadata["kernelspec"] = dict(KERNELSPEC)
            jupytext.write(nb, notebook)
        jupytext_cli(["--sync", "--quiet", str(notebook)])
        done.append(notebook)
    return done


class NotANotebook(ValueError):
    """A file given as a notebook that is not one: the message names it, in one line."""


class CellFailed(RuntimeError):
    """A cell raised while a notebook executed: the message names the notebook, the cell
    (counted from 1, every cell of the notebook, as JupyterLab lists them) and the error's
    last line."""


def notebook_problem(path: Path | str) -> str | None:
    """Why ``path`` is not a notebook (``.ipynb`` JSON that nbformat 4 reads and validates),
    in one line; None when it is one."""
    import nbformat

    path = Path(path)
    if not path.exists():
        return f"{path}: no such notebook"
    if not path.is_file():
        return f"{path} is not a notebook (a folder)"
    if path.suffix != ".ipynb":
        return f"{path} is not a notebook (not an .ipynb file)"
    try:
        nb = nbformat.read(path, 4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - NotJSONError, ValidationError, UnicodeDecodeError, ...
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{path} is not a notebook ({why[:100]})"
    return None


def _client(nb, **options):
    """nbclient's NotebookClient, remembering which cell it runs (``.cell_index``), so that a
    failure can name it."""
    from nbclient import NotebookClient

    class Client(NotebookClient):
        cell_index = None

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            self.cell_index = cell_index
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

    return Client(nb, **options)


def execute(notebook: Path, timeout: int = 120) -> float:
    """Run ``notebook`` in a fresh kernel (cwd = the book folder), store its outputs and
    widget state, and write it and its text twin back.  Returns the seconds it took.
    Raises :class:`CellFailed` (nothing written) when a cell raises or times out."""
    import jupytext
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = Path(notebook)
    nb = jupytext.read(text_twin(notebook)) if text_twin(notebook).exists() else nbformat.read(notebook, 4)
    if notebook.exists():  # keep the notebook's own metadata (kernelspec, jupytext pairing)
        nb.metadata.update(nbformat.read(notebook, 4).metadata)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    start = time.perf_counter()
    client = _client(nb, config=_kernel_config(), timeout=timeout, kernel_name="python3", store_widget_state=True,
                            record_timing=False, resources={"metadata": {"path": str(notebook.parent)}})
    # the fault stepper shows the kernel's C live when LGUEST_BOOK_C_SOURCE names it: never
    # while storing outputs and widget state (the book never holds the kernel's text)
    c_source = os.environ.pop("LGUEST_BOOK_C_SOURCE", None)
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        where = f"{notebook.name} cell {client.cell_index + 1}" if client.cell_index is not None else notebook.name
        if isinstance(err, CellExecutionError):
            lines = [line for line in f"{err.ename}: {err.evalue}".splitlines() if line.strip()]
            why = lines[0] if lines else err.ename
        elif isinstance(err, CellTimeoutError):
            why = f"no result after {timeout} s"
        else:
            why = f"the kernel died ({str(err).strip().splitlines()[0] if str(err).strip() else 'no reason given'})"
        raise CellFailed(f"{where} failed: {why}") from None
    finally:
        if c_source is not None:
            os.environ["LGUEST_BOOK_C_SOURCE"] = c_source
    seconds = time.perf_counter() - start
    nb = stabilise(nb, notebook.stem)
    jupytext.write(nb, notebook)
    jupytext.write(nb, text_twin(notebook), fmt="py:percent")
    return seconds


def _kernel_config():
    """The kernel manager's configuration: CurveZMQ keys for the kernel when pyzmq can encrypt
    (ipykernel then has no reason to warn that it runs over TCP without encryption), else
    local IPC sockets."""
    import zmq
    from traitlets.config import Config

    if zmq.has("curve"):
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config({"KernelManager": {"transport": "ipc"}})


def _coalesce_streams(outputs: list) -> list:
    """One output per run of printing: the kernel cuts a stream into pieces where it
    happens to flush, which differs from run to run."""
    merged: list = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (
            output.get("output_type") == "stream" and last is not None
            and last.get("output_type") == "stream" and last.get("name") == output.get("name")
        ):
            last["text"] = "".join(last["text"]) + "".join(output["text"])
        else:
            merged.append(output)
    return merged


def stabilise(nb, name: str):
    """Make an executed notebook the same, byte for byte, every time it is executed.

    Cell ids are derived from the chapter's name and the cell's position, and the random
    ids ipywidgets gives its models are renamed to ids derived from the order in which a
    reader meets them: the widgets shown by the cells, top to bottom, each followed by the
    models it refers to.  Consecutive pieces of printed text become one output.
    Re-executing an unchanged chapter then leaves ``git diff`` empty.
    """
    import hashlib
    import json
    import re

    import nbformat

    def derived(kind: str, n: int, width: int) -> str:
        return hashlib.sha1(f"{name}/{kind}/{n}".encode()).hexdigest()[:width]

    for n, cell in enumerate(nb.cells):
        cell["id"] = derived("cell", n, 8)
        cell.get("metadata", {}).pop("execution", None)
        if "outputs" in cell:
            cell["outputs"] = _coalesce_streams(cell["outputs"])
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if not state:
        return nb
    models = state["state"]
    reference = re.compile(r"IPY_MODEL_([0-9a-f]{32})")
    renamed: dict[str, str] = {}

    def visit(model_id: str) -> None:
        if model_id in renamed or model_id not in models:
            return
        renamed[model_id] = derived("widget", len(renamed), 32)
        for child in reference.findall(json.dumps(models[model_id], sort_keys=True)):
            visit(child)

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view:
                visit(view["model_id"])
    for model_id in sorted(models, key=lambda m: json.dumps(models[m], sort_keys=True)):
        visit(model_id)  # models no shown widget refers to
    text = re.sub("|".join(renamed), lambda m: renamed[m.group(0)], nbformat.writes(nb))
    nb = nbformat.reads(text, 4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    state["state"] = dict(sorted(state["state"].items()))
    return nb


_WIDGET_BOX_REPR = re.compile(r"^[A-Za-z_]\w*\(.*\bchildren=")


def readable_fallback(text) -> bool:
    """Is a widget output's text/plain one line a reader can read where no JavaScript runs (a
    forge)?  Not empty, not several lines, not ipywidgets' repr of a box of widgets
    (``VBox(children=(HBox(children=...``), which says nothing about what the widget shows."""
    text = "".join(text).strip()
    return bool(text) and "\n" not in text and not _WIDGET_BOX_REPR.match(text)


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
    for d in data:
        if WIDGET_VIEW in d and not readable_fallback(d.get("text/plain", "")):
            shown = "".join(d.get("text/plain", "")).strip()[:60] or "nothing"
            report.problems.append(f"a widget's text for readers without JavaScript (a forge) says {shown!r}, "
                                   "not what the widget shows")
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    if "what you will learn" not in prose:
        report.problems.append('no "What you will learn" opening')
    if "exercise" not in prose:
        report.problems.append("no exercises")
    return report


def check(book: Path | str = BOOK) -> list[Report]:
    return [check_notebook(nb) for nb in chapters(book)]
