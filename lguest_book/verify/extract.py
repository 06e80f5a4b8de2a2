"""Recover compilable C from the cregit rendering of page_tables.c.

The cregit text is the C source with each function followed by a table of who wrote its
tokens, and most functions flattened onto one line.  This module drops the tables and the page
header, and puts every preprocessor directive back at the start of a line of its own.  The
result is written under ``build/`` at test time and never committed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "seeds" / "000_51b7f9c414651ff4.txt"

_DIRECTIVE = re.compile(r"(?<![\w%])#\s*(ifdef|ifndef|if|elif|else|endif|define|undef|include)\b")


def find_source(path: str | os.PathLike | None = None) -> Path:
    """The page_tables.c to use: ``path``, else $LGUEST_BOOK_C_SOURCE, else the cregit text
    kept beside the repository (shared/seeds/...)."""
    for candidate in (path, os.environ.get("LGUEST_BOOK_C_SOURCE"), DEFAULT_SOURCE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "no page_tables.c found: pass --source PATH (a Linux 4.7 drivers/lguest/page_tables.c or its "
        "cregit rendering) or set LGUEST_BOOK_C_SOURCE")


def is_cregit(text: str) -> bool:
    return "Contributors" in text and "PersonTokensProp" in text


def _drop_tables(lines: list[str]) -> list[str]:
    out, skipping = [], False
    for line in lines:
        if line.strip() == "Contributors":
            skipping = True
            continue
        if skipping:
            if line.startswith("Total"):
                skipping = False
            continue
        out.append(line)
    return out


def _split_directives(line: str) -> list[str]:
    """Put each directive on its own line; the directive's argument goes with it."""
    if "#" not in line:
        return [line]
    pieces, pos = [], 0
    for m in _DIRECTIVE.finditer(line):
        if m.start() == 0 and pos == 0:
            continue
        pieces.append(line[pos:m.start()])
        pos = m.start()
    pieces.append(line[pos:])
    out = []
    for piece in pieces:
        m = _DIRECTIVE.match(piece.lstrip())
        if not m:
            out.append(piece)
            continue
        piece = piece.lstrip()
        kind = m.group(1)
        rest = piece[m.end():]
        if kind in ("else", "endif"):
            out.extend([piece[:m.end()], rest])
        elif kind in ("ifdef", "ifndef", "undef"):
            arg = re.match(r"\s*\w+", rest)
            out.extend([piece[:m.end()] + arg.group(0), rest[arg.end():]])
        else:  # define/include/if: they are alone on their lines in this file
            out.append(piece)
    return out


def to_c(text: str) -> str:
    if not is_cregit(text):
        return text
    lines = text.splitlines()
    if any(line.startswith("Overall Contributors") for line in lines):
        lines = lines[: next(i for i, line in enumerate(lines) if line.startswith("Overall Contributors"))]
    start = next(i for i, line in enumerate(lines) if line.startswith("/*") or line.startswith("#"))
    body = _drop_tables(lines[start:])
    out: list[str] = []
    for line in body:
        out.extend(_split_directives(line))
    return "\n".join(out) + "\n"


def extract(source: str | os.PathLike | None = None, dest: str | os.PathLike | None = None) -> Path:
    """Write the C source to ``dest`` (default build/referee/page_tables.c in a clone, else
    $XDG_CACHE_HOME/lguest-book/referee/); return its path."""
    src = find_source(source)
    c = to_c(src.read_text(errors="replace"))
    if not dest:
        from ..locate import build_dir

        dest = build_dir("referee") / "page_tables.c"  # build/ in a clone, else the user's cache
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.read_text() != c:
        dest.write_text(c)
    return dest


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
