"""Where the C is, who wrote it, the C shown live only: and no kernel code in the repository's
stored notebooks."""

import os
from pathlib import Path

import nbformat
import pytest

from lguest_book import csource, page_tables as pt
from lguest_book.cli import main
from lguest_book.notebook import twin

BOOK = Path(__file__).resolve().parents[1] / "book"
SEED = csource.find_source()
needs_seed = pytest.mark.skipif(SEED is None or not csource.is_cregit(SEED.read_text(errors="replace")),
                                reason="the cregit seed is not beside the repository")


def test_every_twin_has_a_line_range_in_the_v47_file():
    for name in pt.C_FUNCTIONS:
        assert name in csource.LINES or name in csource.ELSEWHERE, name
    spans = sorted(s for v in csource.LINES.values() for s in v)
    for (a, b, _), (c, _d, _) in zip(spans, spans[1:]):
        assert a < b < c  # in order, never overlapping
    assert spans[-1][1] <= csource.FILE_LINE_COUNT
    assert set(pt.MARKERS.values()) <= set(csource.MARKER_LINES)
    # each function's own marker comment comes before it (or is the part that explains it)
    assert csource.MARKER_LINES["H:330"] < csource.LINES["demand_page"][0][0]


@needs_seed
def test_line_table_follows_the_seed_order():
    text = SEED.read_text(errors="replace")
    order = [name for name, _, _ in csource._cregit_chunks(text) if name]
    spans = sorted((a, name) for name, v in csource.LINES.items() for a, _, _ in v)
    assert order == [name for _, name in spans]


@needs_seed
def test_stored_authorship_is_the_seeds():
    authors, overall = csource.parse_authors(SEED.read_text(errors="replace"))
    assert authors == csource.AUTHORS
    assert overall == csource.OVERALL
    assert sum(t for _, t, _ in overall) == 4035


@pytest.mark.skipif(not os.environ.get("LGUEST_BOOK_C_SOURCE", "").endswith(".c"),
                    reason="no real page_tables.c given in LGUEST_BOOK_C_SOURCE")
def test_line_table_matches_a_real_file():
    found = csource._c_file_functions(Path(os.environ["LGUEST_BOOK_C_SOURCE"]).read_text())
    assert {k: tuple((a, b) for a, b, _ in v) for k, v in found.items()} == \
        {k: tuple((a, b) for a, b, _ in v) for k, v in csource.LINES.items()}


def test_twin_names_the_lines_the_link_and_the_authors_but_no_c():
    shown = repr(twin("demand_page"))
    assert "drivers/lguest/page_tables.c:393-538 (Linux v4.7)" in shown
    assert "https://elixir.bootlin.com/linux/v4.7/source/drivers/lguest/page_tables.c#L393" in shown
    assert "rusty russell" in shown and "matias zabaljauregui" in shown
    assert "unsigned long" not in shown  # no C without c=True


def test_twin_with_c_and_no_source_says_where_to_get_it(monkeypatch):
    monkeypatch.setattr(csource, "_seed_candidates", lambda: [])
    monkeypatch.delenv("LGUEST_BOOK_C_SOURCE", raising=False)
    shown = repr(twin("pin_page", c=True))
    assert csource.HOW_TO_GET in shown


@needs_seed
def test_twin_with_c_shows_both_side_by_side():
    shown = twin("find_pgdir", c=True)
    assert "<table>" in shown._repr_html_()
    text = repr(shown)
    assert "find_pgdir(" in text and "ARRAY_SIZE" in text and "def find_pgdir" in text
    assert " | " in text


@needs_seed
def test_where_c(capsys):
    assert main(["where", "guest_set_pgd", "--c"]) == 0
    out = capsys.readouterr().out
    assert "page_tables.c:1030-1052" in out and "#L1030" in out
    assert "PTRS_PER_PGD" in out and "kill_guest(" in out and "def guest_set_pgd" in out


@needs_seed
def test_no_stored_notebook_holds_kernel_code():
    """No line of the C (code or comment), longer than a trivial token, in any stored cell
    source or output of the book."""
    c_lines = csource.c_lines_of_seed(min_len=16)  # shorter ones are English fragments ("the Switcher.")
    assert len(c_lines) > 500
    for path in sorted(BOOK.glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        chunks = []
        for cell in nb.cells:
            chunks.append(cell.source)
            for out in cell.get("outputs", []):
                if "text" in out:
                    chunks.append(out["text"])
                for value in out.get("data", {}).values():
                    chunks.append(value if isinstance(value, str) else str(value))
        stored = " ".join(" ".join(chunks).replace("/*", " ").replace("*/", " ").split())
        leaks = [line for line in c_lines if line in stored]
        assert not leaks, f"{path.name} stores C source: {leaks[:3]}"


def test_where_c_without_a_source_says_where_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(csource, "_seed_candidates", lambda: [])
    monkeypatch.delenv("LGUEST_BOOK_C_SOURCE", raising=False)
    assert main(["where", "new_pgdir", "--c"]) == 0
    out = capsys.readouterr().out
    assert "page_tables.c:747-782" in out and csource.HOW_TO_GET in out and "def new_pgdir" in out


def test_where_brief_names_both_files(capsys):
    assert main(["where", "release_pgd", "--brief"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("release_pgd (H:450): ") and "page_tables.py:" in out[0]
    assert out[1] == "C: drivers/lguest/page_tables.c:604-619 (PAE), 627-646 (non-PAE) (Linux v4.7)"
    assert "#L604" in out[2] and "#L627" in out[3]


def test_a_real_file_is_read_with_its_line_numbers(tmp_path):
    fake = tmp_path / "page_tables.c"
    fake.write_text("/* a header */\n\nstatic int find_pgdir(void)\n{\n\treturn 0;\n}\n")
    found = csource.c_text("find_pgdir", fake)
    assert found.lines == [(3, 6)] and found.origin.endswith("(lines 3-6)")
    assert found.bodies[0].startswith("static int find_pgdir")
