"""Collecting from nbgrader's exchange: a submission may hold only its submitter's own files.

The inbox is writable by every student and collect runs as the instructor; nbgrader's own copy
follows symbolic links, so a link planted in a submission would hand the student whatever the
instructor can read (the solution notebook, say).  lguest_book.hub_exchange refuses it."""

import os
import pwd
import shutil
from pathlib import Path

import pytest

pytest.importorskip("nbgrader")

from lguest_book import classroom  # noqa: E402
from lguest_book.hub_exchange import RefusedSubmission, copy_submission, submission_problem  # noqa: E402

BOOK = Path(__file__).resolve().parents[1] / "book"
CH3 = BOOK / "03-stack-pinning.ipynb"
ME = pwd.getpwuid(os.getuid()).pw_name


def _folder(root: Path, name: str = "sub") -> Path:
    sub = root / name
    sub.mkdir()
    (sub / "03-stack-pinning.ipynb").write_text("{}")
    (sub / "notes").mkdir()
    (sub / "notes" / "a.txt").write_text("mine")
    return sub


def test_a_submission_of_own_files_is_copied_whole(tmp_path):
    sub = _folder(tmp_path)
    os.chmod(sub / "notes" / "a.txt", 0o640)
    assert submission_problem(str(sub)) is None
    copy_submission(str(sub), str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "notes" / "a.txt").read_text() == "mine"
    assert (tmp_path / "copy" / "notes" / "a.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("plant", ["link to a file", "link to a folder", "the folder is a link", "a pipe"])
def test_links_and_special_files_are_refused_and_never_followed(tmp_path, plant):
    secret = tmp_path / "instructor" / "source.ipynb"
    secret.parent.mkdir()
    secret.write_text("THE SOLUTION")
    sub = _folder(tmp_path)
    if plant == "link to a file":
        (sub / "03-stack-pinning.ipynb").unlink()
        (sub / "03-stack-pinning.ipynb").symlink_to(secret)
        why = "03-stack-pinning.ipynb is a symbolic link"
    elif plant == "link to a folder":
        (sub / "more").symlink_to(secret.parent)
        why = "more is a symbolic link"
    elif plant == "the folder is a link":
        shutil.rmtree(sub)
        sub.symlink_to(secret.parent)
        why = "sub is a symbolic link"
    else:
        os.mkfifo(sub / "pipe")
        why = "pipe is not a regular file or folder"
    assert submission_problem(str(sub)) == why
    with pytest.raises((RefusedSubmission, OSError)):
        copy_submission(str(sub), str(tmp_path / "copy"))
    copied = [p.read_text() for p in (tmp_path / "copy").rglob("*") if p.is_file() and not p.is_symlink()] \
        if (tmp_path / "copy").exists() else []
    assert "THE SOLUTION" not in copied


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_refused(tmp_path):
    sub = _folder(tmp_path)
    os.chown(sub / "notes" / "a.txt", 65534, 65534)  # nobody's
    assert submission_problem(str(sub)).startswith("notes/a.txt belongs to ")
    with pytest.raises(RefusedSubmission, match="belongs to"):
        copy_submission(str(sub), str(tmp_path / "copy"))


def test_collect_skips_a_planted_link_and_takes_the_students_last_honest_submission(tmp_path):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    assert classroom.make_course(course, notebooks=[CH3], exchange=exchange) == ["ch03"]
    classroom.release(course, "ch03")
    inbound = exchange / "lguest-book" / "inbound"
    released = course / "release" / "ch03" / CH3.name

    def submit(stamp: str, tag: str) -> Path:
        folder = inbound / f"{ME}+ch03+2026-12-01 {stamp}.000000 UTC+{tag}"
        folder.mkdir()
        (folder / "timestamp.txt").write_text(f"2026-12-01 {stamp}.000000 UTC")
        (folder / "submission_secret.txt").write_text("s3cret")
        return folder

    honest = submit("10:00:00", "honest")
    shutil.copy(released, honest / CH3.name)
    evil = submit("11:00:00", "evil")  # newer: nbgrader alone would take it
    (evil / CH3.name).symlink_to(course / "source" / "ch03" / CH3.name)
    done = classroom._nbgrader(course, "collect", "ch03", "--update")
    said = done.stdout + done.stderr
    assert f"{evil.name} is not collected: {CH3.name} is a symbolic link" in said, said[-2000:]
    taken = course / "submitted" / ME / "ch03" / CH3.name
    assert not taken.is_symlink() and taken.read_bytes() == released.read_bytes()
    assert "BEGIN SOLUTION" not in taken.read_text()


def test_the_class_environment_asks_no_one_about_jupyter_news(tmp_path):
    import json

    from lguest_book import hub

    path = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    assert hub.quiet_lab(tmp_path) == path
    settings = json.loads(path.read_text())
    assert settings["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}  # kept
