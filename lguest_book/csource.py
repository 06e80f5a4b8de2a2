"""Where each C function of page_tables.c is, who wrote it, and (live, from a source the
reader has) its C text.

Three kinds of facts, kept apart on purpose:

* **Line ranges** in Linux 4.7's ``drivers/lguest/page_tables.c`` (:data:`LINES`, and the
  narrative markers' lines in :data:`MARKER_LINES`).  They are the real file's line numbers, not
  the cregit text's: the cregit rendering flattens each function onto one line, so its lines say
  nothing about the file's, and neither do those of ``verify/extract.py``'s reconstruction.
  They were taken from the file as it stands at v4.7 (1239 lines, 38,661 bytes), checked token
  for token against the cregit seed of the same release (``tests/test_csource.py`` repeats the
  check on any real ``page_tables.c`` the user points to: ``LGUEST_BOOK_C_SOURCE``).
* **Authorship** (:data:`AUTHORS`, :data:`OVERALL`): the cregit page's per-function contributor
  tables (tokens and commits per person).  These are data, stored here so a twin prints the same
  text with or without the seed at hand; ``tests/test_csource.py`` re-parses the seed, when it
  is present, and compares.
* **The C text itself** is never stored in the repository.  :func:`find_source` locates a copy
  the reader has (an explicit path, ``$LGUEST_BOOK_C_SOURCE``, or the cregit seed kept beside the
  repository); :func:`c_text` reads a function out of it, live.  The book's stored notebooks
  call :func:`lguest_book.notebook.twin` without ``c=True``, so no stored output holds kernel
  code (``tests/test_csource.py`` checks every stored notebook).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_NAME = "000_51b7f9c414651ff4.txt"
FILE = "drivers/lguest/page_tables.c"
RELEASE = "v4.7"
BROWSER = "https://elixir.bootlin.com/linux/v4.7/source/"
FILE_LINE_COUNT = 1239

# function -> ((first line, last line, variant), ...): the signature's first line to the
# closing brace.  Two functions have one body per layout.
LINES: dict[str, tuple[tuple[int, int, str], ...]] = {
    "spgd_addr": ((83, 89, ""),),
    "spmd_addr": ((97, 107, "PAE"),),
    "spte_addr": ((115, 130, ""),),
    "gpgd_addr": ((136, 140, ""),),
    "gpmd_addr": ((144, 149, "PAE"),),
    "gpte_addr": ((152, 159, "PAE"), (162, 169, "non-PAE")),
    "get_pfn": ((188, 198, ""),),
    "gpte_to_spte": ((206, 239, ""),),
    "release_pte": ((242, 250, ""),),
    "gpte_in_iomem": ((253, 261, ""),),
    "check_gpte": ((263, 271, ""),),
    "check_gpgd": ((273, 281, ""),),
    "check_gpmd": ((284, 292, "PAE"),),
    "find_spte": ((303, 375, ""),),
    "demand_page": ((393, 538, ""),),
    "page_writable": ((551, 571, ""),),
    "pin_page": ((578, 584, ""),),
    "release_pmd": ((588, 602, "PAE"),),
    "release_pgd": ((604, 619, "PAE"), (627, 646, "non-PAE")),
    "flush_user_mappings": ((654, 660, ""),),
    "guest_pagetable_flush_user": ((668, 672, ""),),
    "__guest_pa": ((676, 713, ""),),
    "guest_pa": ((719, 726, ""),),
    "find_pgdir": ((733, 740, ""),),
    "new_pgdir": ((747, 782, ""),),
    "allocate_switcher_mapping": ((794, 820, ""),),
    "release_all_pagetables": ((827, 842, ""),),
    "guest_pagetable_clear_all": ((850, 858, ""),),
    "guest_new_pagetable": ((867, 904, ""),),
    "__guest_set_pte": ((932, 975, ""),),
    "guest_set_pte": ((989, 1014, ""),),
    "guest_set_pgd": ((1030, 1052, ""),),
    "guest_set_pmd": ((1056, 1059, "PAE"),),
    "init_guest_pagetable": ((1073, 1093, ""),),
    "page_table_guest_data_init": ((1096, 1125, ""),),
    "free_guest_pagetable": ((1128, 1137, ""),),
    "remove_switcher_percpu_map": ((1142, 1155, ""),),
    "map_switcher_in_guest": ((1167, 1226, ""),),
}

# Functions the model ports that live in another file of drivers/lguest.
ELSEWHERE = {"pin_stack_pages": "drivers/lguest/interrupts_and_traps.c"}

MARKER_LINES = {
    "P:700": 1, "M:008": 22, "H:300": 29, "H:320": 70, "M:007": 173, "H:350": 178, "H:340": 200,
    "H:460": 241, "H:331": 295, "H:330": 377, "H:360": 540, "H:450": 622, "H:445": 649,
    "H:440": 662, "H:435": 742, "H:501": 784, "H:470": 822, "H:430": 860, "M:009": 907,
    "H:420": 917, "H:410": 977, "H:400": 1016, "H:500": 1062, "H:508": 1095, "H:481": 1139,
    "H:480": 1157, "H:490": 1228,
}

# The cregit tables: function -> one table per body, each ((person, tokens, commits), ...).
# Totals are the sums; shares are computed (cregit prints them rounded to 0.01 %).
AUTHORS: dict[str, tuple[tuple[tuple[str, int, int], ...], ...]] = {}  # filled below
OVERALL: tuple[tuple[str, int, int], ...] = ()  # filled below


def url(line: int | None = None, path: str = FILE) -> str:
    """The file (at a line) on a public source browser, at tag v4.7."""
    return BROWSER + path + (f"#L{line}" if line else "")


def marker_url(marker: str) -> str | None:
    line = MARKER_LINES.get(marker)
    return url(line) if line else None


def where(name: str) -> str:
    """One line: where the C function is, e.g. ``page_tables.c:393-538 (Linux v4.7)``."""
    if name in ELSEWHERE:
        return f"{ELSEWHERE[name]} (Linux {RELEASE}; not in page_tables.c)"
    spans = LINES[name]
    parts = [f"{a}-{b}" + (f" ({v})" if v else "") for a, b, v in spans]
    return f"{FILE}:{', '.join(parts)} (Linux {RELEASE})"


def links(name: str) -> list[tuple[str, str]]:
    """(label, url) for each body of the function."""
    if name in ELSEWHERE:
        return [(ELSEWHERE[name].rsplit("/", 1)[-1], url(path=ELSEWHERE[name]))]
    return [(f"L{a}-{b}" + (f" {v}" if v else ""), url(a)) for a, b, v in LINES[name]]


# ---------------------------------------------------------------- authorship

@dataclass(frozen=True)
class Share:
    person: str
    tokens: int
    commits: int
    token_share: float  # percent
    commit_share: float


def shares(table) -> tuple[list[Share], int, int]:
    tokens = sum(t for _, t, _ in table)
    commits = sum(c for _, _, c in table)
    rows = [Share(p, t, c, 100 * t / tokens, 100 * c / commits) for p, t, c in table]
    return rows, tokens, commits


def authorship_line(name: str) -> str:
    """Who wrote the function's tokens, from the cregit tables: one line per body."""
    tables = AUTHORS.get(name)
    if not tables:
        return "authorship: not in the cregit page of page_tables.c"
    out = []
    spans = LINES.get(name, ())
    for i, table in enumerate(tables):
        rows, tokens, commits = shares(table)
        who = ", ".join(f"{r.person} {r.token_share:.0f}% ({r.tokens} tokens, {r.commits} commit{'s' if r.commits != 1 else ''})"
                        for r in rows)
        variant = f" [{spans[i][2]}]" if i < len(spans) and spans[i][2] else ""
        out.append(f"written by{variant}: {who}; {tokens} tokens, {commits} commits in all (cregit)")
    return "\n".join(out)


_ROW = re.compile(r"^(?P<name>.+?)(?P=name)(?P<rest>\d[\d.%]*)$")
_TOTAL = re.compile(r"^Total(\d+)100\.00%(\d+)100\.00%$")


def _split_row(rest: str, total_tokens: int, total_commits: int) -> tuple[int, int]:
    """cregit glues ``tokens prop% commits prop%`` together ("3986.67%250.00%"): find the split
    whose percentages agree with the totals."""
    first, second = rest.split("%")[0], rest.split("%")[1]
    for i in range(1, len(first)):
        tokens, prop = first[:i], first[i:]
        if prop.startswith(".") or not re.fullmatch(r"\d+\.\d\d", prop):
            continue
        if abs(100 * int(tokens) / total_tokens - float(prop)) > 0.006:
            continue
        for j in range(1, len(second)):
            commits, cprop = second[:j], second[j:]
            if re.fullmatch(r"\d+\.\d\d", cprop) and abs(100 * int(commits) / total_commits - float(cprop)) <= 0.006:
                return int(tokens), int(commits)
    raise ValueError(f"cannot split cregit row {rest!r}")


def _parse_table(lines: list[str]) -> tuple[tuple[str, int, int], ...]:
    total = next(_TOTAL.match(x) for x in lines if _TOTAL.match(x))
    tt, tc = int(total.group(1)), int(total.group(2))
    rows = []
    for x in lines:
        if x.startswith("Total") or x.startswith("Person") or not x.strip():
            continue
        m = _ROW.match(x)
        if m:
            rows.append((m.group("name"), *_split_row(m.group("rest"), tt, tc)))
    assert sum(r[1] for r in rows) == tt and sum(r[2] for r in rows) == tc, lines
    return tuple(rows)


# ---------------------------------------------------------------- the C text (live only)

def _seed_candidates() -> list[Path]:
    """The cregit seed kept beside a clone (``../shared/seeds``), as the referee finds it."""
    return [ROOT.parent / "shared" / "seeds" / SEED_NAME]


def find_source(path: str | os.PathLike | None = None) -> Path | None:
    """The C to show: ``path``, else ``$LGUEST_BOOK_C_SOURCE``, else the cregit seed kept beside
    the repository.  None when there is none (nothing is downloaded)."""
    for candidate in (path, os.environ.get("LGUEST_BOOK_C_SOURCE"), *_seed_candidates()):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


HOW_TO_GET = (f"No C source at hand. Read it at {url()} (Linux {RELEASE}), or give a copy: "
              "save page_tables.c (or its cregit rendering) and pass its path "
              "(twin(name, c=True, source=PATH), lguest-book where NAME --c --source PATH) or set "
              "LGUEST_BOOK_C_SOURCE=PATH.")


def is_cregit(text: str) -> bool:
    return "Contributors" in text and "PersonTokensProp" in text


_SIG = re.compile(r"^(?:static\s+)?[A-Za-z_][\w\s\*]*?\b(\w+)\(")


def _cregit_chunks(text: str):
    """(function name, flattened C, contributor table lines) in file order."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _SIG.match(lines[i])
        if m and m.group(1) in LINES and "{" in lines[i]:
            body = [lines[i]]
            j = i + 1
            while lines[j].strip() != "Contributors":
                body.append(lines[j])
                j += 1
            k = j + 1
            table = []
            while not lines[k].startswith("Total"):
                table.append(lines[k])
                k += 1
            table.append(lines[k])
            yield m.group(1), " ".join(body), table
            i = k + 1
            continue
        if lines[i].strip() == "Overall Contributors":
            k, table = i + 1, []
            while not lines[k].startswith("Total"):
                table.append(lines[k])
                k += 1
            table.append(lines[k])
            yield None, "", table
            i = k + 1
            continue
        i += 1


def parse_authors(text: str):
    """The seed's contributor tables: ({function: (table, ...)}, overall table)."""
    authors: dict[str, list] = {}
    overall = ()
    for name, _body, table in _cregit_chunks(text):
        if name is None:
            overall = _parse_table(table)
        else:
            authors.setdefault(name, []).append(_parse_table(table))
    return {k: tuple(v) for k, v in authors.items()}, overall


def layout(flat: str) -> str:
    """Re-lay out one flattened C function (as cregit prints it) for reading: a line per
    statement, braces indent, comments on lines of their own, directives at column 0."""
    out: list[str] = []
    cur = ""
    depth = 0
    paren = 0
    i = 0
    n = len(flat)

    def emit(extra_indent=0, text=None):
        nonlocal cur
        s = text.rstrip() if text is not None else cur.strip()
        if s.strip():
            if re.match(r"#\s*(if|ifdef|ifndef|else|elif|endif)\b", s):
                out.append(s)
            else:
                out.append("\t" * max(depth + extra_indent, 0) + s)
        cur = ""

    while i < n:
        ch = flat[i]
        if flat.startswith("/*", i):
            j = flat.find("*/", i + 2)
            j = n if j < 0 else j + 2
            comment = flat[i:j]
            emit()
            parts = [p.strip() for p in re.split(r"\s\*\s(?!/)", comment)]
            if len(parts) > 1:
                emit(text="/*")
                for p in parts[1:]:
                    p = p.rstrip("*/").strip() if p.endswith("*/") else p
                    emit(text=" * " + p if p else " *")
                emit(text=" */")
            else:
                emit(text=comment)
            i = j
            continue
        if ch == '"':
            j = i + 1
            while j < n and flat[j] != '"':
                j += 2 if flat[j] == "\\" else 1
            cur += flat[i:j + 1]
            i = j + 1
            continue
        m = re.match(r"#\s*(ifdef|ifndef|if|else|elif|endif)\b(\s+\w+)?", flat[i:]) if ch == "#" else None
        if m:
            emit()
            word = m.group(0) if m.group(1) not in ("else", "endif") else "#" + m.group(1)
            out.append(word.strip())
            i += len(word)
            continue
        if ch == "(":
            paren += 1
        elif ch == ")":
            paren -= 1
        if ch == "{" and paren == 0:
            cur = cur.rstrip() + " {"
            emit()
            depth += 1
        elif ch == "}" and paren == 0:
            emit()
            depth -= 1
            cur = "}"
            emit()
        elif ch == ";" and paren == 0:
            cur += ";"
            emit()
        else:
            cur += ch
        i += 1
    emit()
    # "}" followed by "else" reads better on one line, as the kernel writes it
    merged: list[str] = []
    for line in out:
        if merged and line.strip().startswith("else") and merged[-1].strip() == "}":
            merged[-1] = merged[-1] + " " + line.strip()
        else:
            merged.append(line)
    return "\n".join(merged)


def _c_file_functions(text: str) -> dict[str, list[tuple[int, int, str]]]:
    """Functions of a real page_tables.c: name -> [(first line, last line, text)]."""
    lines = text.split("\n")
    found: dict[str, list] = {}
    i = 0
    while i < len(lines):
        m = _SIG.match(lines[i])
        if m and not lines[i].rstrip().endswith(";") and m.group(1) in LINES:
            j = i
            while j < len(lines) and lines[j] != "{":
                j += 1
            k = j
            while k < len(lines) and lines[k] != "}":
                k += 1
            if k < len(lines):
                found.setdefault(m.group(1), []).append((i + 1, k + 1, "\n".join(lines[i:k + 1])))
                i = k + 1
                continue
        i += 1
    return found


@dataclass
class CFunction:
    name: str
    bodies: list[str]          # one per variant, in file order
    lines: list[tuple[int, int]] | None  # real line numbers, when read from a real file
    origin: str                # what it was read from


def c_text(name: str, source: str | os.PathLike | None = None) -> CFunction | None:
    """The C of ``name``, read live from the reader's source; None when no source is found."""
    path = find_source(source)
    if path is None or name not in LINES:
        return None
    text = path.read_text(errors="replace")
    if is_cregit(text):
        from .verify.extract import _split_directives
        bodies = []
        for fname, flat, _table in _cregit_chunks(text):
            if fname == name:
                flat = " ".join(" ".join(_split_directives(flat)).split())
                bodies.append(layout(flat))
        return CFunction(name, bodies, None, f"{path} (cregit rendering, re-laid out)")
    found = _c_file_functions(text).get(name, [])
    spans = ", ".join(f"{a}-{b}" for a, b, _ in found)
    return CFunction(name, [t for _, _, t in found], [(a, b) for a, b, _ in found],
                     f"{path} (lines {spans})" if found else str(path))


def c_lines_of_seed(source: str | os.PathLike | None = None, min_len: int = 24) -> list[str]:
    """Every line of the C (code and comments), whitespace-normalised, at least ``min_len``
    characters long: what no stored output of the book may contain."""
    path = find_source(source)
    if path is None:
        return []
    text = path.read_text(errors="replace")
    out = set()
    if is_cregit(text):
        from .verify.extract import to_c
        for fname, flat, _ in _cregit_chunks(text):
            if fname:
                from .verify.extract import _split_directives
                flat = " ".join(" ".join(_split_directives(flat)).split())
                for line in layout(flat).splitlines():
                    out.add(line)
        for line in to_c(text).splitlines():
            out.add(line)
    else:
        out.update(text.splitlines())
    norm = {" ".join(x.replace("/*", " ").replace("*/", " ").strip(" *\t").split()) for x in out}
    return sorted(x for x in norm if len(x) >= min_len)


from ._cregit_authors import AUTHORS as _A, OVERALL as _O  # noqa: E402  (data, generated from the seed)

AUTHORS.update(_A)
OVERALL = _O
