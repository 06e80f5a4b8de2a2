"""A whole class on JupyterHub, end to end on 127.0.0.1 in Debian's Chromium (Playwright).

`lguest-book classroom hub` makes two students and an instructor (real unix users), starts the
hub (LocalProcessSpawner, configurable-http-proxy from npm); then: each student logs in and
runs a chapter cell of the student book in their own home; a student asking for the other's
server gets 403; a student's kernel cannot read the other's home, the instructor's course or
the exchange's inbox; the instructor's formgrader opens inside JupyterLab; the instructor
releases an assignment through nbgrader's exchange, a student fetches, answers and submits
it, the instructor collects and autogrades it to full marks.  Everything stops and the users
are removed, even on failure.  Needs root; the class environment is made (once) in
/opt/lguest-book/hub-env.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from lguest_book import _e2e, classroom, hub
from lguest_book import page_tables as pt

STUDENTS = ["lgbt-alice", "lgbt-bob"]
INSTRUCTOR = "lgbt-teacher"
CHAPTER = "01-helpers.ipynb"
ASSIGNMENT = "ch01"
TIMEOUT_MS = 150_000
ARTIFACT = Path(__file__).resolve().parent.parent / "build" / "hub" / "hub.log"


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root: students are real unix users (useradd) and the hub spawns their servers as them"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _e2e.chromium_path() is None:
        return "Debian's chromium is not installed (scripts/bootstrap test installs it)"
    if not Path(hub.SYSTEM_PYTHON).exists():
        return f"{hub.SYSTEM_PYTHON} is missing: the class environment is made from the system python"
    if shutil.which("npm") is None and not hub.proxy_command(Path(hub.DEFAULT_ENV)).exists():
        return "npm is missing: the hub's proxy, configurable-http-proxy, comes from npm"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e .[test])"
    return None


def _free_ports(n: int = 3) -> int:
    """The first of ``n`` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = []
            for k in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no block of free ports")


def _home(name: str) -> Path:
    return Path(hub._user(name).pw_dir)


def _as_user(name: str, script: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a shell script as unix user ``name``, in their home, with the class environment."""
    home = _home(name)
    env = ["env", "-i", f"HOME={home}", f"USER={name}", f"LOGNAME={name}", "LANG=C.UTF-8",
           f"PATH={hub.DEFAULT_ENV}/bin:/usr/bin:/bin"]
    return subprocess.run(["runuser", "-u", name, "--", *env, "bash", "-c", f"cd ~ && {script}"],
                          capture_output=True, text=True, timeout=timeout)


def _ok(done: subprocess.CompletedProcess, what: str) -> str:
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _login(browser, base: str, name: str, password: str):
    """Log ``name`` in; the spawn starts and continues while we do something else."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    return page


def _lab_ready(page, base: str, name: str) -> None:
    page.wait_for_url(f"{base}/user/{name}/lab**")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined")
    page.wait_for_function("() => document.querySelector('.jp-LabShell') !== null")


KERNEL_IDLE = (
    "() => { const w = window.jupyterapp.shell.currentWidget;"
    " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
    " && w.sessionContext.session.kernel.status === 'idle'; }")


def _open_notebook(page, path: str) -> None:
    page.evaluate("p => { window.jupyterapp.commands.execute('docmanager:open', {path: p}); }", path)
    page.wait_for_function(
        "p => { const w = window.jupyterapp.shell.currentWidget; return w && w.context && w.context.path === p; }", arg=path)
    page.wait_for_function(KERNEL_IDLE)


def _run_cells(page, indices: list[int], expect: str, cell: int) -> str:
    """Clear every output, run the given cells, wait until cell ``cell`` shows ``expect``."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs'); }")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.every("
        " c => c.model.type !== 'code' || c.model.outputs.length === 0)")
    for k in indices:
        page.evaluate(
            "k => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = k;"
            " window.jupyterapp.commands.execute('notebook:run-cell'); }", k)
    page.wait_for_function(
        "([k, text]) => { const c = window.jupyterapp.shell.currentWidget.content.widgets[k];"
        " return c.outputArea && c.outputArea.node.innerText.includes(text); }", arg=[cell, expect])
    return page.evaluate("k => window.jupyterapp.shell.currentWidget.content.widgets[k].outputArea.node.innerText", cell)


def _cell_index(nb_path: Path, needle: str) -> int:
    cells = nbformat.read(nb_path, 4).cells
    return next(i for i, c in enumerate(cells) if c.cell_type == "code" and needle in c.source)


TERMINAL_CHECK = """async () => {
  const t = await window.jupyterapp.serviceManager.terminals.startNew();
  let out = '';
  const seen = new Promise(resolve => t.messageReceived.connect((_, msg) => {
    if (msg.type === 'stdout') { out += msg.content[0]; if (out.includes('END-OF-2')) resolve(); }
  }));
  for (let k = 0; k < 300 && t.connectionStatus !== 'connected'; k++) await new Promise(r => setTimeout(r, 100));
  t.send({type: 'stdin', content: ['command -v nbgrader; echo I-AM-$(whoami); echo END-OF-$((1+1))\\r']});
  await Promise.race([seen, new Promise(r => setTimeout(r, 60000))]);
  await t.shutdown();
  return out;
}"""

PROBE = '''\
import getpass, os
print("I am", getpass.getuser())
for what, path in {targets!r}:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path).read()
        print("READ", what)
    except PermissionError:
        print("PermissionError", what)
print("probe done")
'''


def _answer(released: Path, source: Path, out: Path) -> None:
    """The released notebook with every solution cell filled in from the instructor's source."""
    src = {c.metadata["nbgrader"]["grade_id"]: c for c in nbformat.read(source, 4).cells
           if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(released, 4)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in src:
            c.source = "\n".join(line for line in src[gid].source.splitlines()
                                 if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    nbformat.write(nb, out)


class _Background(threading.Thread):
    """Run ``fn(*args)`` in a thread; ``result()`` joins (bounded) and re-raises its error."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.value, self.error = fn, args, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            self.error = e

    def result(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"nbgrader's round trip did not finish in {timeout} s"
        if self.error is not None:
            raise self.error
        return self.value


def _round_trip(course: Path, exchange: Path, student: str, times: dict, t0: float):
    """By nbgrader's CLI, each command as its unix user: the instructor generates and releases
    the assignment, the student fetches, answers and submits it, the other student submits a
    blank one under her name, the instructor collects and autogrades: hers keeps full marks,
    the forged one is filed as its author's.  Returns her grades and the assignment's points."""
    _ok(_as_user(INSTRUCTOR, f"cd lguest-course && nbgrader generate_assignment {ASSIGNMENT}"
                             f" && nbgrader release_assignment {ASSIGNMENT}"), "generate + release")
    assert (exchange / hub.COURSE_ID / "outbound" / ASSIGNMENT / CHAPTER).exists()
    times["released"] = time.monotonic() - t0
    _ok(_as_user(student, f"nbgrader fetch_assignment {ASSIGNMENT}"), "fetch_assignment")
    fetched = _home(student) / ASSIGNMENT / CHAPTER
    assert "raise NotImplementedError()" in fetched.read_text()
    _answer(fetched, course / "source" / ASSIGNMENT / CHAPTER, fetched)  # the student's answer
    shutil.chown(fetched, student, student)
    _ok(_as_user(student, f"nbgrader submit {ASSIGNMENT}"), "submit")
    submitted = list((exchange / hub.COURSE_ID / "inbound").iterdir())
    assert len(submitted) == 1 and submitted[0].name.startswith(f"{student}+{ASSIGNMENT}+")
    assert submitted[0].stat().st_uid == hub._user(student).pw_uid
    times["fetched and submitted"] = time.monotonic() - t0
    # The other student then submits the untouched assignment *claiming to be her* (nbgrader's
    # --student): the newest submission, which stock nbgrader would file as hers.
    other = next(n for n in STUDENTS if n != student)
    _ok(_as_user(other, f"nbgrader fetch_assignment {ASSIGNMENT} && nbgrader submit {ASSIGNMENT} --student={student}"),
        "a submission under another student's name")
    said = _ok(_as_user(INSTRUCTOR, f"cd lguest-course && nbgrader collect {ASSIGNMENT}"
                                    f" && nbgrader autograde {ASSIGNMENT}"), "collect + autograde")
    assert f"claims to come from {student} but was submitted by unix user {other}" in said, said[-3000:]
    assert (course / "submitted" / student / ASSIGNMENT / CHAPTER).exists()
    times["collected and graded"] = time.monotonic() - t0
    points = sum(c.metadata["nbgrader"].get("points", 0)
                 for c in nbformat.read(course / "source" / ASSIGNMENT / CHAPTER, 4).cells
                 if c.metadata.get("nbgrader", {}).get("grade"))
    forged = classroom.scores(course, ASSIGNMENT, other)["total"]
    assert forged == (0, points), forged  # filed, and graded, as the other student's own
    return classroom.scores(course, ASSIGNMENT, student), points


def _left_running(names: list[str], wait: float) -> dict[str, list[str]]:
    """The commands still running as these users, after waiting up to ``wait`` s for them to end."""
    uids = {hub._user(n).pw_uid: n for n in names if hub._user(n)}
    deadline = time.monotonic() + wait
    while True:
        left = {}
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and p.stat().st_uid in uids:
                    cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
                    left.setdefault(uids[p.stat().st_uid], []).append(cmd)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_class_on_jupyterhub_in_chromium():
    reason = _why_skip()
    if reason:
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from lguest_book.cli import main

    t0 = time.monotonic()
    times = {}
    hub.remove_users([*STUDENTS, INSTRUCTOR], say=lambda *_: None)  # left over by a killed run
    hub_dir = Path(tempfile.mkdtemp(prefix="lgb-hub-", dir="/tmp"))
    os.chmod(hub_dir, 0o755)
    port = _free_ports()
    base = f"http://127.0.0.1:{port}"
    args = ["classroom", "hub", str(hub_dir), "--students", ",".join(STUDENTS), "--instructor", INSTRUCTOR,
            "--auth", "pam", "--port", str(port)]
    proc = None
    homes = {}
    log = open(hub_dir / "hub.log", "w")
    try:
        assert main([*args, "--create-users"]) == 0
        times["env+config+users"] = time.monotonic() - t0
        homes.update({name: _home(name) for name in [*STUDENTS, INSTRUCTOR]})
        for name in [*STUDENTS, INSTRUCTOR]:
            assert os.stat(_home(name)).st_mode & 0o777 == 0o700
        # PAM, the documented default: each user's own unix password (made by --create-users)
        passwords = dict(line.split() for line in (hub_dir / "state" / "passwords").read_text().splitlines())
        # the same lguest-book as this test's (not whichever one the interpreter would find)
        env = {**os.environ, "PYTHONPATH": str(hub.SOURCE)}
        proc = subprocess.Popen([sys.executable, "-m", "lguest_book.cli", *args, "--start"], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=hub_dir, env=env)
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (hub_dir / "hub.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/hub/api", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the hub did not answer in 90 s"
            time.sleep(0.3)
        times["hub up"] = time.monotonic() - t0

        nb_path = hub_dir / "student-book" / CHAPTER
        imports = _cell_index(nb_path, "from lguest_book import page_tables as pt")
        count = _cell_index(nb_path, "print(len(pt.C_FUNCTIONS)")
        expect = f"{len(pt.C_FUNCTIONS)} functions:"
        exchange = hub_dir / "exchange"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=_e2e.chromium_path(), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                teacher = _login(browser, base, INSTRUCTOR, passwords[INSTRUCTOR])
                pages = {n: _login(browser, base, n, passwords[n]) for n in STUDENTS}
                # The instructor's first login made the course; nbgrader's round trip (as each
                # unix user) runs from now on, beside the browser checks.
                _lab_ready(teacher, base, INSTRUCTOR)
                course = _home(INSTRUCTOR) / "lguest-course"
                assert (course / "source" / ASSIGNMENT / CHAPTER).exists()
                chain = _Background(_round_trip, course, exchange, STUDENTS[0], times, t0)
                times["instructor in lab"] = time.monotonic() - t0

                # Each student finds the book in their home and runs a chapter cell in their own server.
                for name, page in pages.items():
                    _lab_ready(page, base, name)
                    assert (_home(name) / "lguest-book" / CHAPTER).exists()
                    _open_notebook(page, f"lguest-book/{CHAPTER}")
                    shown = _run_cells(page, [imports, count], expect, count)
                    assert shown.startswith(expect), shown
                times["students ran a cell"] = time.monotonic() - t0

                alice, bob = STUDENTS
                # Alice asks for Bob's server: the hub refuses.
                other = pages[alice].context.new_page()
                response = other.goto(f"{base}/user/{bob}/lab")
                assert response.status == 403, (response.status, other.url)
                assert f"{bob}" not in other.url or "/hub/" in other.url
                # Students have no formgrader (server or JupyterLab side); their servers keep
                # JupyterHub's "frame-ancestors 'none'".
                assert other.goto(f"{base}/user/{alice}/formgrader").status == 404
                other.close()
                assert not pages[alice].evaluate("() => window.jupyterapp.commands.hasCommand('nbgrader:open-formgrader')")
                csp = pages[alice].context.request.get(f"{base}/user/{alice}/lab").headers["content-security-policy"]
                assert "frame-ancestors 'none'" in csp, csp

                # Alice's kernel cannot read Bob's home, the course, the inbox, the hub's state.
                probe = _home(alice) / "probe.ipynb"
                targets = [("bob's notebook", str(_home(bob) / "lguest-book" / CHAPTER)),
                           ("the instructor's source", str(course / "source" / ASSIGNMENT / CHAPTER)),
                           ("the instructor's gradebook", str(course / "gradebook.db")),
                           ("the instructor's book", str(hub_dir / "instructor-book" / CHAPTER)),
                           ("the exchange inbox", str(exchange / hub.COURSE_ID / "inbound")),
                           ("the hub's passwords", str(hub_dir / "state" / "passwords"))]
                targets += [("the installed package's book", str(b / CHAPTER)) for b in hub.installed_books(hub.DEFAULT_ENV)]
                nb = nbformat.v4.new_notebook()
                nb.cells = [nbformat.v4.new_code_cell(PROBE.format(targets=targets))]
                nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
                nbformat.write(nb, probe)
                shutil.chown(probe, alice, alice)
                _open_notebook(pages[alice], "probe.ipynb")
                shown = _run_cells(pages[alice], [0], "probe done", 0)
                assert f"I am {alice}" in shown
                assert "READ" not in shown, shown
                for what, _ in targets:
                    assert f"PermissionError {what}" in shown, shown
                times["isolation checked"] = time.monotonic() - t0

                # The formgrader opens inside the instructor's JupyterLab and lists the assignment.
                csp = teacher.context.request.get(f"{base}/user/{INSTRUCTOR}/formgrader").headers["content-security-policy"]
                assert csp == "frame-ancestors 'self'", csp
                teacher.evaluate("() => { window.jupyterapp.commands.execute('nbgrader:open-formgrader'); }")
                frame = teacher.frame_locator("iframe[src*='formgrader']")
                frame.locator(f"text={ASSIGNMENT}").first.wait_for()
                times["formgrader shown"] = time.monotonic() - t0
                # A JupyterLab terminal has the class environment's nbgrader on its PATH.
                shown = teacher.evaluate(TERMINAL_CHECK)
                assert f"{hub.DEFAULT_ENV}/bin/nbgrader" in shown and "I-AM-" + INSTRUCTOR in shown, shown
            finally:
                browser.close()

        grades, points = chain.result(timeout=420)
        assert points > 0 and grades["total"] == (points, points), grades
    finally:
        if proc is not None:
            _stop(proc)
            times["hub stopped"] = time.monotonic() - t0
            left = _left_running([*STUDENTS, INSTRUCTOR], wait=10)
            listening = [p for p in (port, port + 1, port + 2) if _listening(p)]
        log.close()
        hub_log = (hub_dir / "hub.log").read_text() if (hub_dir / "hub.log").exists() else ""
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(hub_log)  # kept for a look after the run (build/ is never committed)
        if sys.exc_info()[0] is not None:
            print(f"\n--- the hub's log (tail; all of it in {ARTIFACT}) ---\n{hub_log[-4000:]}")
        removed = hub.remove_users([*STUDENTS, INSTRUCTOR], say=lambda *_: None)
        times["users removed"] = time.monotonic() - t0
        shutil.rmtree(hub_dir, ignore_errors=True)
        print(f"\nhub test timings (s from start): {json.dumps({k: round(v, 1) for k, v in times.items()})}")
        print(f"total {time.monotonic() - t0:.1f} s")
    # the hub stopped every server, kernel and the proxy by itself
    assert proc is not None and left == {} and listening == [], (left, listening)
    assert sorted(removed) == sorted([*STUDENTS, INSTRUCTOR])
    for name in [*STUDENTS, INSTRUCTOR]:
        assert hub._user(name) is None and not homes[name].exists()
    assert "Traceback" not in hub_log, hub_log[-4000:]


@pytest.mark.parametrize("argv, message", [
    (["/tmp/x", "--instructor", "t"], "give the students either as --students alice,bob or as --roster FILE"),
    (["/tmp/x", "--students", "a", "--roster", "r.txt", "--instructor", "t"], "either as --students"),
    (["/tmp/x", "--students", "a,Bob!", "--instructor", "t"], "'Bob!' is not a usable unix user name"),
    (["/tmp/x", "--students", "a,b,a", "--instructor", "t"], "student listed twice: a"),
    (["/tmp/x", "--students", "a"], "--instructor NAME is required"),
    (["/tmp/x", "--students", "a,t", "--instructor", "t"], "'t' is both the instructor and a student"),
    (["--students", "a", "--instructor", "t"], "give DIR, the hub's own folder"),
    (["/tmp/x", "--roster", "/nonexistent/roster", "--instructor", "t"], "--roster /nonexistent/roster: No such file"),
    (["/tmp/x", "--students", "a", "--instructor", "t", "--port", "0"], "--port 0: not a usable port"),
    (["/tmp/x", "--students", "a", "--instructor", "t", "--book", "/tmp"], "--book /tmp: no chapter notebook there"),
])
def test_hub_refuses_bad_arguments_in_one_line(argv, message, capsys):
    from lguest_book.cli import main

    assert main(["classroom", "hub", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("classroom hub: ") and err.count("\n") == 1, err
    assert not Path("/tmp/x").exists()


def test_roster_file_and_config_without_root(tmp_path):
    """The roster file (comments, blank lines) and a written configuration that JupyterHub's
    own config loader accepts, with the settings the class needs."""
    (tmp_path / "roster.txt").write_text("# class of 2026\nalice\n\nbob  # late\n")
    students, instructor = hub.roster(None, str(tmp_path / "roster.txt"), "teacher")
    assert students == ["alice", "bob"] and instructor == "teacher"
    top = Path(tempfile.mkdtemp(prefix="lgb-hubcfg-", dir="/tmp"))  # pytest's tmp_path is 0700: no exchange there
    try:
        _check_config(top, students, instructor)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _check_config(top: Path, students, instructor):
    from lguest_book import book

    os.chmod(top, 0o755)
    hub_dir = top / "h"
    config = hub.write_config(hub_dir, students, instructor, env="/opt/env", port=9000, auth="pam", say=lambda *_: None)
    text = config.read_text()
    assert 'c.JupyterHub.authenticator_class = "pam"' in text and 'spawner_class = "localprocess"' in text
    assert "c.JupyterHub.port = 9000" in text and ":9001" in text and "hub_port = 9002" in text
    assert os.stat(hub_dir / "state").st_mode & 0o777 == 0o700
    assert os.stat(hub_dir / "exchange").st_mode & 0o7777 == 0o1777
    assert os.stat(hub_dir / "instructor-book").st_mode & 0o777 == 0o700
    assert "BEGIN SOLUTION" in (hub_dir / "instructor-book" / "03-stack-pinning.ipynb").read_text()
    assert sorted(p.name for p in (hub_dir / "student-book").glob("*.ipynb")) == \
        sorted(p.name for p in book.chapters())
    for nb in (hub_dir / "student-book").glob("*.ipynb"):
        assert "BEGIN SOLUTION" not in nb.read_text()
    student = (hub_dir / "jupyter" / "student" / "jupyter_server_config.py").read_text()
    assert '"nbgrader.server_extensions.formgrader": False' in student and "frame-ancestors" not in student
    assert "frame-ancestors 'self'" in (hub_dir / "jupyter" / "instructor" / "jupyter_server_config.py").read_text()
    compile(text, str(config), "exec")
