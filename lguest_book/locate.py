"""Where the book is: inside a clone, in the installed wheel, in a reader's copy.

* :func:`source_book` is the book this installation carries: the clone's ``book/`` when the
  package runs from a clone (editable install or ``python -m``), else the copy the wheel
  installed as package data (``lguest_book/_book``).
* :func:`find_book` is the book a command works on: the folder named, else
  ``$LGUEST_BOOK_DIR``, else the current folder or its ``book/`` or ``lguest-book/`` when they
  hold chapters, else :func:`source_book` (read-only commands only: nothing is ever written
  into site-packages).
* :func:`copy_book` makes or completes a reader's copy without overwriting anything;
  :func:`trust` signs the notebooks so JupyterLab shows their widgets at once.
* :func:`cache_dir` is where build products go outside a clone (``$XDG_CACHE_HOME/lguest-book``).
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CLONE = PACKAGE.parent
READER_COPY = "lguest-book"  # the default folder of a reader's copy


class NoBook(RuntimeError):
    """No book where one was looked for (the message says where and what to do)."""


def in_clone() -> bool:
    """Does the package run from a clone of the repository (not from an installed wheel)?"""
    return (CLONE / "pyproject.toml").is_file() and (CLONE / "book").is_dir()


def source_book() -> Path:
    return CLONE / "book" if in_clone() else PACKAGE / "_book"


def is_book(folder: Path | str) -> bool:
    return Path(folder).is_dir() and any(Path(folder).glob("[0-9][0-9]-*.ipynb"))


def find_book(given: str | Path | None = None, *, writing: bool = False) -> Path:
    """The book a command should work on (see the module's docstring); raises :class:`NoBook`."""
    for named in (given, os.environ.get("LGUEST_BOOK_DIR") or None):
        if named is not None:
            if not is_book(named):
                raise NoBook(f"no book at {named}: no chapter notebooks (NN-name.ipynb) there")
            return Path(named)
    for here in (Path("."), Path("book"), Path(READER_COPY)):
        if is_book(here):
            return here
    source = source_book()
    if is_book(source) and (in_clone() or not writing):
        return source
    if is_book(source):
        raise NoBook(f"no copy of the book here to write into: `lguest-book open` makes one in ./{READER_COPY} "
                     "(or give --book DIR)")
    raise NoBook(f"no book found: this installation carries none at {source}; give --book DIR")


def book_files(book: Path) -> list[Path]:
    """The files that make up the book, relative to its folder."""
    out = []
    for path in sorted(book.rglob("*")):
        rel = path.relative_to(book)
        if path.is_file() and not any(part.startswith((".", "__")) for part in rel.parts) and path.suffix != ".pyc":
            out.append(rel)
    return out


def copy_book(dest: Path | str, source: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Copy the book's files that ``dest`` lacks; returns (copied, kept) where ``kept`` are the
    files already in ``dest`` that differ from the book's (a reader's edits: never overwritten)."""
    source = source_book() if source is None else Path(source)
    dest = Path(dest)
    copied, kept = [], []
    files = book_files(source)
    mine = {rel for rel in files if (dest / rel).exists() and not filecmp.cmp(source / rel, dest / rel, shallow=False)}
    for rel in files:
        target = dest / rel
        if target.exists():
            if rel in mine:
                kept.append(rel)
            continue
        if Path(rel).suffix == ".py" and Path(rel).with_suffix(".ipynb") in mine:
            # The book's text twin beside the reader's own notebook would pair the two, and
            # jupytext takes a pair's cells from its text file: a self-study copy's blank
            # answers would come back filled in.  The reader's notebook stays alone.
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)
        copied.append(rel)
    return copied, kept


def trust(book: Path | str | list) -> list[Path]:
    """Sign every chapter notebook of ``book`` (a folder, or a list of notebooks) with this
    user's Jupyter notary (the same secret and database JupyterLab uses), as ``jupyter trust``
    would.  The notebooks' files are not changed: signatures live in the notary's database."""
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    signed = []
    paths = [Path(p) for p in book] if isinstance(book, list) else sorted(Path(book).glob("[0-9][0-9]-*.ipynb"))
    for path in paths:
        nb = nbformat.read(path, 4)
        if not notary.check_signature(nb):
            notary.sign(nb)
        signed.append(path)
    return signed


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/lguest-book/...`` (``~/.cache`` by default), created."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lguest-book"
    folder = base.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_dir(*parts: str) -> Path:
    """Where build products go: the clone's ``build/`` inside a clone, else :func:`cache_dir`."""
    if in_clone():
        folder = CLONE.joinpath("build", *parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return cache_dir(*parts)


def make_writable_dir(path: Path | str) -> list[Path]:
    """Make the folder ``path`` (and its missing parents) and check that a file can be written
    in it, before any work that ends by writing there.  Returns the folders it made, deepest
    first (:func:`unmake` removes them if the work then fails).  Raises ``OSError`` (having
    removed what it made) when the folder cannot be made or written."""
    path = Path(path)
    made, probe = [], path.absolute()
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        unmake(made)
        raise
    return made


def unmake(made: list[Path]) -> None:
    """Remove the folders :func:`make_writable_dir` made (those still empty), deepest first."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            pass
