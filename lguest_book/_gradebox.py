"""The grader's two halves share this file: what one run of an exercise *observes*, and the
sandbox that observes a student's answer in a process of its own.

:func:`observe` runs the cases and workloads of one exercise on a function, on one Guest per
workload, and records what a check compares (each case's return value, and the machine's
state after every operation) as plain JSON data.  The grader (:mod:`lguest_book.grading`)
observes the model's own function in its own process, once, and each answer in a sandbox;
it compares the two itself.  So nothing the answer's process says can do more than describe
what the answer did: its process holds no expected value and no verdict.

:func:`main` is the sandbox (``python -I -S -B``, started by the grader): it reads one job on
stdin, imports a copy of the package from which the function under exercise has been cut
out, shuts the doors (an audit hook that refuses, for the rest of the process's life, to
open files outside the standard library and that copy, to write any file, to start a
process, to load native code through ctypes or to open a socket), runs the answer's text and
the exercise on it, and writes the observations on the file descriptor it was given.
Only the standard library and this package are used here: the sandbox has no site-packages.
"""

from __future__ import annotations

import json
import os
import sys

# ---------------------------------------------------------------------------------------------
# Plain data both halves compare: exact built-in types only, so an answer cannot hand the
# grader an object that compares equal to everything.
# ---------------------------------------------------------------------------------------------
_SCALARS = (int, float, str, bool, type(None))


def canon(x, depth: int = 0):
    """``x`` as JSON data.  Tuples and lists become lists, dicts a list of pairs, an exception
    ``{"raised": type name, "message": ...}``, anything else ``{"object": type name}``."""
    if depth > 20:
        return {"object": "too deeply nested"}
    t = type(x)
    if t in _SCALARS:
        return x
    if t in (tuple, list):
        return {"seq": [canon(v, depth + 1) for v in x]}
    # fmt's ints and pointers (they print in hex): their value, read with the base type's own
    # C methods, so a subclass's overrides (an __eq__ that says yes to everything) play no part.
    if isinstance(x, int):
        return int.__add__(x, 0)
    if isinstance(x, tuple):
        return {"seq": [canon(v, depth + 1) for v in tuple.__iter__(x)]}
    if t is dict:
        return {"map": [[canon(k, depth + 1), canon(v, depth + 1)] for k, v in x.items()]}
    if isinstance(x, _Raised):
        return {"raised": type(x.err).__name__, "message": str(x.err)[:300]}
    return {"object": t.__name__}


def decode(x):
    """The Python value of :func:`canon`'s data (tuples for sequences, dicts for maps; an
    exception becomes ``("raised", type name)``, which is what a check compares of it)."""
    if type(x) in _SCALARS:
        return x
    if type(x) is dict:
        if "seq" in x and type(x["seq"]) is list:
            return tuple(decode(v) for v in x["seq"])
        if "map" in x and type(x["map"]) is list:
            out = {}
            for pair in x["map"]:
                if type(pair) is list and len(pair) == 2:
                    key = decode(pair[0])
                    try:
                        out[key] = decode(pair[1])
                    except TypeError:  # an unhashable key: not something the model returns
                        return ("object", "unhashable")
            return out
        if "raised" in x:
            return ("raised", str(x["raised"]))
        return ("object", str(x.get("object")))
    return ("object", "malformed")


def shown(x) -> str:
    """A decoded value as a check's message shows it."""
    if x == ("missing", ""):
        return "no result (your answer's process did not report one)"
    if isinstance(x, tuple) and len(x) == 2 and x[0] in ("raised", "object") and isinstance(x[1], str):
        return f"an exception ({x[1]})" if x[0] == "raised" else f"an object of type {x[1]}"
    if isinstance(x, bool) or x is None:
        return repr(x)
    if isinstance(x, int):
        return f"{x:#x}"
    if isinstance(x, tuple):
        return "(" + ", ".join(shown(v) for v in x) + ")"
    if isinstance(x, dict):  # a case's value and the machine's state (exercises.case_value)
        return "{" + "; ".join(f"{k}: {shown(v) if k == 'returns' else v}" for k, v in x.items()) + "}"
    return repr(x)


class _Raised:
    def __init__(self, err: BaseException):
        self.err = err


# ---------------------------------------------------------------------------------------------
# Observing one exercise on one function
# ---------------------------------------------------------------------------------------------
def observe(exercise_id: str, func, hidden: bool, time_limit_s: float) -> dict:
    """Run ``exercise_id``'s cases and workloads (the hidden ones if ``hidden``) on ``func``.

    Returns ``{"cases": [value...], "workloads": [[view after each operation...]...],
    "error": message or None}``; a workload whose operation raised ends with
    ``{"raised": ...}``."""
    from . import exercises as ex
    from .guest import Guest

    e = ex.EXERCISES[exercise_id]
    out: dict = {"cases": [], "workloads": [], "error": None}
    if not callable(func):
        out["error"] = f"expected a function, got {type(func).__name__}"
        return out
    ref = e.reference_impl or ex.reference(e.target)  # in the sandbox: the withheld stub, for its signature
    want, got = ex._arity(ref), ex._arity(func)
    if want is not None and got is not None and want != got:
        out["error"] = f"{e.target} takes {want} arguments; yours takes {got}"
        return out
    func = ex.guarded(func)
    try:
        with ex.time_limit(time_limit_s):
            # The answer stands in for the model's function from the start: the model's own
            # callers (a Guest booting, a case being built) reach it too.
            if not e.install:
                ex.swap(e.target, func)
            for case in e.cases(hidden):
                out["cases"].append(canon(ex.case_value(func, case, lambda f, args: _call(ex, f, args))))
            for w in e.workloads(hidden):
                steps: list = []
                out["workloads"].append(steps)
                swaps = e.install(func) if e.install else []
                for name, f in swaps:
                    ex.swap(name, f)
                try:
                    g = Guest(pae=w.get("pae", False), seed=w.get("seed", 1), **(w.get("guest_kwargs") or {}))
                    view = w.get("expect") or ex.snapshot
                    for _label, op in w["ops"]:
                        try:
                            op(g)
                        except ex.TimeLimit:
                            raise
                        except Exception as err:  # noqa: BLE001 - the answer crashed inside the model
                            steps.append(canon(_Raised(err)))
                            break
                        steps.append(canon(view(g)))
                finally:
                    for name, _ in swaps:
                        ex.restore(name)
    except ex.TimeLimit as err:
        out["error"] = str(err)
    except Exception as err:  # noqa: BLE001 - e.g. the answer broke a case's Guest as it booted
        out["error"] = f"your function raised {type(err).__name__}: {err}"[:500]
    finally:
        ex.restore_all()
    return out


def _call(ex, func, args):
    try:
        return func(*args)
    except ex.TimeLimit:
        raise
    except Exception as err:  # noqa: BLE001 - a crash is a result to compare
        return _Raised(err)


# ---------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------
_REFUSED_EVENTS = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
    "os.killpg", "subprocess.Popen", "pty.spawn", "os.remove", "os.rename", "os.rmdir", "os.mkdir",
    "os.link", "os.symlink", "os.truncate", "os.chmod", "os.chown", "os.chdir", "os.chroot",
    "os.utime", "shutil.", "socket.", "ctypes.", "resource.setrlimit", "resource.prlimit", "mmap.",
    "webbrowser.", "urllib.", "ftplib.", "http.", "smtplib.",
)
_REFUSED_MODULES = ("ctypes", "_ctypes", "_posixsubprocess", "cffi", "_socket", "socket", "mmap", "resource")


def _install_guard(readable: list[str], denied: list[str]) -> None:
    """From now on this process may only read files under ``readable`` (but none under
    ``denied``) and do none of the things of :data:`_REFUSED_EVENTS`.  An audit hook cannot
    be removed once added."""
    roots = tuple(os.path.realpath(r) + os.sep for r in readable)
    closed = tuple(os.path.realpath(r) + os.sep for r in denied)
    realpath = os.path.realpath
    O_ACCMODE, O_RDONLY = os.O_ACCMODE, os.O_RDONLY
    O_CREAT, O_TRUNC = getattr(os, "O_CREAT", 0), getattr(os, "O_TRUNC", 0)
    refused = _REFUSED_EVENTS
    refused_modules = frozenset(_REFUSED_MODULES)

    def hook(event, args):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if isinstance(path, int):
                return  # an already open descriptor (os.fdopen)
            if mode is not None and any(c in str(mode) for c in "wax+"):
                raise PermissionError("the grader's sandbox refuses to write files")
            if isinstance(flags, int) and (flags & O_ACCMODE != O_RDONLY or flags & (O_CREAT | O_TRUNC)):
                raise PermissionError("the grader's sandbox refuses to write files")
            try:
                where = realpath(os.fsdecode(path))
            except Exception:  # noqa: BLE001
                raise PermissionError("the grader's sandbox refuses this path") from None
            if (where + os.sep).startswith(closed) or not (where + os.sep).startswith(roots):
                raise PermissionError(f"the grader's sandbox refuses to open {where}")
            return
        if event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and name.split(".")[0] in refused_modules:
                raise ImportError(f"the grader's sandbox refuses to import {name}")
            return
        if event.startswith(refused):
            raise PermissionError(f"the grader's sandbox refuses {event}")

    sys.addaudithook(hook)


def main() -> None:  # pragma: no cover - runs in the sandbox process (tested through the grader)
    """One job: ``{"exercise", "name", "source", "hidden": [bool...], "time_limit",
    "readable": [dir...], "denied": [dir...], "result_fd"}`` on stdin; observations on ``result_fd``."""
    job = json.loads(sys.stdin.read())
    stdlib = [p for p in sys.path if p and p not in job["readable"]]
    result = os.fdopen(job["result_fd"], "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the answer's prints go nowhere
        os.dup2(devnull, fd)
    # Import everything the answers and the exercises use before the doors shut.
    from . import exercises, fmt, guest, host, hypercalls, inspect, lab, lguest, mmu, page_tables, trace, x86  # noqa: F401
    import collections, dataclasses, functools, itertools, math, random, re, struct, typing  # noqa: F401,E401
    _install_guard(job["readable"] + stdlib, job["denied"])
    report: dict = {"source_error": None, "runs": []}
    namespace: dict = {"__name__": "__main__"}
    try:
        with exercises.time_limit(job["time_limit"]):
            exec(compile(job["source"], "<your answer cell>", "exec"), namespace)
    except BaseException as err:  # noqa: BLE001 - anything the answer cell itself raised
        report["source_error"] = f"{type(err).__name__}: {err}"[:500]
    if report["source_error"] is None:
        func = namespace.get(job["name"])
        if func is None:
            report["source_error"] = f"your answer cell does not define {job['name']}"
        elif job["exercise"].startswith("lab:"):  # an attack: report the steps it took, nothing else
            report.update(steps=[], error=None)
            try:
                c = lab.CHALLENGES[job["exercise"][4:]]
                attacker = lab.Attacker(pae=c.pae, check=False, **lab._host(c))
                with exercises.time_limit(job["time_limit"]):
                    try:
                        func(attacker)
                    finally:
                        report["steps"] = [[st.name, list(st.args)] for st in attacker.steps]
            except BaseException as err:  # noqa: BLE001 - the attack's own bug: the steps so far count
                report["error"] = f"{type(err).__name__}: {err}"[:500]
        else:
            for hidden in job["hidden"]:
                try:
                    report["runs"].append(observe(job["exercise"], func, hidden, job["time_limit"]))
                except BaseException as err:  # noqa: BLE001
                    report["runs"].append({"cases": [], "workloads": [], "error": f"{type(err).__name__}: {err}"[:500]})
    result.write(json.dumps(report))
    result.flush()
    os._exit(0)
