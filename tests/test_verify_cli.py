"""``lguest-book verify`` on bad input and while it runs: a one-line error naming the problem
and exit status 2 for what it cannot do, a summary that names any referee it did NOT run (exit
status 3: not a full verification), and progress on stderr."""

import builtins
from pathlib import Path

import pytest

from lguest_book import cli
from lguest_book.verify import c_referee, extract

ROOT = Path(__file__).resolve().parents[1]


def _verify(capsys, *argv):
    rc = cli.main(["verify", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_missing_source_is_refused(capsys):
    rc, out, err = _verify(capsys, "--source", "/nonexistent/page_tables.c")
    assert rc == 2 and out == ""
    assert _one_line(err) == "lguest-book verify: --source /nonexistent/page_tables.c: no such file"


def test_a_source_that_is_not_page_tables_c_is_refused(capsys):
    rc, out, err = _verify(capsys, "--source", str(ROOT / "README.md"))
    assert rc == 2 and out == ""
    line = _one_line(err)
    assert "README.md" in line and "not drivers/lguest/page_tables.c nor a cregit rendering of it" in line


def test_a_directory_is_not_a_source(capsys, tmp_path):
    rc, _, err = _verify(capsys, "--source", str(tmp_path))
    assert rc == 2 and _one_line(err).endswith(": not a file")


def test_a_negative_count_of_sequences_is_refused(capsys):
    rc, out, err = _verify(capsys, "--sequences", "-5")
    assert rc == 2 and out == ""
    assert _one_line(err) == "lguest-book verify: --sequences -5: a count of random sequences must be 0 or more"


def _no_unicorn(monkeypatch):
    real_import = builtins.__import__

    def refuse(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "unicorn" or (fromlist and "mmu_referee" in fromlist) or name.endswith("mmu_referee"):
            raise ModuleNotFoundError("No module named 'unicorn'", name="unicorn")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", refuse)


def test_skipped_referees_are_named_and_the_status_says_not_full(capsys, monkeypatch):
    monkeypatch.setattr(c_referee, "gcc_m32_available", lambda: False)
    _no_unicorn(monkeypatch)
    rc, out, err = _verify(capsys, "--sequences", "0")
    assert rc == 3
    assert "NOT RUN: referee 1 (compiled page_tables.c): gcc cannot build 32-bit programs here" in out
    assert ("NOT RUN: referee 2 (Unicorn MMU): No module named 'unicorn' (get it: pip install 'lguest-book[referee]', "
            "or in a clone scripts/bootstrap referee)") in out
    assert "agrees with every referee" not in out
    assert out.rstrip().endswith("so this is not a full verification.")


try:
    extract.find_source()
    HAVE_SOURCE = True
except FileNotFoundError:
    HAVE_SOURCE = False
needs_c = pytest.mark.skipif(not (c_referee.gcc_m32_available() and HAVE_SOURCE),
                             reason="gcc -m32 or page_tables.c not available")


@needs_c
def test_progress_on_stderr_and_a_partial_run_is_not_full(capsys, monkeypatch):
    _no_unicorn(monkeypatch)
    rc, out, err = _verify(capsys, "--no-pae", "--sequences", "0")
    assert rc == 3
    assert "compiled page_tables.c (non-PAE):" in out and "0 divergences" in out
    assert "NOT RUN: referee 2 (Unicorn MMU)" in out
    progress = [line for line in err.splitlines() if line.startswith("referee 1, non-PAE: ")]
    assert progress and progress[0].startswith("referee 1, non-PAE: 1/")   # a line at the start...
    assert 5 <= len(progress) <= 11                                        # ...and one per tenth


@needs_c
def test_a_source_that_does_not_compile_is_one_line(capsys, tmp_path):
    bad = tmp_path / "page_tables.c"
    bad.write_text("bool demand_page( guest_set_pgd( gpte_to_spte( map_switcher_in_guest( @@@\n")
    rc, out, err = _verify(capsys, "--no-pae", "--source", str(bad))
    assert rc == 2
    line = _one_line(err)
    assert line.startswith(f"lguest-book verify: {bad} does not compile against the shims: ") and "error" in line
