"""A whole class on one machine: JupyterHub, one unix user per student, nbgrader's exchange.

``lguest-book classroom hub DIR --students alice,bob --instructor teacher`` writes
``DIR/jupyterhub_config.py`` and what it needs (``--create-users`` makes the unix accounts,
``--start`` runs the hub, ``--remove-users`` deletes the accounts again).  The layout:

* ``ENV`` (``--env``, default ``/opt/lguest-book/hub-env``): one virtual environment made from
  Debian's ``/usr/bin/python3``, world-readable, with lguest-book, JupyterHub, JupyterLab and
  nbgrader (``pip install lguest-book[hub]`` from this source tree) and the proxy
  (``configurable-http-proxy`` from npm, in ``ENV/node_modules``).  The hub and every
  student's server and kernel run from it: a venv under ``/root`` cannot be executed by the
  students' unix users.
* ``DIR/state/`` (root only, 0700): the hub's sqlite database, cookie secret, pid file, the
  passwords it generated.
* ``DIR/exchange/`` (nbgrader's exchange): the root 1777 as nbgrader requires; the course
  folder and its ``outbound`` (0755) and ``inbound`` (2733: students can drop a submission in
  but not list or read the others) are made in advance and owned by the instructor, so no
  student can create them first.
* ``DIR/student-book/``: :func:`lguest_book.classroom.student_copies` of the book, copied
  into each student's ``~/lguest-book`` at first login.
* ``DIR/jupyter/{student,instructor}/``: the ``JUPYTER_CONFIG_PATH`` of each role's server.
  Students do not get the formgrader or the create-assignment toolbar; the instructor's
  server lets its own pages frame it (``frame-ancestors 'self'``) so the formgrader shows
  inside JupyterLab (JupyterHub's single-user servers send ``frame-ancestors 'none'``).

* ``DIR/instructor-book/``: the chapters with their solutions, the instructor's alone (0700),
  what the course is made from.

At every login :func:`prepare_home` (the spawner's ``pre_spawn_hook``; the hub runs as root)
sets the home to 0700 and then, in a process running as the user (root never writes in a
user's home, where a planted symlink could send it elsewhere), copies the student book in
(first login), makes the instructor's course ``~/lguest-course`` with
:func:`lguest_book.classroom.make_course` (first login), and writes
``~/.jupyter/nbgrader_config.py`` (course id, exchange; for the instructor the course root, the
course's own ``nbgrader_config.py`` and :class:`lguest_book.hub_exchange.OwnerCheckedCollect`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

COURSE_ID = "lguest-book"  # the course_id that classroom.make_course writes
DEFAULT_ENV = "/opt/lguest-book/hub-env"
SYSTEM_PYTHON = "/usr/bin/python3"
USER_COMMENT = "lguest-book class"  # GECOS of the accounts --create-users makes; --remove-users only removes those
NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SOURCE = Path(__file__).resolve().parent.parent


class HubError(Exception):
    """A problem with the hub's arguments or the machine, said in one line."""


# --- roster ---------------------------------------------------------------------------------
def roster(students: str | None = None, roster_file: str | None = None, instructor: str | None = None) -> tuple[list[str], str]:
    """The students (from ``alice,bob`` or a file of one name a line, ``#`` comments) and the instructor."""
    if bool(students) == bool(roster_file):
        raise HubError("give the students either as --students alice,bob or as --roster FILE")
    if roster_file:
        try:
            lines = Path(roster_file).read_text().splitlines()
        except OSError as e:
            raise HubError(f"--roster {roster_file}: {e.strerror}") from None
        names = [line.split("#", 1)[0].strip() for line in lines]
    else:
        names = [n.strip() for n in students.split(",")]
    names = [n for n in names if n]
    if not names:
        raise HubError("the roster has no student")
    if not instructor:
        raise HubError("--instructor NAME is required (the unix user who releases, collects and grades)")
    for n in [*names, instructor]:
        if not NAME.match(n):
            raise HubError(f"{n!r} is not a usable unix user name (lowercase letters, digits, _ and -, at most 32)")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise HubError(f"student listed twice: {', '.join(dup)}")
    if instructor in names:
        raise HubError(f"{instructor!r} is both the instructor and a student")
    return names, instructor


# --- the shared environment -----------------------------------------------------------------
def _source_stamp(source: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((source / "lguest_book").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(source)).encode())
            h.update(p.read_bytes())
    h.update((source / "pyproject.toml").read_bytes())
    return h.hexdigest()


def _reachable_by_all(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter, if any."""
    path = Path(path).resolve()
    for p in [*reversed(path.parents), path]:
        if p.exists() and not os.stat(p).st_mode & stat.S_IXOTH:
            return p
    return None


def _run(cmd: list[str], what: str, timeout: float = 900, **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise HubError(f"{what} failed: {' | '.join(tail)}")


def proxy_command(env: Path) -> Path:
    return Path(env) / "node_modules" / ".bin" / "configurable-http-proxy"


def make_env(env: Path | str = DEFAULT_ENV, source: Path = SOURCE, python: str = SYSTEM_PYTHON, say=print) -> Path:
    """Create (or bring up to date) the environment every user's server runs from."""
    env = Path(env).resolve()
    singleuser = env / "bin" / "jupyterhub-singleuser"
    stamp_file = env / ".lguest-book-source"
    has_source = (source / "pyproject.toml").exists()
    if not singleuser.exists() or (has_source and (not stamp_file.exists() or stamp_file.read_text() != _source_stamp(source))):
        if os.geteuid() != 0 and not os.access(env.parent if not env.exists() else env, os.W_OK):
            raise HubError(f"--env {env}: cannot create or update it (run as root, or point --env at a ready environment)")
        if not has_source:
            raise HubError(f"--env {env}: not ready, and lguest-book's source tree (pyproject.toml) is not at {source}")
        if not singleuser.exists():
            if not Path(python).exists():
                raise HubError(f"{python} not found: the environment must come from a system python every user can run")
            blocked = _reachable_by_all(Path(python).resolve())
            if blocked:
                raise HubError(f"{python} resolves into {blocked}, which other users cannot enter")
            say(f"creating the class environment {env} from {python} (lguest-book[hub] from {source}) ...")
            env.parent.mkdir(parents=True, exist_ok=True)
            _run([python, "-m", "venv", str(env)], f"{python} -m venv {env}")
            _run([str(env / "bin" / "pip"), "install", "-q", f"{source}[hub]"], f"pip install lguest-book[hub] into {env}")
        else:
            say(f"updating lguest-book in {env} from {source} ...")
            # pip always reinstalls a project from a folder; [hub] brings any dependency added since
            _run([str(env / "bin" / "pip"), "install", "-q", f"{source}[hub]"], f"pip install lguest-book[hub] into {env}")
        stamp_file.write_text(_source_stamp(source))
        _chmod_readable(env)
    if not proxy_command(env).exists():
        npm = shutil.which("npm")
        if npm is None:
            raise HubError("npm not found: the hub's proxy (configurable-http-proxy) comes from npm (apt-get install npm)")
        say(f"installing configurable-http-proxy from npm into {env} ...")
        _run([npm, "install", "--prefix", str(env), "--no-audit", "--no-fund", "--loglevel=error",
              "configurable-http-proxy@5"], "npm install configurable-http-proxy")
        _chmod_readable(env / "node_modules")
    blocked = _reachable_by_all(env)
    if blocked:
        raise HubError(f"--env {env}: other users cannot enter {blocked}, so students could not run their servers")
    for copy in installed_books(env):
        os.chmod(copy, 0o700)  # a wheel's copy of the instructor's book (solutions): root's alone
    quiet_lab(env)
    return env


def quiet_lab(env: Path | str) -> Path:
    """JupyterLab's settings overrides for every user of ``env``: no "get notified about
    Jupyter news?" prompt and no update check (``LabApp.news_url = None`` alone does not stop
    the prompt).  Returns the overrides file; settings already there are kept."""
    path = Path(env) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        settings = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        settings = {}
    settings.setdefault("@jupyterlab/apputils-extension:notification", {}).update(
        {"fetchNews": "false", "checkForUpdates": False})
    path.write_text(json.dumps(settings, indent=2) + "\n")
    os.chmod(path, 0o644)
    return path


def installed_books(env: Path | str) -> list[Path]:
    """Copies of the book (with its solutions) that an installed lguest-book carries as package
    data, in the environment every student can read."""
    return sorted(Path(env).glob("lib/python*/site-packages/lguest_book/_book"))


def _chmod_readable(top: Path) -> None:
    """a+rX, so that every user can read and run what is in the environment."""
    for root, dirs, files in os.walk(top):
        for name in [*dirs, *files, None]:
            p = Path(root) if name is None else Path(root) / name
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = st.st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
                mode |= stat.S_IXGRP | stat.S_IXOTH
            if mode != st.st_mode:
                os.chmod(p, stat.S_IMODE(mode))


# --- users ----------------------------------------------------------------------------------
def _user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def create_users(names: list[str], state: Path, passwords: bool, say=print) -> dict[str, str]:
    """``useradd -m`` each missing user, home 0700; with ``passwords`` give each new one a random
    password (for PAM), kept in ``state/passwords`` (root only).  Returns {name: password}."""
    _need_root("--create-users")
    made = {}
    for name in names:
        if _user(name) is None:
            _run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", USER_COMMENT, name], f"useradd {name}")
            made[name] = secrets.token_urlsafe(9) if passwords else ""
            say(f"created unix user {name}")
        else:
            say(f"unix user {name} exists: kept")
        os.chmod(_user(name).pw_dir, 0o700)
    if passwords and made:
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        _run(["chpasswd"], "chpasswd", input="".join(f"{n}:{p}\n" for n, p in made.items()))
        with _private(state / "passwords", "a") as f:
            f.writelines(f"{n} {p}\n" for n, p in made.items())
        say(f"their passwords are in {state / 'passwords'} (readable by root only); students change them with passwd")
    return made


def remove_users(names: list[str], say=print) -> list[str]:
    """Stop the processes of, and ``userdel -r``, each roster user that --create-users made."""
    _need_root("--remove-users")
    removed = []
    for name in names:
        u = _user(name)
        if u is None:
            continue
        if u.pw_gecos.split(",")[0] != USER_COMMENT:
            say(f"unix user {name} was not made by lguest-book classroom hub: kept")
            continue
        kill_user_processes(u.pw_uid)
        _run(["userdel", "--remove", name], f"userdel {name}")
        removed.append(name)
        say(f"removed unix user {name} and its home")
    return removed


def kill_user_processes(uid: int, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process of ``uid`` (by pid, read from /proc)."""
    import signal
    import time

    def pids():
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if p.stat().st_uid == uid:
                        out.append(int(p.name))
                except OSError:
                    pass
        return out

    found = pids()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while pids() and time.monotonic() < deadline:
            time.sleep(0.1)
    return found


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HubError(f"{what} needs root (JupyterHub's LocalProcessSpawner starts each server as that user)")


class _private:
    """Open a file readable by its owner only."""

    def __init__(self, path: Path, mode: str = "w"):
        self.path, self.mode = Path(path), mode

    def __enter__(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.mode == "a" else os.O_TRUNC), 0o600)
        os.fchmod(fd, 0o600)
        self.f = os.fdopen(fd, "w")
        return self.f

    def __exit__(self, *exc):
        self.f.close()


# --- the exchange ---------------------------------------------------------------------------
def ensure_exchange(exchange: Path, instructor: str) -> Path:
    """nbgrader's exchange: root 1777; course folder, outbound 0755 and inbound 2733 owned by the
    instructor (made now, so no student can make them first and own them)."""
    exchange = Path(exchange)
    exchange.mkdir(parents=True, exist_ok=True)
    os.chmod(exchange, 0o1777)
    u = _user(instructor)
    if u is None or os.geteuid() != 0:  # the course's folders are made when root runs this (--create-users, login)
        return exchange
    for sub, mode in (("", 0o755), ("outbound", 0o755), ("inbound", 0o2733)):
        p = exchange / COURSE_ID / sub if sub else exchange / COURSE_ID
        p.mkdir(exist_ok=True)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode) or (st.st_uid not in (0, u.pw_uid)):
            raise HubError(f"{p} belongs to uid {st.st_uid}, not to {instructor}: remove it and start again")
        os.chown(p, u.pw_uid, u.pw_gid)
        os.chmod(p, mode)
    return exchange


# --- the configuration ----------------------------------------------------------------------
STUDENT_LAB = {"disabledExtensions": {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True}}
SERVER_COMMON = '''\
# lguest-book classroom hub: the {role}'s single-user server (JUPYTER_CONFIG_PATH).
c = get_config()
c.LabApp.news_url = None                      # no "Jupyter news" poll: a class may be offline
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.expose_app_in_browser = True         # window.jupyterapp, for scripted checks of the class
# Terminals: the user's shell, not a login shell (Debian's /etc/profile would reset PATH and
# drop the class environment's bin/, where nbgrader and jupyter are).
import os
c.ServerApp.terminado_settings = {{"shell_command": [os.environ.get("SHELL") or "/bin/bash"]}}
'''
SERVER_STUDENT = '''\
# No formgrader or create-assignment for students (its gradebook would be their own, empty one).
c.ServerApp.jpserver_extensions = {"nbgrader.server_extensions.formgrader": False}
'''
SERVER_INSTRUCTOR = '''\
# JupyterHub's single-user servers send "frame-ancestors 'none'"; the formgrader opens inside
# JupyterLab in an iframe of this same server, so let this server's own pages frame it.
c.ServerApp.tornado_settings = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
'''
NBGRADER_USER = '''\
# Written by lguest-book classroom hub at every login: edits are lost.  Your own settings go in
# nbgrader_config.py files elsewhere on Jupyter's config path.
c = get_config()
c.CourseDirectory.course_id = {course!r}
c.Exchange.root = {exchange!r}
'''
NBGRADER_INSTRUCTOR = '''\
c.CourseDirectory.root = {root!r}
# Each submission is filed under the unix user who made it, whoever it claims to be from
# (nbgrader's own collect only warns "cheating attempt?" and files it under the claimed name).
c.ExchangeFactory.collect = "lguest_book.hub_exchange.OwnerCheckedCollect"
# The course's own settings (gradebook, grading) apply wherever nbgrader runs, the formgrader
# included; inside the course nbgrader reads them itself (so they are not read twice).
import os
if os.path.realpath(os.getcwd()) != os.path.realpath({root!r}):
    load_subconfig({course_config!r})
'''

CONFIG = '''\
# JupyterHub for one lguest-book class on one machine, made by
#   lguest-book classroom hub {hub_dir} {args}
# Run it with `lguest-book classroom hub {hub_dir} ... --start`, or directly:
#   {env}/bin/jupyterhub -f {hub_dir}/jupyterhub_config.py
# (see docs/hub.md: security model, HTTPS, Zero to JupyterHub).
from functools import partial
from pathlib import Path

from lguest_book import hub as lgb_hub

c = get_config()
HUB_DIR = Path({hub_dir!r})
ENV = Path({env!r})
STATE = HUB_DIR / "state"
STUDENTS = {students!r}
INSTRUCTOR = {instructor!r}
EXCHANGE = {exchange!r}

# Network: the public port, the proxy's API and the hub itself.
c.JupyterHub.ip = {ip!r}
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [str(ENV / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
# For a class reached over a network, serve HTTPS (or put a TLS proxy in front):
# c.JupyterHub.ssl_cert = "/etc/ssl/certs/hub.pem"; c.JupyterHub.ssl_key = "/etc/ssl/private/hub.key"

# The hub's own state, readable by root only.
c.JupyterHub.db_url = "sqlite:///" + str(STATE / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# Who may log in: the roster and the instructor, who is the hub's admin.
c.Authenticator.allowed_users = set(STUDENTS) | {{INSTRUCTOR}}
c.Authenticator.admin_users = {{INSTRUCTOR}}
{auth}
# One unix user per person: each server runs as its user, from the class environment.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(ENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {{"PATH": str(ENV / "bin") + ":/usr/local/bin:/usr/bin:/bin"}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
# At every login: home 0700, the student book / the instructor's course, ~/.jupyter/nbgrader_config.py
c.Spawner.pre_spawn_hook = partial(lgb_hub.prepare_home, hub_dir=HUB_DIR, instructor=INSTRUCTOR, exchange=EXCHANGE)
'''
AUTH_PAM = '''\
# Each person logs in with their own unix password (PAM).
c.JupyterHub.authenticator_class = "pam"
'''
AUTH_SHARED = '''\
# One password for every student, another for the instructor (state/shared-passwords).
# Anyone who knows the students' password can log in as ANY student: fine for a lab session on
# one machine, not for graded work a student could tamper with; prefer --auth pam.
_pw = dict(line.split(None, 1) for line in (STATE / "shared-passwords").read_text().splitlines() if line.strip())
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = _pw["students"].strip()
c.SharedPasswordAuthenticator.admin_password = _pw["instructor"].strip()
'''


def write_role_configs(top: Path | str) -> Path:
    """``top/student`` and ``top/instructor``: each role's JUPYTER_CONFIG_PATH folder."""
    top = Path(top)
    for role in ("student", "instructor"):
        d = top / role
        (d / "labconfig").mkdir(parents=True, exist_ok=True)
        extra = SERVER_STUDENT if role == "student" else SERVER_INSTRUCTOR
        (d / "jupyter_server_config.py").write_text(SERVER_COMMON.format(role=role) + extra)
        (d / "labconfig" / "page_config.json").write_text(json.dumps(STUDENT_LAB if role == "student" else {}, indent=1) + "\n")
        _chmod_readable(d)
    return top


def check_options(port: int, book: Path | str | None, auth: str = "pam") -> Path:
    """Refuse a bad port, book or authenticator before anything is made (no book: the package's)."""
    from .book import BOOK

    book = Path(book or BOOK).resolve()
    if not any(book.glob("[0-9][0-9]-*.ipynb")):
        raise HubError(f"--book {book}: no chapter notebook there")
    if auth not in ("pam", "shared"):
        raise HubError(f"--auth {auth}: use pam or shared")
    if not 1 <= port <= 65533:
        raise HubError(f"--port {port}: not a usable port (the proxy API and the hub take the next two)")
    return book


def write_config(hub_dir: Path | str, students: list[str], instructor: str, *, env: Path | str = DEFAULT_ENV,
                 exchange: Path | str | None = None, ip: str = "127.0.0.1", port: int = 8000, auth: str = "pam",
                 book: Path | str | None = None, args: str = "", say=print) -> Path:
    """Write ``hub_dir/jupyterhub_config.py`` and everything beside it; returns the config's path."""
    from . import classroom
    from .book import BOOK

    hub_dir = Path(hub_dir).resolve()
    book = check_options(port=port, book=book or BOOK, auth=auth)
    exchange = Path(exchange).resolve() if exchange else hub_dir / "exchange"
    hub_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(hub_dir, 0o755)
    for where, what in ((hub_dir, "DIR"), (exchange, "--exchange")):
        blocked = _reachable_by_all(where)
        if blocked:
            raise HubError(f"{what} {where}: other users cannot enter {blocked}, so students could not reach the exchange")
    state = hub_dir / "state"
    state.mkdir(exist_ok=True)
    os.chmod(state, 0o700)
    if auth == "shared" and not (state / "shared-passwords").exists():
        with _private(state / "shared-passwords") as f:
            # the instructor's must be 32 characters or more (SharedPasswordAuthenticator)
            f.write(f"students {secrets.token_urlsafe(9)}\ninstructor {secrets.token_urlsafe(32)}\n")
        say(f"shared passwords in {state / 'shared-passwords'} (readable by root only)")

    blocked = _reachable_by_all(book)
    if blocked is None and os.stat(book).st_mode & stat.S_IROTH:
        say(f"warning: {book} (the instructor's book, with the solutions) is readable by every user: "
            f"keep it where students cannot read it (chmod o-rwx)")
    mine = hub_dir / "instructor-book"  # what make_course reads at the instructor's first login
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir(mode=0o700)
    os.chmod(mine, 0o700)
    for nb in sorted(book.glob("[0-9][0-9]-*.ipynb")):
        shutil.copy(nb, mine / nb.name)
        os.chmod(mine / nb.name, 0o600)
    if os.geteuid() == 0 and _user(instructor) is not None:
        _own_instructor_book(hub_dir, _user(instructor))
    copies = hub_dir / "student-book"
    fresh = hub_dir / "student-book.new"
    shutil.rmtree(fresh, ignore_errors=True)
    classroom.student_copies(fresh, book)
    shutil.rmtree(copies, ignore_errors=True)
    fresh.rename(copies)
    _chmod_readable(copies)

    write_role_configs(hub_dir / "jupyter")
    ensure_exchange(exchange, instructor)

    if ip not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: the hub will listen on {ip} over plain HTTP: passwords would cross the network in clear; "
            f"set c.JupyterHub.ssl_cert and ssl_key in the configuration (or put a TLS proxy in front)")
    config = hub_dir / "jupyterhub_config.py"
    config.write_text(CONFIG.format(
        hub_dir=str(hub_dir), env=str(Path(env).resolve()), students=list(students), instructor=instructor,
        exchange=str(exchange), ip=ip, port=port, api_port=port + 1, hub_port=port + 2,
        auth=AUTH_PAM if auth == "pam" else AUTH_SHARED, args=args))
    os.chmod(config, 0o644)
    return config


# What a user's own process does in their home at login: the hub (root) never writes there
# itself, so a symlink a student plants in their home cannot make root write anywhere else.
HOME_SETUP = r"""
import json, os, shutil, sys
from pathlib import Path
a = json.loads(sys.argv[1])
home = Path(os.environ["HOME"])
if a["role"] == "student":
    if not os.path.lexists(home / "lguest-book"):
        shutil.copytree(a["student_book"], home / "lguest-book")
else:
    course = home / "lguest-course"
    if not os.path.lexists(course):
        from lguest_book import classroom
        classroom.make_course(course, a["book"])
        os.chmod(course, 0o700)
(home / ".jupyter").mkdir(exist_ok=True)
(home / ".jupyter" / "nbgrader_config.py").write_text(a["nbgrader_config"])
"""


async def prepare_home(spawner, *, hub_dir, instructor: str, exchange: str) -> None:
    """The spawner's pre_spawn_hook: make the user's home ready (see the module's docstring).

    Runs in the hub, as root, for the checks and the modes of the hub's own folders; what
    goes into the home is written by a process running as the user."""
    import asyncio

    hub_dir = Path(hub_dir)
    name = spawner.user.name
    u = _user(name)
    if u is None:
        raise RuntimeError(f"no unix user {name!r}: create it (lguest-book classroom hub DIR --create-users)")
    home = Path(u.pw_dir)
    st = os.lstat(home) if home.exists() else None
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != u.pw_uid:
        raise RuntimeError(f"{name}'s home {home} is not a folder that {name} owns")
    os.chmod(home, 0o700)  # Debian's useradd makes homes 0755: everyone could read everyone's work
    role = "instructor" if name == instructor else "student"
    config = NBGRADER_USER.format(course=COURSE_ID, exchange=str(exchange))
    job = {"role": role, "student_book": str(hub_dir / "student-book")}
    if role == "instructor":
        course = home / "lguest-course"
        config += NBGRADER_INSTRUCTOR.format(root=str(course), course_config=str(course / "nbgrader_config.py"))
        job["book"] = str(_own_instructor_book(hub_dir, u))
        ensure_exchange(Path(exchange), instructor)
    job["nbgrader_config"] = config
    env = {"HOME": str(home), "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", HOME_SETUP, json.dumps(job), cwd=str(home), env=env,
        user=u.pw_uid, group=u.pw_gid, extra_groups=[],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"setting up {name}'s home failed: {out.decode(errors='replace')[-2000:]}")
    spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_PATH": str(hub_dir / "jupyter" / role)}


def _own_instructor_book(hub_dir: Path, u) -> Path:
    """``DIR/instructor-book`` (the chapters with their solutions), the instructor's alone (0700)."""
    book = hub_dir / "instructor-book"
    for p in [book, *book.rglob("*")]:
        st = os.lstat(p)
        if st.st_uid != u.pw_uid:
            os.lchown(p, u.pw_uid, u.pw_gid)
    return book


# --- running it -----------------------------------------------------------------------------
def check_ready(hub_dir: Path, env: Path, students: list[str], instructor: str) -> None:
    """Before --start: root, the users, the proxy."""
    _need_root("--start")
    missing = [n for n in [*students, instructor] if _user(n) is None]
    if missing:
        raise HubError(f"no unix user {', '.join(missing)}: add --create-users (or useradd them)")
    if not proxy_command(env).exists():
        raise HubError(f"{proxy_command(env)} missing: run lguest-book classroom hub again without --start")


def start(hub_dir: Path | str, env: Path | str) -> None:
    """Run the hub in the foreground (replaces this process)."""
    _need_root("--start")
    hub_dir, env = Path(hub_dir).resolve(), Path(env).resolve()
    os.chdir(hub_dir)
    cmd = [str(env / "bin" / "jupyterhub"), "-f", str(hub_dir / "jupyterhub_config.py")]
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
