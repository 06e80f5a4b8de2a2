"""Grading that a student's code cannot reach: the verdict of every graded cell is decided in
the grader's own process, never in the student's kernel.

How a submission is graded (:class:`SecureGrade`, which a course made by
``lguest-book classroom course`` registers in ``nbgrader_config.py`` in place of nbgrader's
``Execute``):

1. nbgrader sanitizes the submission as usual (outputs cleared, locked cells restored from
   the gradebook; :class:`RestoreCells` also restores the grade/solution flags and points of
   every known cell, and re-adds a deleted grade cell).
2. For each grade cell, the checks to run are read from the cell's *restored* source (the
   instructor's text: ``exercises.check("ch3-page-writable", page_writable)``, hidden ones
   included); the student's answer is the *text* of the solution cells above it.
3. The answer runs in a fresh ``python -I -S -B`` process (:mod:`lguest_book._gradebox`) with
   a time limit and resource limits, against a copy of the package from which the function
   under exercise has been cut out (its body is replaced by an error), behind an audit hook that
   refuses to open files outside the standard library and that copy, to write files, to start
   processes, to use ctypes or sockets.  That process only *observes*: what the answer
   returns on each case and the machine's whole state after every operation of each workload.
4. The grader compares those observations with the model's own (observed once, here, with
   the pristine package) and writes the verdict as the grade cell's output: a report, or an
   error (which is what makes nbgrader's ``SaveAutoGrades`` give the cell 0 points).

Nothing the student's process does can raise its score above what its observations earn, and
it holds nothing to copy: no expected value, no verdict, no reference function.  An answer
whose syntax tree is the model's own function after renaming is *flagged* (not zeroed): in
the autograded notebook's metadata, in the log, and by ``lguest-book classroom report``.
"""

from __future__ import annotations

import ast
import concurrent.futures
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import _gradebox
from . import fmt

PACKAGE_DIR = Path(__file__).resolve().parent
# What the sandbox's copy of the package leaves out: the instructor's tools and anything that
# needs site-packages (the sandbox has none).
_NOT_COPIED = {"cli.py", "classroom.py", "grading.py", "bench.py", "_e2e.py", "book.py", "plots.py",
               "widgets.py", "__main__.py"}
DEFAULT_TIME_LIMIT = 10.0  # seconds for each run of the checks, inside the sandbox
DEFAULT_TIMEOUT = 60.0  # wall-clock seconds for one sandbox process, whatever it does
MEMORY_LIMIT = 1 << 30

log = logging.getLogger("lguest_book.grading")

# Answers are graded on several threads at once (SecureGrade's prefetch).  CPython 3.11 keeps
# the AST converter's recursion counter in state that all threads share, so two threads in
# ast.parse at once (a garbage collection running a finaliser is enough to switch threads in the
# middle) fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905).
# Every parse here goes through this one lock.
_AST_LOCK = threading.Lock()


def _parse(source: str) -> ast.Module:
    """``ast.parse(source)``, one thread at a time (see _AST_LOCK)."""
    with _AST_LOCK:
        return ast.parse(source)


# =============================================================================================
# The function under exercise, and a copy of the package without it
# =============================================================================================
def _exercises():
    from . import exercises
    return exercises


LAB = "lab:"  # a grade cell's exercise id for a lab challenge: "lab:" + the challenge's id


def withheld(exercise_id: str) -> tuple[Path, str | None]:
    """(source file, function name) of the model's own answer to ``exercise_id`` (for a lab
    challenge, the lab's known attack on it, if it has one)."""
    import inspect

    if exercise_id.startswith(LAB):
        from . import lab

        attack = lab.KNOWN_ATTACKS.get(exercise_id[len(LAB):])
        return Path(lab.__file__).resolve(), attack.__name__ if attack else None
    ex = _exercises()
    e = ex.EXERCISES[exercise_id]
    ref = inspect.unwrap(e.reference_impl or ex.reference(e.target))  # the twin, not its checked view
    return Path(inspect.getsourcefile(ref)).resolve(), ref.__name__


def cut_out(source: str, name: str) -> str:
    """``source`` with the body of top-level function ``name`` replaced by an error (the
    signature stays, so a wrong number of arguments is still reported as such)."""
    tree = _parse(source)
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            stub = ast.FunctionDef(
                name=node.name, args=node.args, decorator_list=node.decorator_list, returns=None,
                type_comment=None, type_params=[],
                body=[_parse(f"raise NotImplementedError({_WITHHELD.format(name=name)!r})").body[0]])
            text = ast.unparse(ast.fix_missing_locations(stub)) + "\n"
            span = node.end_lineno - first + 1
            text += "\n" * max(0, span - text.count("\n"))  # keep the lines below where they were
            return "".join(lines[:first - 1]) + text + "".join(lines[node.end_lineno:])
    raise ValueError(f"no top-level function {name!r} to withhold")


_WITHHELD = "the model's own {name} is withheld while grading: an answer must be its own code"


def make_copy(exercise_id: str, dest: Path) -> Path:
    """A copy of the package under ``dest/lguest_book`` without the exercise's own answer."""
    source_file, name = withheld(exercise_id)
    pkg = dest / "lguest_book"
    pkg.mkdir(parents=True)
    for f in sorted(PACKAGE_DIR.glob("*.py")):
        if f.name in _NOT_COPIED:
            continue
        text = f.read_text()
        if f.resolve() == source_file and name is not None:
            text = cut_out(text, name)
        (pkg / f.name).write_text(text)
    import compileall

    compileall.compile_dir(str(pkg), quiet=1, force=True)
    return dest


# =============================================================================================
# Running an answer in the sandbox
# =============================================================================================
@dataclass
class Check:
    exercise: str
    name: str  # the function the answer must define
    hidden: bool = False


@dataclass
class Verdict:
    ok: bool
    lines: list[str]  # what the student's feedback says
    flags: list[str] = field(default_factory=list)  # for the instructor only

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _limits_code(cpu_seconds: int) -> str:
    """Python that sets the sandbox's resource limits (run first thing in the sandbox, before
    any answer; the sandbox's audit hook then refuses to change them): CPU time, memory, no
    file may be written, no core dump, few descriptors."""
    return (
        "import resource\n"
        f"for what, value in ((resource.RLIMIT_CPU, {int(cpu_seconds)}), (resource.RLIMIT_AS, {MEMORY_LIMIT}),\n"
        "                    (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 64)):\n"
        "    try:\n"
        "        resource.setrlimit(what, (value, value))\n"
        "    except (ValueError, OSError):\n"
        "        pass\n")


class Grader:
    """Grades answers to the book's exercises.  One per grading run: it keeps the model's
    own observations and one withheld copy of the package per exercise."""

    def __init__(self, time_limit: float = DEFAULT_TIME_LIMIT, timeout: float = DEFAULT_TIMEOUT,
                 python: str | None = None):
        self.time_limit = time_limit
        self.timeout = timeout
        self.python = python or sys.executable
        self._tmp = Path(tempfile.mkdtemp(prefix="lguest-grading-"))
        self._copies: dict[str, Path] = {}
        self._expected: dict[tuple[str, bool], dict] = {}
        self._cache: dict[str, Verdict] = {}
        self._lock = threading.Lock()
        import atexit

        atexit.register(self.close)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- the model's own observations ------------------------------------------------------
    def expected(self, exercise_id: str, hidden: bool) -> dict:
        with self._lock:
            key = (exercise_id, hidden)
            if key not in self._expected:
                ex = _exercises()
                e = ex.EXERCISES[exercise_id]
                ref = e.reference_impl or ex.reference(e.target)
                self._expected[key] = _gradebox.observe(exercise_id, ref, hidden, 60.0)
            return self._expected[key]

    def _copy(self, exercise_id: str) -> Path:
        with self._lock:
            if exercise_id not in self._copies:
                self._copies[exercise_id] = make_copy(exercise_id, self._tmp / exercise_id.replace("/", "_"))
            return self._copies[exercise_id]

    # -- one answer -------------------------------------------------------------------------
    def grade(self, source: str, checks: list[Check]) -> Verdict:
        """The verdict on answer text ``source`` for ``checks`` (all of one exercise and
        function name, e.g. the visible and the hidden check of one grade cell)."""
        if not checks:
            return Verdict(False, ["✗ this grade cell calls no lguest_book exercises.check: lguest-book's grader cannot grade it"])
        exercise_id, name = checks[0].exercise, checks[0].name
        ex = _exercises()
        if exercise_id.startswith(LAB):
            from . import lab

            if exercise_id[len(LAB):] not in lab.CHALLENGES:
                return Verdict(False, [f"✗ unknown lab challenge {exercise_id[len(LAB):]!r}"])
        elif exercise_id not in ex.EXERCISES:
            return Verdict(False, [f"✗ unknown exercise {exercise_id!r}"])
        hiddens = sorted({c.hidden for c in checks})
        key = hashlib.sha256(json.dumps([source, exercise_id, name, hiddens]).encode()).hexdigest()
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        verdict = self._grade(source, exercise_id, name, hiddens)
        with self._lock:
            self._cache[key] = verdict
        return verdict

    def grade_attack(self, challenge: str, source: str, function: str = "attack",
                     source_name: str | None = None) -> Verdict:
        """The verdict on the lab attack ``function`` defined by ``source``, for ``challenge``:
        what chapter 11's graded cell gets under nbgrader (``lguest-book lab grade``).
        ``source_name`` says where the source came from (a file's name, for the CLI), so the
        feedback names it instead of "your answer cell"."""
        verdict = self.grade(source, [Check(LAB + challenge, function)])
        if source_name is None:
            return verdict
        missing = f"running your answer cell failed: your answer cell does not define {function}"
        lines = [line.replace(missing, f"{source_name} does not define {function}(a)")
                 .replace("running your answer cell failed", f"running {source_name} failed")
                 .replace("<your answer cell>", source_name) for line in verdict.lines]
        return Verdict(verdict.ok, lines, list(verdict.flags))

    def _grade(self, source: str, exercise_id: str, name: str, hiddens: list[bool]) -> Verdict:
        if exercise_id.startswith(LAB):
            return self._grade_attack(source, exercise_id, name)
        report, trouble = self._run(source, exercise_id, name, hiddens)
        notes = delegation_notes(source, exercise_id)
        flags = copy_flags(source, exercise_id, name)
        if trouble:
            return Verdict(False, [f"✗ {exercise_id}: {trouble}"] + notes, flags)
        if report.get("source_error"):
            return Verdict(False, [f"✗ {exercise_id}: running your answer cell failed: {report['source_error']}"] + notes, flags)
        runs = report.get("runs")
        if not isinstance(runs, list) or len(runs) != len(hiddens):
            return Verdict(False, [f"✗ {exercise_id}: the grader could not read what your answer did"] + notes, flags)
        lines, ok = [], True
        for hidden, run in zip(hiddens, runs):
            try:
                passed, total, failures = self.compare(exercise_id, hidden, run)
            except (RecursionError, TypeError, ValueError, KeyError, AttributeError):  # malformed observations
                passed, total, failures = 0, 1, ["the grader could not read what your answer did"]
            good = not failures and passed == total
            ok &= good
            head = ("hidden checks " if hidden else "") + ("✓ " if good else "✗ ") + f"{exercise_id}: {passed}/{total} checks passed"
            lines.append(head)
            lines.extend(f"  {f}" for f in failures)
        if not ok:
            lines.extend(notes)
        return Verdict(ok, lines, flags)

    def _grade_attack(self, source: str, exercise_id: str, name: str) -> Verdict:
        """A lab challenge: the attack runs in the sandbox, which reports only the steps its
        Attacker took (Guest actions, plain data); they are replayed here, on a pristine
        model, and the challenge's checker decides."""
        from . import lab

        challenge = exercise_id[len(LAB):]
        report, trouble = self._run(source, exercise_id, name, [False])
        if trouble:
            return Verdict(False, [f"✗ {challenge}: {trouble}"])
        if report.get("source_error"):
            return Verdict(False, [f"✗ {challenge}: running your answer cell failed: {report['source_error']}"])
        steps = report.get("steps")
        if not isinstance(steps, list) or len(steps) > lab.MAX_STEPS or not all(
                type(st) is list and len(st) == 2 and type(st[0]) is str and type(st[1]) is list
                and all(type(a) in (int, bool) for a in st[1]) for st in steps):
            return Verdict(False, [f"✗ {challenge}: the grader could not read the steps your attack took"])
        try:
            result = lab.attempt(challenge, [(n, tuple(args)) for n, args in steps])
        except (ValueError, RuntimeError) as err:  # a step no Guest can take
            return Verdict(False, [f"✗ {challenge}: {err}"])
        lines = [("✓ " if result.succeeded else "✗ ") + f"{challenge}: {fmt.count(len(steps), 'step')} replayed on a pristine Host; "
                 + result.why.splitlines()[0]]
        if report.get("error"):
            lines.append(f"  your attack stopped with {report['error']}")
        return Verdict(result.succeeded, lines)

    def _run(self, source: str, exercise_id: str, name: str, hiddens: list[bool]) -> tuple[dict, str | None]:
        copy = self._copy(exercise_id)
        read_end, write_end = os.pipe()
        job = {"exercise": exercise_id, "name": name, "source": source, "hidden": hiddens,
               "time_limit": self.time_limit, "readable": [str(copy)], "result_fd": write_end,
               "denied": _denied()}
        boot = (_limits_code(int(self.timeout) + 1)
                + f"import sys\nsys.path.insert(0, {str(copy)!r})\nfrom lguest_book._gradebox import main\nmain()\n")
        workdir = tempfile.mkdtemp(dir=self._tmp, prefix="run-")
        try:
            proc = subprocess.Popen(
                [self.python, "-I", "-S", "-B", "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=workdir, pass_fds=(write_end,), close_fds=True,
                start_new_session=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
        finally:
            os.close(write_end)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(_read_all(read_end, 32 << 20)), daemon=True)
        reader.start()
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            reader.join(5)
            return {}, f"your answer did not finish within {self.timeout:g} s (it was stopped): does it loop forever?"
        finally:
            _kill(proc)
            shutil.rmtree(workdir, ignore_errors=True)
        reader.join(10)
        data = chunks[0] if chunks else b""
        if proc.returncode != 0:
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            return {}, f"your answer stopped the grader's process ({how}) before the checks finished"
        try:
            report = json.loads(data.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return {}, "the grader could not read what your answer did (did it write to the grader's channel or exit early?)"
        if not isinstance(report, dict):
            return {}, "the grader could not read what your answer did"
        return report, None

    # -- comparing --------------------------------------------------------------------------
    def compare(self, exercise_id: str, hidden: bool, run: dict) -> tuple[int, int, list[str]]:
        """(checks passed, checks, failures) of observations ``run`` against the model's."""
        ex = _exercises()
        e = ex.EXERCISES[exercise_id]
        want = self.expected(exercise_id, hidden)
        cases, workloads = e.cases(hidden), e.workloads(hidden)
        total = max(len(cases) + len(workloads), 1)
        if not isinstance(run, dict):
            return 0, total, ["the grader could not read what your answer did"]
        if run.get("error"):
            return 0, total, [str(run["error"])[:500]]
        got_cases = run.get("cases") if isinstance(run.get("cases"), list) else []
        got_loads = run.get("workloads") if isinstance(run.get("workloads"), list) else []
        passed, failures = 0, []
        for i, case in enumerate(cases):
            a = _gradebox.decode(want["cases"][i])
            b = _gradebox.decode(got_cases[i]) if i < len(got_cases) else ("missing", "")
            if a == b:
                passed += 1
            else:
                failures.append(f"{case.label}: expected {_gradebox.shown(a)}, got {_gradebox.shown(b)}")
        for i, w in enumerate(workloads):
            mine = got_loads[i] if i < len(got_loads) and isinstance(got_loads[i], list) else []
            diff = self._workload_difference(w, want["workloads"][i], mine)
            if diff is None:
                passed += 1
            else:
                failures.append(f"workload '{w['label']}' ({len(w['ops'])} operations): {diff}")
        return passed, total, failures

    @staticmethod
    def _workload_difference(w: dict, want: list, got: list) -> str | None:
        ex = _exercises()
        for n, (label, _op) in enumerate(w["ops"], start=1):
            if n > len(got):
                return f"after step {n} ({label}): your function stopped the run early"
            a, b = _gradebox.decode(want[n - 1]), _gradebox.decode(got[n - 1])
            if isinstance(b, tuple) and len(b) == 2 and b[0] == "raised":
                msg = got[n - 1].get("message", "") if isinstance(got[n - 1], dict) else ""
                return f"your function raised {b[1]}: {msg}"
            if a != b:
                if w.get("expect") is None and isinstance(a, dict) and isinstance(b, dict):
                    try:
                        detail = ex._describe_difference(_as_snapshot(a), _as_snapshot(b))
                    except Exception:  # noqa: BLE001 - a malformed view from the answer's process
                        detail = "the machines differ"
                else:
                    detail = f"expected {a}, got {b}"
                return f"after step {n} ({label}): {detail}"
        if len(got) > len(w["ops"]):
            return "the grader could not read what your answer did"
        return None


def _as_snapshot(view: dict) -> dict:
    out = dict(view)
    for key in ("cache", "shadow", "guest"):
        if isinstance(out.get(key), tuple):
            out[key] = list(out[key])
    return out


def _read_all(fd: int, limit: int) -> bytes:
    out = bytearray()
    with os.fdopen(fd, "rb") as f:
        while len(out) <= limit:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            out += chunk
    return bytes(out)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()


def _denied() -> list[str]:
    """What the sandbox must never read, even where the standard library lives: the real
    package and every site-packages."""
    import site
    import sysconfig

    out = [str(PACKAGE_DIR)]
    try:
        out += site.getsitepackages()
    except AttributeError:  # pragma: no cover
        pass
    out += [sysconfig.get_paths().get("purelib", ""), sysconfig.get_paths().get("platlib", "")]
    return sorted({p for p in out if p})


# =============================================================================================
# What the grader can tell the student and the instructor about an answer's text
# =============================================================================================
def delegation_notes(source: str, exercise_id: str) -> list[str]:
    """Feedback lines for an answer whose text reaches for the model's own function."""
    ex = _exercises()
    e = ex.EXERCISES[exercise_id]
    _file, own = withheld(exercise_id)
    try:
        tree = _parse(source)
    except SyntaxError:
        return []
    names = {own, e.target}
    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lguest_book"):
            seen.update(a.name for a in node.names if a.name in names)
        elif isinstance(node, ast.Attribute) and node.attr in names | {"reference", "_ORIGINALS", "__code__"}:
            seen.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in {"reference", "sys", "__import__", "importlib"}:
            seen.add(node.id)
    if not seen:
        return []
    return [f"note: your answer refers to {', '.join(sorted(seen))}; the model's own {own} is withheld "
            "while grading, so an answer must compute the result with its own code"]


class _Normalise(ast.NodeTransformer):
    """Names renamed in order of appearance; docstrings, annotations and argument checks of the
    model (``_need_...(...)``) dropped; ``module.name`` of a package module read as ``name``."""

    def __init__(self, modules: set[str]):
        self.names: dict[str, str] = {}
        self.modules = modules

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"n{len(self.names)}")

    def visit_FunctionDef(self, node):
        body = list(node.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        body = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                                        and isinstance(s.value.func, ast.Name) and s.value.func.id.startswith("_need"))]
        node.body = body or [ast.Pass()]
        node.returns = None
        node.decorator_list = []
        node.name = "f"
        self.generic_visit(node)
        return node

    def visit_arg(self, node):
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.modules:
            return ast.copy_location(ast.Name(id=self._name(node.attr), ctx=node.ctx), node)
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node


def _normal_form(func: ast.FunctionDef, modules: set[str]) -> str:
    import copy

    return ast.dump(_Normalise(modules).visit(copy.deepcopy(func)), annotate_fields=False, include_attributes=False)


def copy_flags(source: str, exercise_id: str, name: str) -> list[str]:
    """``["copy: ..."]`` when the answer's function is the model's own after renaming."""
    path, own = withheld(exercise_id)
    try:
        tree = _parse(source)
        model = _parse(path.read_text())
    except (SyntaxError, OSError):
        return []
    theirs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    ours = [n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == own]
    if not theirs or not ours:
        return []
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("lguest_book"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lguest_book"):
            modules.update(a.asname or a.name for a in node.names)
    if _normal_form(theirs[-1], modules) == _normal_form(ours[0], set()):
        return [f"copy: {name} has the same syntax tree as the model's own {own} "
                f"({path.name}) after renaming"]
    return []


# =============================================================================================
# Reading a notebook: which checks a grade cell runs, and the answer above it
# =============================================================================================
def checks_in(source: str) -> list[Check]:
    """The ``exercises.check(ID, NAME[, hidden=True])`` calls of a grade cell's source (and
    ``lab.check_attack(ID, NAME)``, a lab challenge)."""
    try:
        tree = _parse(source)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if called not in ("check", "check_attack") or len(node.args) < 2:
            continue
        eid, func = node.args[0], node.args[1]
        if not (isinstance(eid, ast.Constant) and isinstance(eid.value, str) and isinstance(func, ast.Name)):
            continue
        if called == "check_attack":  # lab.check_attack("amplify", attack): a lab challenge
            out.append(Check(LAB + eid.value, func.id))
            continue
        hidden = any(k.arg == "hidden" and isinstance(k.value, ast.Constant) and bool(k.value.value) for k in node.keywords)
        out.append(Check(eid.value, func.id, hidden))
    return out


def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def gradable(nb) -> list[tuple[int, str, list[Check]]]:
    """(index of each code grade cell, the answer text above it, its checks)."""
    out, answer = [], []
    for i, cell in enumerate(nb.cells):
        meta = _nbgrader_meta(cell)
        if cell.get("cell_type") != "code":
            continue
        if meta.get("grade"):
            out.append((i, "\n\n".join(answer), checks_in(cell.source)))
            answer = []
        elif meta.get("solution"):
            answer.append(cell.source)
    return out


def grade_notebook(nb, grader: Grader, student: str = "?", logger: logging.Logger | None = None) -> dict:
    """Write the verdict of every grade cell of ``nb`` into its outputs; returns
    {grade_id: {"ok", "text", "flags"}} (also kept in the notebook's metadata)."""
    import nbformat

    results = {}
    for index, answer, checks in gradable(nb):
        cell = nb.cells[index]
        grade_id = _nbgrader_meta(cell).get("grade_id", f"cell-{index}")
        groups: dict[tuple[str, str], list[Check]] = {}
        for c in checks:
            groups.setdefault((c.exercise, c.name), []).append(c)
        try:
            verdicts = [grader.grade(answer, group) for group in groups.values()] or [grader.grade(answer, [])]
        except Exception as err:  # noqa: BLE001 - a fault of the grader: 0, said plainly, never more
            (logger or log).error("grading %s of student %s failed: %s", grade_id, student, err)
            verdicts = [Verdict(False, [f"✗ the grader itself failed on this cell ({type(err).__name__}: {err}); "
                                        "ask your instructor to grade it by hand"])]
        ok = all(v.ok for v in verdicts)
        text = "\n".join(v.text for v in verdicts)
        flags = [f for v in verdicts for f in v.flags]
        if ok:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        else:
            cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue=text,
                                                   traceback=["AssertionError: " + text])]
        cell.execution_count = 1
        results[grade_id] = {"ok": ok, "text": text, "flags": flags}
        for flag in flags:
            (logger or log).warning("flagged for the instructor: student %s, %s: %s", student, grade_id, flag)
    nb.metadata["lguest_book_grading"] = results
    return results


# =============================================================================================
# nbgrader
# =============================================================================================
try:
    from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
    from traitlets import Float, Int
except ImportError:  # pragma: no cover - nbgrader is the classroom extra
    NbGraderPreprocessor = OverwriteCells = None

if NbGraderPreprocessor is not None:
    _GRADERS: dict[tuple, Grader] = {}

    class SecureGrade(NbGraderPreprocessor):
        """nbgrader's autograde step for the book: grades every graded cell in the sandbox
        (module docstring) instead of executing the student's notebook."""

        time_limit = Float(DEFAULT_TIME_LIMIT, help="seconds for each run of an exercise's checks").tag(config=True)
        timeout = Float(DEFAULT_TIMEOUT, help="wall-clock seconds for one answer's sandbox process").tag(config=True)
        jobs = Int(0, help="answers graded at once (0: one per CPU)").tag(config=True)

        def _grader(self) -> Grader:
            key = (self.time_limit, self.timeout)
            if key not in _GRADERS:
                _GRADERS[key] = Grader(self.time_limit, self.timeout)
            return _GRADERS[key]

        def preprocess(self, nb, resources):
            grader = self._grader()
            info = resources.get("nbgrader", {})
            self._prefetch(grader, nb, info.get("assignment"), info.get("notebook"))
            grade_notebook(nb, grader, student=str(info.get("student", "?")), logger=self.log)
            return nb, resources

        def _prefetch(self, grader: Grader, nb, assignment: str | None, notebook: str | None) -> None:
            """Grade every submission of this notebook at once, in parallel, the first time
            one of them is graded (the verdicts wait in the grader's memory, keyed by the
            answer's text).  The checks come from this sanitized notebook: its grade cells
            hold the instructor's text."""
            import glob

            import nbformat

            key = (assignment, notebook)
            done = getattr(grader, "_prefetched", set())
            grader._prefetched = done
            if key in done or not assignment or not notebook:
                return
            done.add(key)
            coursedir = getattr(getattr(self.parent, "parent", None), "coursedir", None)
            if coursedir is None:
                return
            trusted = {_nbgrader_meta(nb.cells[i]).get("grade_id"): checks for i, _a, checks in gradable(nb)}
            pattern = os.path.join(coursedir.format_path(coursedir.submitted_directory, coursedir.student_id,
                                                         assignment), f"{notebook}.ipynb")
            work = []
            for path in sorted(glob.glob(pattern)):
                try:
                    other = nbformat.read(path, 4)
                except Exception:  # noqa: BLE001 - nbgrader reports unreadable notebooks itself
                    continue
                for index, answer, _checks in gradable(other):
                    checks = trusted.get(_nbgrader_meta(other.cells[index]).get("grade_id"), [])
                    groups: dict[tuple[str, str], list[Check]] = {}
                    for c in checks:
                        groups.setdefault((c.exercise, c.name), []).append(c)
                    work.extend((answer, g) for g in groups.values())
            if len(work) < 2:
                return
            import time

            jobs = self.jobs or os.cpu_count() or 1
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(lambda w: grader.grade(*w), work))
            self.log.info("SecureGrade: graded %d answers of %s in %.1f s, %d at once", len(work), notebook,
                          time.perf_counter() - start, jobs)

    class RestoreCells(OverwriteCells):
        """nbgrader's ``OverwriteCells``, without its false alarm and with two more repairs.

        nbgrader stores a locked cell's checksum *before* removing its hidden tests, so every
        released grade cell with hidden tests is reported "changed" at autograde
        (jupyter/nbgrader#1961).  Here a locked cell whose text is exactly the released one
        (the source minus its hidden tests) is restored silently; any other change is still
        reported.  The grade/solution flags and points of every known cell are restored too,
        so a submission cannot turn its answer cell into a grade cell."""

        def preprocess_cell(self, cell, resources, cell_index):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is not None:
                try:
                    source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
                except Exception:  # noqa: BLE001 - MissingEntry: the base class reports it
                    source_cell = None
                if source_cell is not None:
                    self._restore_flags(cell, grade_id)
                    if source_cell.locked and cell.source == _released(source_cell.source):
                        cell.source = source_cell.source
            return super().preprocess_cell(cell, resources, cell_index)

        def _restore_flags(self, cell, grade_id):
            meta = cell.metadata.nbgrader
            try:
                graded = self.gradebook.find_graded_cell(grade_id, self.notebook_id, self.assignment_id)
            except Exception:  # noqa: BLE001
                graded = None
            try:
                self.gradebook.find_solution_cell(grade_id, self.notebook_id, self.assignment_id)
                solution = True
            except Exception:  # noqa: BLE001
                solution = False
            meta["grade"] = graded is not None
            meta["solution"] = solution
            if graded is not None:
                meta["points"] = float(graded.max_score)
            else:
                meta.pop("points", None)

    def _released(source: str) -> str:
        from nbgrader.preprocessors import ClearHiddenTests

        from nbformat.v4 import new_code_cell

        cell = new_code_cell(source)
        ClearHiddenTests()._remove_hidden_test_region(cell)
        return cell.source

    from nbgrader.preprocessors import ClearHiddenTests as _ClearHiddenTests
    from traitlets import List

    class FeedbackHiddenTests(_ClearHiddenTests):
        """nbgrader's ``ClearHiddenTests``, in the feedback step (the pages show verdicts, not the
        hidden tests' text), without the warning it draws there.  generate_feedback's HTML
        exporter sets ``display_data_priority`` for every nbconvert class; nbgrader's
        preprocessors declare that trait again but not as configurable, so traitlets said, on every
        run, that ``ClearHiddenTests`` did not recognise the option.  Here it is configurable (and,
        as in nbgrader's, unused)."""

        display_data_priority = List(["text/html", "application/pdf", "text/latex", "image/svg+xml", "image/png",
                                      "image/jpeg", "text/plain"]).tag(config=True)


# =============================================================================================
# How fast a class is graded
# =============================================================================================
def bench(students: int = 60, assignment: str = "ch03", jobs: int = 0, keep: str | None = None) -> dict:
    """Autograde ``students`` submissions of one chapter with real nbgrader, timed.

    The class: three in five answer with the instructor's solution, one in five hands in the
    untouched student version, one in five imports the model's own function.  Every answer's
    text differs (a comment with the student's number), so each one really runs in the
    sandbox.  Returns the timings and whether every score came out as expected."""
    import time

    import nbformat

    from . import classroom

    if students < 1:
        raise ValueError(f"students={students}: grade at least one")
    chapter = [p for p in classroom.graded_chapters() if classroom.assignment_id(p) == assignment]
    if not chapter:
        raise ValueError(f"assignment={assignment!r}: the graded chapters are "
                         f"{', '.join(classroom.assignment_id(p) for p in classroom.graded_chapters())}")
    nb_path = chapter[0]
    root = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="lguest-bench-grading-"))
    try:
        start = time.perf_counter()
        classroom.make_course(root, notebooks=[nb_path], force=bool(keep))
        if jobs:
            with (root / "nbgrader_config.py").open("a") as f:
                f.write(f"c.SecureGrade.jobs = {int(jobs)}\n")
        released = classroom.generate(root, assignment) / nb_path.name
        setup = time.perf_counter() - start
        release_nb = nbformat.read(released, 4)
        solution = next(c.source for c in nbformat.read(root / "source" / assignment / nb_path.name, 4).cells
                        if c.metadata.get("nbgrader", {}).get("solution"))
        grade_id = next(c.metadata["nbgrader"]["grade_id"] for c in release_nb.cells
                        if c.metadata.get("nbgrader", {}).get("grade"))
        eid = checks_in(next(c.source for c in release_nb.cells if c.metadata.get("nbgrader", {}).get("grade")))[0].exercise
        source_file, own = withheld(eid)
        module = "lguest_book." + source_file.stem
        target = _exercises().EXERCISES[eid].target
        expected = {}
        for n in range(students):
            student = f"student{n:03d}"
            nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
            cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
            kind = ("honest", "honest", "honest", "blank", "cheat")[n % 5]
            if kind == "honest":
                cell.source = f"# {student}\n" + re.sub(r"[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", "", solution)
            elif kind == "blank":
                cell.source = f"# {student}\n" + cell.source
            else:
                cell.source = f"# {student}\nfrom {module} import {own} as {target}\n"
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / nb_path.name)
            expected[student] = kind == "honest"
        start = time.perf_counter()
        done = classroom.autograde(root, assignment)
        seconds = time.perf_counter() - start
        wrong = []
        for student, full in expected.items():
            got = classroom.scores(root, assignment, student)[grade_id]
            if (got[0] == got[1]) != full:
                wrong.append(f"{student}: {got[0]:g}/{got[1]:g}")
        return {"assignment": assignment, "students": students, "seconds": seconds, "setup_seconds": setup,
                "per_student": seconds / students, "cpus": os.cpu_count(), "jobs": jobs or os.cpu_count(),
                "correct": not wrong, "wrong": wrong, "warnings": classroom.warnings_of(done),
                "course": str(root) if keep else None}
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def format_bench(r: dict) -> str:
    lines = [f"autograded {r['students']} submissions of {r['assignment']} in {r['seconds']:.1f} s "
             f"({r['per_student']:.2f} s each; {r['jobs']} at once on {r['cpus']} CPU(s); "
             f"course and release took {r['setup_seconds']:.1f} s more)",
             "scores: " + ("all as expected (honest full, blank and cheating 0)" if r["correct"]
                           else "WRONG for " + ", ".join(r["wrong"]))]
    lines += [f"nbgrader: {w}" for w in r["warnings"]]
    if r.get("course"):
        lines.append(f"course kept in {r['course']}")
    return "\n".join(lines)
