"""Referee 1: the original page_tables.c, compiled with gcc, against the model.

The C is extracted from the cregit text (:mod:`lguest_book.verify.extract`), compiled twice as a
32-bit program (with and without CONFIG_X86_PAE) against this project's kernel shims
(``shim/lguest_shim.h``, ``shim/driver.c``), and driven through a pipe.  The model runs the
same Guest operations; while it does, every door it goes through into the hypervisor — a
store into guest memory, a hypercall, a page-fault trap, entering the Guest, teardown — is
recorded and replayed into the C.  After every operation both machines are compared:

* what each door returned (the fault's outcome and its cr2 or device address, whether the
  Guest could be entered, ``guest_pa``'s ``(ok, paddr)``);
* why the Guest died, if it did (a host oops on both sides counts as the same death);
* ``cpu_pgd``, ``linear_pages``, and the four pgdir slots (allocated, gpgdir,
  switcher_mapped, last_host_cpu);
* every non-zero shadow entry at every level of every slot, with its flags and what its frame
  is (guest page *n*, Switcher page *k*, the register page, or a shadow page) — host frame
  numbers differ between the two hosts, so frames are compared by what they are;
* every page reference count, again by owner; refcount anomalies;
* the contents of every guest page (CRC-32), which catches every Accessed/Dirty write-back.

The shims are written from Linux 4.7's own definitions, not from the model (see
``shim/ASSUMPTIONS.md``).  What is run: the everyday scripted workloads, the special ones of
:func:`~lguest_book.verify.workload.special` (what the random generator rarely makes), one run
per allocation point with that allocation failing, and seeded random sequences.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .. import hypercalls as hc
from ..guest import Guest
from ..lguest import PrandomSource, pgd_flags, pgd_pfn, pmd_flags, pmd_pfn
from . import extract
from .report import Report
from .workload import MEM_PAGES, NR_CPUS, apply

SHIM = Path(__file__).resolve().parent / "shim"
HEADERS = ("linux/mm.h", "linux/gfp.h", "linux/types.h", "linux/spinlock.h", "linux/random.h",
           "linux/percpu.h", "asm/tlbflush.h", "asm/uaccess.h")
PRANDOM_VALUES = 512


class BuildError(RuntimeError):
    pass


def unavailable() -> str | None:
    """Why the compiled-C referee cannot run here (a sentence), or None if it can."""
    if not gcc_m32_available():
        return "gcc -m32 is not available (apt-get install gcc-multilib)"
    try:
        extract.find_source()
    except FileNotFoundError:
        return "page_tables.c not found (shared/seeds beside the repository, or LGUEST_BOOK_C_SOURCE)"
    return None


def gcc_m32_available() -> bool:
    gcc = shutil.which("gcc")
    if not gcc:
        return False
    probe = subprocess.run([gcc, "-m32", "-x", "c", "-", "-o", "/dev/null"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    return probe.returncode == 0


def build(pae: bool, source: str | Path | None = None, main: str = "driver.c") -> Path:
    """Compile the referee for one layout (cached by the hash of everything that goes in).
    ``main`` is the shim file with the program's ``main``: the referee's ``driver.c``, or the
    bench's ``c_bench.c`` (the same driver with a timing main).  Several processes
    (pytest-xdist workers) may ask at once: one builds, the others wait for it under a lock on
    build/referee/.lock, then find the executable made."""
    import fcntl

    from ..locate import build_dir

    base = build_dir("referee")  # the clone's build/, else the user's cache: never site-packages
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _build_locked(base, pae, source, main)


def _build_locked(base: Path, pae: bool, source, main: str) -> Path:
    c_file = extract.extract(source, base / "page_tables.c")
    key = hashlib.sha256()
    for path in dict.fromkeys((c_file, SHIM / "lguest_shim.h", SHIM / "driver.c", SHIM / main)):
        key.update(path.read_bytes())
    key.update(main.encode() + (b"pae" if pae else b"nonpae"))
    folder = base / key.hexdigest()[:16]
    name = "referee" if main == "driver.c" else Path(main).stem.replace("_", "-")
    exe = folder / f"{name}-{'pae' if pae else 'nonpae'}"
    if exe.exists():
        return exe
    include = folder / "include"
    for header in HEADERS:
        (include / header).parent.mkdir(parents=True, exist_ok=True)
        (include / header).write_text("/* stand-in: everything comes from lguest_shim.h */\n")
    (include / "lg.h").write_text('#include "lguest_shim.h"\n')
    shutil.copy(c_file, folder / "page_tables.c")
    cmd = ["gcc", "-m32", "-O1", "-w", "-fno-strict-aliasing", f"-I{include}", f"-I{folder}", f"-I{SHIM}",
           *(["-DCONFIG_X86_PAE"] if pae else []), "-o", str(exe), str(SHIM / main)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"gcc failed:\n{' '.join(cmd)}\n{done.stderr[-4000:]}")
    return exe


class CMachine:
    """The compiled page_tables.c, one process, one Guest at a time."""

    def __init__(self, exe: Path):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def cmd(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out.startswith("ok"):
            raise RuntimeError(f"referee said {out.strip()!r} to {line!r}")
        return out[3:].rstrip("\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)

    def state(self) -> dict:
        import json

        return normalise(json.loads(self.cmd("state")))


# --- recording the model's doors -----------------------------------------------------------------
class _Recorder:
    """While active, every call the Guest makes into the hypervisor is recorded (and still
    made): hypercalls, page faults, entering the Guest, teardown, stores to guest memory."""

    def __init__(self, g: Guest):
        self.g = g
        self.calls: list[tuple] = []

    def __enter__(self):
        self._saved = (hc.do_hcall, hc.page_fault, hc.enter_guest, hc.teardown, hc.guest_pa_door)
        do_hcall, page_fault, enter_guest, teardown, guest_pa_door = self._saved
        calls = self.calls

        def rec_hcall(cpu, call, a1=0, a2=0, a3=0, a4=0):
            calls.append(("hcall", *(int(x) & 0xFFFFFFFF for x in (call, a1, a2, a3, a4))))
            return do_hcall(cpu, call, a1, a2, a3, a4)

        def rec_fault(cpu, cr2, errcode):
            result = page_fault(cpu, cr2, errcode)
            calls.append(("fault", cr2, errcode, result))
            return result

        def rec_enter(cpu):
            result = enter_guest(cpu)
            calls.append(("enter", result))
            return result

        def rec_teardown(lg):
            calls.append(("teardown",))
            return teardown(lg)

        def rec_gpa(cpu, vaddr):
            result = guest_pa_door(cpu, vaddr)
            calls.append(("gpa", vaddr, result))
            return result

        hc.do_hcall, hc.page_fault, hc.enter_guest, hc.teardown, hc.guest_pa_door = (
            rec_hcall, rec_fault, rec_enter, rec_teardown, rec_gpa)
        g = self.g
        original = Guest.write_phys

        def rec_write(paddr, data):
            calls.append(("mem", paddr, bytes(data)))
            return original(g, paddr, data)

        g.write_phys = rec_write
        walk = g._walk

        def rec_walk(host, cr3, vaddr, write, user):
            try:
                result = walk(host, cr3, vaddr, write, user)
            except Exception:
                calls.append(("walk", vaddr, write, user, None))
                raise
            calls.append(("walk", vaddr, write, user, result))
            return result

        g._walk = rec_walk
        self._walk = walk
        return self

    def __exit__(self, *exc):
        hc.do_hcall, hc.page_fault, hc.enter_guest, hc.teardown, hc.guest_pa_door = self._saved
        del self.g.write_phys
        self.g._walk = self._walk
        return False


# --- the model's state, in the C's terms ---------------------------------------------------------
def model_state(g: Guest) -> dict:
    lg, host, L = g.lg, g.host, g.x86
    reverse = {f: i for i, f in enumerate(lg.launcher.frames) if f > 0}
    switcher = {f: k for k, f in enumerate(host.lg_switcher_pages)}
    regs = lg.cpus[0].regs_page

    def own(frame):
        if frame in switcher:
            return ("s", switcher[frame])
        if regs and frame == regs:
            return ("r", 0)
        if frame in reverse:
            return ("g", reverse[frame])
        return ("o", 0)

    shadow = []
    for p in lg.pgdirs:
        entries = []
        if p.pgdir:
            top = host.peek_table(p.pgdir)
            for i in range(L.PTRS_PER_PGD):
                v = top[i]
                if not v:
                    continue
                frame = pgd_pfn(v)  # lg.h's accessors, as the C's dump reads them
                entries.append((i, -1, -1, "pgd", own(frame), pgd_flags(v)))
                if not v & 1 or own(frame)[0] != "o" or host.is_free(frame):
                    continue
                if L.pae:
                    mids = host.peek_table(frame)
                    for j in range(L.PTRS_PER_PMD):
                        m = mids[j]
                        if not m:
                            continue
                        mf = pmd_pfn(m)
                        entries.append((i, j, -1, "pmd", own(mf), pmd_flags(m)))
                        if not m & 1 or own(mf)[0] != "o" or host.is_free(mf):
                            continue
                        ptes = host.peek_table(mf)
                        entries += [(i, j, k, "pte", own(L.pte_pfn(e)), L.pte_flags(e)) for k, e in enumerate(ptes) if e]
                else:
                    ptes = host.peek_table(frame)
                    entries += [(i, -1, k, "pte", own(L.pte_pfn(e)), L.pte_flags(e)) for k, e in enumerate(ptes) if e]
        shadow.append(entries)
    pages = {}
    for gpfn, frame in enumerate(lg.launcher.frames):
        if frame > 0:
            raw = host.page_bytes(frame)
            pages[gpfn] = zlib.crc32(bytes(raw) if raw is not None else bytes(4096))
    return normalise({
        "dead": lg.dead, "cpu_pgd": lg.cpus[0].cpu_pgd, "linear": int(lg.cpus[0].linear_pages),
        "anomalies": len(host.anomalies),
        "slots": [[int(bool(p.pgdir)), p.gpgdir, int(p.switcher_mapped), p.last_host_cpu] for p in lg.pgdirs],
        "shadow": shadow,
        "refs": [[own(f), c] for f, c in host.refcount.items() if c > 0],
        "pages": pages,
    })


OOPS = "Launcher killed by a host oops"


def normalise(state: dict) -> dict:
    dead = state["dead"]
    if isinstance(dead, str) and dead.startswith(OOPS):
        dead = OOPS  # what the oops message says differs between C and Python; that it happened does not
    return {
        "dead": dead,
        "cpu_pgd": state["cpu_pgd"],
        "linear": bool(state["linear"]),
        "anomalies": state["anomalies"],
        "slots": [tuple(s) for s in state["slots"]],
        "shadow": [sorted(tuple((a, b, c, lvl, tuple(o), fl)) for a, b, c, lvl, o, fl in slot) for slot in state["shadow"]],
        "refs": sorted((tuple(o), c) for o, c in state["refs"]),
        "pages": {int(k): v for k, v in state["pages"].items()},
    }


def difference(model: dict, c: dict) -> str | None:
    """The first difference between two states, in words (None if they agree)."""
    for key in ("dead", "cpu_pgd", "linear", "anomalies", "slots"):
        if model[key] != c[key]:
            return f"{key}: model {model[key]!r}, C {c[key]!r}"
    for slot, (a, b) in enumerate(zip(model["shadow"], c["shadow"])):
        if a != b:
            only_m = sorted(set(a) - set(b))[:3]
            only_c = sorted(set(b) - set(a))[:3]
            return f"slot {slot} shadow entries differ: model only {only_m}, C only {only_c}"
    if model["refs"] != c["refs"]:
        from collections import Counter

        a, b = Counter(model["refs"]), Counter(c["refs"])
        return f"reference counts differ: model only {sorted((a - b).elements())[:4]}, C only {sorted((b - a).elements())[:4]}"
    if model["pages"] != c["pages"]:
        diff = sorted(k for k in set(model["pages"]) | set(c["pages"]) if model["pages"].get(k) != c["pages"].get(k))
        return f"guest memory differs in guest pages {[hex(p) for p in diff[:8]]}"
    return None


# --- running a sequence on both ---------------------------------------------------------------------
@dataclass
class Pair:
    """A model Guest and the compiled C, kept in step."""

    pae: bool
    seed: int
    c: CMachine
    guest: dict = field(default_factory=dict)
    operations: int = 0
    log: list = field(default_factory=list)

    def __post_init__(self):
        rng = random.Random(self.seed)
        values = [rng.getrandbits(32) for _ in range(PRANDOM_VALUES)]
        config = {"mem_pages": MEM_PAGES, "nr_cpus": NR_CPUS, **self.guest}
        self.g = Guest(pae=self.pae, prandom=PrandomSource(values=values), boot=False, **config)
        lg, host = self.g.lg, self.g.host
        self.c.cmd(f"new {lg.pfn_limit} {host.nr_cpus} {host.switcher_addr} {lg.mem_base} {lg.device_limit}")
        for v in values:
            self.c.cmd(f"rand {v}")
        launched = int(self.c.cmd("launch"))
        if launched != 0:
            raise RuntimeError(f"the C could not launch the guest: {launched}")
        self.g.procs = []

    def step(self, label: str, action) -> str | None:
        """Run ``action(guest)`` on the model, replay its doors into the C, compare."""
        with _Recorder(self.g) as rec:
            action(self.g)
        for call in rec.calls:
            problem = self._replay(call)
            if problem:
                return f"{label}: {problem}"
        self.operations += 1
        self.log.append(label)
        diff = difference(model_state(self.g), self.c.state())
        return f"{label}: {diff}" if diff else None

    def _replay(self, call: tuple) -> str | None:
        kind = call[0]
        if kind == "mem":
            _, paddr, data = call
            for start in range(0, len(data), 8192):  # keep each command line short
                self.c.cmd(f"mem {paddr + start} {data[start:start + 8192].hex()}")
        elif kind == "hcall":
            self.c.cmd("hcall " + " ".join(str(x) for x in call[1:]))
        elif kind == "fault":
            _, cr2, errcode, (outcome, info) = call
            got = self.c.cmd(f"fault {cr2} {errcode}").split()
            if (got[0], int(got[1])) != (outcome, info if outcome in ("mmio", "guest") else 0):
                return f"fault at {cr2:#x} (error code {errcode}): model {outcome} {info:#x}, C {got[0]} {int(got[1]):#x}"
        elif kind == "enter":
            got = self.c.cmd("enter")
            if bool(int(got)) != bool(call[1]):
                return f"entering the guest: model {call[1]}, C {bool(int(got))}"
        elif kind == "teardown":
            self.c.cmd("teardown")
        elif kind == "gpa":
            _, vaddr, (ok, paddr) = call
            got_ok, got_paddr = (int(x) for x in self.c.cmd(f"gpa {vaddr}").split())
            if (bool(got_ok), got_paddr) != (ok, paddr):
                return f"guest_pa({vaddr:#x}): model ({ok}, {paddr:#x}), C ({bool(got_ok)}, {got_paddr:#x})"
        elif kind == "walk":
            _, vaddr, write, user, result = call
            done, err = (int(x) for x in self.c.cmd(f"walk {vaddr} {int(write)} {int(user)}").split())
            model = "oops" if result is None else ("ok" if result[0] >= 0 else f"fault {result[1]}")
            theirs = "oops" if done < 0 else ("ok" if done else f"fault {err}")
            if model != theirs:
                return f"the CPU's walk of {vaddr:#x} ({'write' if write else 'read'}, {'user' if user else 'kernel'}): model {model}, C {theirs}"
        return None

    def apply(self, op: tuple) -> str | None:
        if op[0] == "cpu":
            self.c.cmd(f"cpu {op[1] % self.g.host.nr_cpus}")
        elif op[0] == "fail_alloc":
            self.c.cmd(f"fail {op[1]} {op[2]}")
        return self.step(repr(op), lambda g: apply(g, op))


def run_sequence(c: CMachine, pae: bool, ops: list[tuple], seed: int = 0, guest: dict | None = None,
                 before_boot: list[tuple] = ()) -> tuple[int, str | None]:
    """Launch, run ``before_boot``, boot, run ``ops``, shut down, on both; returns (operations
    compared, divergence or None).  ``guest`` configures the Guest (see Workload)."""
    pair = Pair(pae, seed, c, dict(guest or {}))
    problem = pair.step("launch", lambda g: None)
    if problem:
        return pair.operations, problem
    for op in before_boot:
        problem = pair.apply(op)
        if problem:
            return pair.operations, problem + "\n  before boot: " + repr(list(before_boot))
    problem = pair.step("boot", lambda g: (g.boot(), g.procs.append(g.swapper)))
    if problem:
        return pair.operations, problem
    for op in ops:
        problem = pair.apply(op)
        if problem:
            return pair.operations, problem + "\n  replay: " + repr(ops[: ops.index(op) + 1])
    problem = pair.step("shutdown", lambda g: g.shutdown())
    return pair.operations, problem


def run_launch_failure(c: CMachine, pae: bool, n: int, seed: int = 7) -> str | None:
    """The Launcher creates a Guest while the ``n``-th page allocation of that launch fails (the
    register page, the first top level, the Switcher's shadow pages): compare what launch
    returned and what was left allocated, then after the Launcher closes the Guest."""
    from types import SimpleNamespace

    from ..host import Host
    from ..lguest import Lguest
    from ..x86 import layout_for

    rng = random.Random(seed)
    values = [rng.getrandbits(32) for _ in range(PRANDOM_VALUES)]
    L = layout_for(pae)
    host = Host(L, nr_cpus=NR_CPUS)
    lg = Lguest(host, MEM_PAGES, prandom=PrandomSource(values=values))
    c.cmd(f"new {lg.pfn_limit} {host.nr_cpus} {host.switcher_addr} {lg.mem_base} {lg.device_limit}")
    for v in values:
        c.cmd(f"rand {v}")
    host.fail_allocations(1, after=n)
    c.cmd(f"fail 1 {n}")
    model_err = hc.launch(lg)
    c_err = int(c.cmd("launch"))
    label = f"launch with allocation #{n} failing"
    if model_err != c_err:
        return f"{label}: launch returned {model_err} in the model, {c_err} in the C"
    view = SimpleNamespace(lg=lg, host=host, x86=L)
    diff = difference(model_state(view), c.state())
    if diff:
        return f"{label}: {diff}"
    hc.teardown(lg)
    c.cmd("teardown")
    diff = difference(model_state(view), c.state())
    return f"{label}, after teardown: {diff}" if diff else None


LAUNCH_ALLOCATIONS = 6  # more than launch asks for in either layout (3 without PAE, 4 with)


def run_workload(c: CMachine, pae: bool, w, seed: int = 7) -> tuple[int, str | None]:
    """Run one :class:`~lguest_book.verify.workload.Workload` on both."""
    return run_sequence(c, pae, w.ops, seed=seed, guest=w.guest, before_boot=w.before_boot)


def workloads(pae: bool, sequences: int = 50, seed: int = 0, length: int = 20) -> list:
    """What ``lguest-book verify`` runs for one layout, in order: the everyday scripted
    workloads, the special ones, one per allocation point, then ``sequences`` random ones."""
    from .workload import Workload, allocation_failures, random_ops, scripted, special

    rng = random.Random(seed)
    work = [Workload(name, ops) for name, ops in scripted(pae).items()]
    work += special(pae) + allocation_failures(pae)
    work += [Workload(f"random #{i}", random_ops(rng, pae, length, hostile=i % 2 == 0)) for i in range(sequences)]
    return work


def run(pae: bool, sequences: int = 50, seed: int = 0, source: str | Path | None = None, length: int = 20,
        progress=None) -> Report:
    """Every workload of :func:`workloads` for one layout.  ``progress(done, total, name)`` is
    called before each one."""
    exe = build(pae, source)
    c = CMachine(exe)
    report = Report("compiled page_tables.c", "PAE" if pae else "non-PAE", 0, 0, [])
    rng = random.Random(seed ^ 0x5EED)
    try:
        work = workloads(pae, sequences, seed, length)
        total = LAUNCH_ALLOCATIONS + len(work)
        for n in range(LAUNCH_ALLOCATIONS):
            if progress:
                progress(n, total, f"launch with allocation #{n} failing")
            problem = run_launch_failure(c, pae, n)
            report.sequences += 1
            report.operations += 2
            if problem:
                report.divergences.append(problem)
        for done, w in enumerate(work, start=LAUNCH_ALLOCATIONS):
            if progress:
                progress(done, total, w.name)
            n, problem = run_workload(c, pae, w, seed=rng.randrange(1 << 30))
            report.sequences += 1
            report.operations += n
            if problem:
                report.divergences.append(f"{w.name}: {problem}")
    finally:
        c.close()
    return report
