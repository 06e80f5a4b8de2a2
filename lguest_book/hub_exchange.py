"""nbgrader's exchange, with submissions attributed to the unix user who made them.

nbgrader names a submission after the student it *claims* to be from (``alice+ch03+...``); a
student can claim any name (``nbgrader submit ch03 --student=alice``), and ``collect`` only
warns ("cheating attempt?") before filing it as alice's, where the newest submission replaces
hers.  On a hub where every student is a unix user (``lguest-book classroom hub``), the owner
of the submission's folder in the inbox is who really submitted it: :class:`OwnerCheckedCollect`
files each submission under its owner and says so when the claim differs.  The instructor's
``nbgrader_config.py`` written by the hub selects it (``ExchangeFactory.collect``).

The inbox is writable by every student, and nbgrader's collect runs as the instructor and
copies a submission with ``shutil.copytree``, which follows symbolic links: a student who
plants ``03-stack-pinning.ipynb -> ~instructor/lguest-course/source/ch03/...`` in a folder of
her own would be handed the instructor's solution as her submission (and its full marks).  So
a submission here may hold only its submitter's own regular files and folders.  One that
holds anything else (a symbolic link, a file of another user, a device or a pipe) is not
collected; the student's newest acceptable submission is taken instead, and the log says why.
The copy itself opens every entry without following links (``O_NOFOLLOW``, relative to the
folder already opened) and checks the owner of what it opened, so swapping a file for a link
after the check does not help either.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import ignore_patterns


class RefusedSubmission(Exception):
    """A submission that holds something other than its submitter's own files and folders."""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def _check_entry(st: os.stat_result, uid: int, rel: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise RefusedSubmission(f"{rel} is a symbolic link")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise RefusedSubmission(f"{rel} is not a regular file or folder")
    if st.st_uid != uid:
        raise RefusedSubmission(f"{rel} belongs to {_user(st.st_uid)}, not to the submitter {_user(uid)}")


def submission_problem(path: str) -> str | None:
    """Why the submission folder ``path`` may not be collected, or None: it must be a real
    folder, and hold only regular files and folders, all owned by the folder's owner."""
    try:
        st = os.lstat(path)
        _check_entry(st, st.st_uid, os.path.basename(path))
        if not stat.S_ISDIR(st.st_mode):
            raise RefusedSubmission(f"{os.path.basename(path)} is not a folder")
        for root, dirs, files in os.walk(path):  # never into a linked folder
            for name in dirs + files:
                full = os.path.join(root, name)
                _check_entry(os.lstat(full), st.st_uid, os.path.relpath(full, path))
    except RefusedSubmission as err:
        return str(err)
    except OSError as err:
        return f"it cannot be read ({err.strerror})"
    return None


def copy_submission(src: str, dest: str, ignore=None) -> None:
    """Copy the submission folder ``src`` to ``dest`` (which must not exist), entry by entry,
    never following a link and checking the owner of every entry opened; raises
    :class:`RefusedSubmission` (leaving a partial ``dest`` for the caller to remove)."""
    top = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        uid = os.fstat(top).st_uid
        _copy_folder(top, src, dest, uid, ignore, "")
    finally:
        os.close(top)


def _copy_folder(dfd: int, src: str, dest: str, uid: int, ignore, rel: str) -> None:
    os.mkdir(dest)
    names = sorted(os.listdir(dfd))
    skipped = ignore(os.path.join(src, rel), names) if ignore else set()
    for name in names:
        if name in skipped:
            continue
        where = os.path.join(rel, name)
        _check_entry(os.stat(name, dir_fd=dfd, follow_symlinks=False), uid, where)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except OSError as err:  # ELOOP: it became a link since
            raise RefusedSubmission(f"{where} cannot be opened ({err.strerror})") from None
        try:
            st = os.fstat(fd)
            _check_entry(st, uid, where)
            target = os.path.join(dest, name)
            if stat.S_ISDIR(st.st_mode):
                _copy_folder(fd, src, target, uid, ignore, where)
            else:
                with open(target, "wb") as out:
                    while chunk := os.read(fd, 1 << 20):
                        out.write(chunk)
                os.chmod(target, stat.S_IMODE(st.st_mode) & 0o777)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)


class OwnerCheckedCollect(ExchangeCollect):
    """``nbgrader collect``, attributing each submission to the unix owner of its folder and
    collecting only submissions made of their submitter's own files (see the module's text)."""

    def init_src(self):
        self._seen: list[dict] = []
        super().init_src()
        refused = [r for r in self._seen if r["refused"]]
        if not refused:
            return
        for r in refused:
            self._refuse(r["filename"], r["refused"])
        # Choose again without them, as nbgrader chooses: each student's newest submission, or
        # with before_duedate the newest one made before the due date, if any.
        by_user: dict[str, list[dict]] = {}
        for r in self._seen:
            if not r["refused"]:
                by_user.setdefault(r["username"], []).append(r)
        self.src_records = []
        for records in by_user.values():
            records = self._sort_by_timestamp(records)
            if self.duedate is not None and self.before_duedate:
                early = [r for r in records if r["timestamp"] <= self.duedate]
                records = early or records
            self.src_records.append(records[0])

    def do_copy(self, src, dest, log=None):
        dir_size = self.get_size(src)
        if dir_size > 1000 * self.coursedir.max_dir_size:
            self.log.error("Directory size is too big")
            raise RuntimeError(f"Directory size is too big. Size is {dir_size}, maximum size is "
                               f"{1000 * self.coursedir.max_dir_size}")
        ignore = ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                 max_file_size=self.coursedir.max_file_size, log=self.log)
        try:
            copy_submission(src, dest, ignore)
        except (RefusedSubmission, OSError) as err:
            shutil.rmtree(dest, ignore_errors=True)
            self._refuse(os.path.basename(src), err)

    def _refuse(self, name, why) -> None:
        self.log.error("%s is not collected: %s (a submission may hold only its submitter's own files)", name, why)

    def _path_to_record(self, path):
        rec = super()._path_to_record(path)
        rec["refused"] = submission_problem(path)
        getattr(self, "_seen", []).append(rec)
        uid = os.lstat(path).st_uid
        try:
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            owner = f"uid{uid}"
        if owner != rec["username"]:
            self.log.error("%s claims to come from %s but was submitted by unix user %s: collected as %s's",
                           os.path.basename(path), rec["username"], owner, owner)
            rec["username"] = owner
        return rec
