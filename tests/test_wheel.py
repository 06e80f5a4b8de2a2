"""The wheel is the book: built from the tree, installed into a fresh virtual environment, run
from a folder outside the repository.

The fresh environment gets the wheel's own files (installed by pip, ``--no-deps``); its
dependencies (jupytext, nbclient, nbgrader...) come from the test environment through a
``.pth`` line, so the test needs no network.  Everything the commands read of lguest-book
comes from the wheel: the test checks that the module imported is the installed one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", *paths], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return [p for p in out if (ROOT / p).is_file()]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tree (the clone stays untouched)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tree")
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(src), "-w", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # e.g. the project.license deprecation
    (whl,) = out.glob("lguest_book-*.whl")
    return whl


@pytest.fixture(scope="session")
def env(wheel, tmp_path_factory):
    """A fresh venv holding the wheel; returns (bin folder, environment variables, site-packages)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")  # after the wheel's own
    home = tmp_path_factory.mktemp("home")
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("LGUEST_BOOK", "JUPYTER", "PYTHON"))}
    variables.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    return venv / "bin", variables, site


def run(env, cwd, *args, timeout=300):
    bindir, variables, _ = env
    return subprocess.run([str(bindir / "lguest-book"), *args], cwd=cwd, env=variables, capture_output=True,
                          text=True, timeout=timeout)


def test_the_wheel_holds_the_code_the_chapters_the_templates_and_the_shim(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in _tracked("lguest_book", "book"):
        if rel.endswith(".pyc"):
            continue
        inside = rel if rel.startswith("lguest_book/") else "lguest_book/_book/" + rel[len("book/"):]
        assert inside in names, f"the wheel lacks {rel}"
    assert "lguest_book/verify/shim/lguest_shim.h" in names
    assert any(n.startswith("lguest_book/_book/_templates/") for n in names)


def test_a_reader_without_a_clone_gets_the_book(env, tmp_path):
    _, variables, site = env
    where = subprocess.run([str(env[0] / "python"), "-c", "import lguest_book.locate as l; print(l.source_book())"],
                           cwd=tmp_path, env=variables, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == site / "lguest_book" / "_book"

    # open: the first run copies the book and trusts it; it would then start JupyterLab
    first = run(env, tmp_path, "open", "--dry-run", "--no-browser")
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "lguest-book"
    assert "copied the book" in first.stdout and "would run:" in first.stdout and "-m jupyterlab" in first.stdout
    chapters = sorted(copy.glob("[0-9][0-9]-*.ipynb"))
    assert len(chapters) >= 10 and (copy / "README.md").is_file() and (copy / "_templates").is_dir()
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary(data_dir=str(Path(variables["HOME"]) / ".local" / "share" / "jupyter"))
    assert all(notary.check_signature(nbformat.read(nb, 4)) for nb in chapters)

    # a reader's edit survives a later open; a deleted file comes back
    edited = chapters[1].with_suffix(".py")
    edited.write_text(edited.read_text() + "\n# my note\n")
    (copy / "README.md").unlink()
    again = run(env, tmp_path, "open", "--dry-run")
    assert again.returncode == 0, again.stderr
    assert f"kept your {Path('lguest-book') / edited.name}" in again.stdout
    assert "added 1 file(s)" in again.stdout and (copy / "README.md").is_file()
    assert edited.read_text().endswith("# my note\n")
    edited.write_text((site / "lguest_book" / "_book" / edited.name).read_text())

    # book check / execute work on the reader's copy (found as ./lguest-book)
    check = run(env, tmp_path, "book", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("ok ") == len(chapters)
    executed = run(env, tmp_path, "book", "execute", str(chapters[0].relative_to(tmp_path)))
    assert executed.returncode == 0, executed.stderr
    assert "executed" in executed.stdout and "without encryption" not in executed.stderr
    assert notary.check_signature(nbformat.read(chapters[0], 4))  # re-executed, still trusted

    # the classroom edition from the installed book
    course = run(env, tmp_path, "classroom", "course", "course")
    assert course.returncode == 0, course.stderr
    assert list((tmp_path / "course" / "source").glob("ch*/*.ipynb"))
    copies = run(env, tmp_path, "classroom", "student-copy", "--out", "self-study")
    assert copies.returncode == 0, copies.stderr
    assert len(list((tmp_path / "self-study").glob("*.ipynb"))) == len(chapters)
    assert not (site / "build").exists()


def test_commands_that_find_no_book_say_so_and_fail(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["book", "check", "--book", "empty"], ["book", "execute"], ["book", "sync"],
                 ["classroom", "student-copy", "--book", "empty"], ["classroom", "course", "--book", "empty"]):
        done = run(env, tmp_path, *args)
        assert done.returncode != 0, args
        line = done.stderr.strip()
        assert line and "\n" not in line and "Traceback" not in line, (args, done.stderr)
    # the read-only check works on the book the wheel carries, from any folder
    assert run(env, empty, "book", "check").returncode == 0


def test_verify_builds_outside_site_packages(env, tmp_path):
    from lguest_book.verify import c_referee, extract

    try:
        seed = extract.find_source()
    except FileNotFoundError:
        pytest.skip("no page_tables.c text on this machine")
    if not c_referee.gcc_m32_available():
        pytest.skip("gcc cannot build 32-bit programs here")
    done = run(env, tmp_path, "verify", "--source", str(seed), "--no-pae", "--sequences", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agrees" in done.stdout
    _, variables, site = env
    assert list((Path(variables["XDG_CACHE_HOME"]) / "lguest-book" / "referee").glob("*/referee-nonpae"))
    assert not (site / "build").exists() and not (site.parent / "build").exists()
