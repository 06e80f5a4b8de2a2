"""The wheel is the book: at build time, ``book/`` (the repository's source of truth, kept at its
top level) is copied into the wheel as the package data ``lguest_book/_book``.  An editable
install needs no copy: it reads the clone's ``book/`` (see lguest_book/locate.py).  Everything
else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BOOK = Path(__file__).resolve().parent / "book"


def book_files(book: Path):
    for path in sorted(book.rglob("*")):
        rel = path.relative_to(book)
        if path.is_file() and path.suffix != ".pyc" and not any(p.startswith((".", "__")) for p in rel.parts):
            yield rel


class build_py_with_book(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or not BOOK.is_dir():
            return
        dest = Path(self.build_lib) / "lguest_book" / "_book"
        if dest.exists():
            shutil.rmtree(dest)  # a chapter removed from book/ leaves the wheel too
        for rel in book_files(BOOK):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(BOOK / rel, dest / rel)


setup(cmdclass={"build_py": build_py_with_book})
