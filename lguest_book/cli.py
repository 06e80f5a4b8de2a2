"""The ``lguest-book`` command.

    lguest-book tour [--pae]              a guided fault, told step by step
    lguest-book where NAME [--c]          the Python twin of a C function (and its C, live)
    lguest-book trace VADDR [--write] [--user] [--pae]
                                          trace demand_page for one address
    lguest-book flaws [--pae]             show each known flaw of page_tables.c happen
    lguest-book bench [--quick]           measure the model's speed and memory
    lguest-book verify [...]              check the model against the referees
    lguest-book open [DIR]                open the book in JupyterLab (a copy in DIR outside a clone)
    lguest-book classroom course DIR      an nbgrader course made from the book's graded chapters
    lguest-book classroom generate|release|collect|autograde|feedback|export|report ...
                                          the course's nbgrader cycle (see --help)
    lguest-book classroom student-copy    self-study copies of the book: solutions stripped
    lguest-book classroom hub DIR --students a,b --instructor t [--create-users] [--start]
                                          JupyterHub for a whole class on one machine
    lguest-book practice KIND [--seed N] [--answer]
                                          a practice problem (walk, fault, evict, set_pte)
    lguest-book book sync|execute|check   keep the book's notebooks, twins and outputs
    lguest-book book html OUT             the static HTML edition (offline, from the stored outputs)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import flaws as _flaws
from . import fmt
from . import inspect as li
from . import page_tables as pt
from .guest import Guest
from .trace import Tracer


def _int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (use 0x... for hex)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text} is not a 32-bit address")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a seed (a seed is a non-negative integer)")
    return value


def _layout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pae", action="store_true", help="use the 3-level PAE layout")


def cmd_tour(args) -> int:
    g = Guest(pae=args.pae)
    L = g.x86
    say = print
    vaddr, gpfn = fmt.vaddr, lambda n: fmt.frame(n, L)
    entry = lambda v: fmt.entry(v, L)  # noqa: E731
    say(f"A {L.name} guest with {g.lg.pfn_limit} pages of memory has booted under lguest.")
    say(f"Its kernel lives at {vaddr(g.kernel_address)}; the Switcher at {vaddr(g.host.switcher_addr)}.")
    proc = g.new_process("init")
    g.switch_to(proc)
    va = 0x08048000
    pte = g.map(va, 0x300, accessed=False)
    say(f"\nThe guest maps {vaddr(va)} to its page {gpfn(0x300)} in its own tables: PTE {entry(pte)} ({L.describe(pte)}).")
    say(f"Shadow PTE for {vaddr(va)} before any access: {entry(li.walk_shadow(g, va)[-1].value)}")
    say("\nNow the guest writes to it.  The CPU walks the shadow tables, finds nothing, faults,")
    say("and lguest's demand_page() runs.  Its decisions:")
    with Tracer() as t:
        access = g.touch(va, write=True, user=True)
    for e in t.trace.decisions("demand_page"):
        say(f"  [{'yes' if e.outcome else 'no '}] {e.label}")
    for kind, ptr, old, new in t.trace.within("demand_page").writes():
        where = f"shadow entry {fmt.ptr(*ptr, L)}" if kind == "shadow" else f"guest PTE at {fmt.paddr(ptr, L)}"
        say(f"  wrote {where}: {entry(old or 0)} -> {entry(new)}")
    switcher = t.trace.within("map_switcher_in_guest").writes()
    if switcher:
        say(f"(Before that, entering the Guest, map_switcher_in_guest() made {len(switcher)} shadow writes "
            "of its own: the Switcher's pages for this CPU.)")
    spte = li.walk_shadow(g, va)[-1].value
    say(f"\nThe access succeeded after {access.faults} fault(s): host physical address {fmt.paddr(access.hpa, L)}.")
    say(f"Shadow PTE: {entry(spte)} ({L.describe(spte)}): host frame {gpfn(L.pte_pfn(spte))} stands for guest page {gpfn(0x300)}.")
    gpte = g.guest_pte(va)
    say(f"Guest PTE now: {entry(gpte)} ({L.describe(gpte)}): lguest set Accessed and Dirty for it.")
    say("\nThe four cached shadow top levels:")
    for slot in li.pgdir_cache(g):
        mark = "*" if slot["current"] else " "
        say(f" {mark} slot {slot['slot']}: gpgdir={fmt.paddr(slot['gpgdir'], L)} allocated={slot['allocated']} "
            f"switcher_mapped={slot['switcher_mapped']} last_host_cpu={slot['last_host_cpu']}")
    g.shutdown()
    return 0


def cmd_where(args) -> int:
    import inspect as pyinspect

    name = args.name
    if name not in pt.C_FUNCTIONS:
        stem = name.strip("_ ")
        close = [n for n in pt.C_FUNCTIONS if len(stem) >= 3 and stem in n]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        shown = name if stem and name.isprintable() and " " not in name else repr(name)
        print(f"{shown} is not a function of page_tables.c{hint}", file=sys.stderr)
        return 2
    source = None
    if args.c:
        source = _c_source("where", args.source)
        if source is False:
            return 2
    elif args.source is not None:
        print(f"lguest-book where: --source {args.source} is read only with --c (the C beside the Python)",
              file=sys.stderr)
        return 2
    func = vars(pt)[name]  # the twin itself, not the checked view pt.NAME gives users
    lines, start = pyinspect.getsourcelines(func)
    path = Path(pyinspect.getsourcefile(func)).resolve()
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    from . import csource

    print(f"{name} ({pt.MARKERS[name]}): {path}:{start}")
    print(f"C: {csource.where(name)}")
    for label, link in csource.links(name):
        print(f"   {label}: {link}")
    if args.brief:
        return 0
    print(csource.authorship_line(name))
    if not getattr(args, "c", False):
        print("".join(lines), end="")
        return 0
    found = csource.c_text(name, source)
    if found is None or not found.bodies:
        print(csource.HOW_TO_GET)
        print("".join(lines), end="")
        return 0
    import shutil

    from .notebook import columns

    print(f"C read live from {found.origin}")
    width = shutil.get_terminal_size((160, 40)).columns
    print(columns("\n\n".join(found.bodies), "".join(lines).rstrip(), width=max(width, 80)))
    return 0


def cmd_trace(args) -> int:
    g = Guest(pae=args.pae)
    proc = g.new_process("init")
    g.switch_to(proc)
    if args.vaddr < g.kernel_address and not args.unmapped:
        g.map(args.vaddr & ~0xFFF, 0x300, accessed=False)
    errcode = (2 if args.write else 0) | (4 if args.user else 0)
    with Tracer() as t:
        result = pt.demand_page(g.cpu, args.vaddr, errcode)
    print(t.trace.render())
    fixed, iomem = result
    print(f"\ndemand_page returned ({fixed}, {fmt.paddr(iomem, g.x86)}); guest {'killed: ' + g.dead if g.dead else 'alive'}")
    return 0


def cmd_flaws(args) -> int:
    for f in _flaws.FLAWS:
        print(f"== {f.title}\n   in {f.where}; breaks: {f.promise}")
        for key, value in f.demo(args.pae).items():  # frames and entries come typed (fmt), counts plain
            print(f"   {key}: {value}")
        print()
    return 0


def _c_source(command: str, given):
    """The page_tables.c ``command`` reads: ``--source`` or $LGUEST_BOOK_C_SOURCE checked as
    ``verify`` checks it (None: neither names one, the default applies), or False after its
    one-line error on stderr."""
    from .verify import VerifyError, check_source

    try:
        return check_source(given)
    except VerifyError as problem:
        print(f"lguest-book {command}: {problem}", file=sys.stderr)
        return False


def cmd_bench(args) -> int:
    from . import bench

    source = _c_source("bench", args.source)
    if source is False:
        return 2
    results = bench.run_all(quick=args.quick, source=source)
    print(bench.format_results(results, quick=args.quick))
    return 0


def cmd_verify(args) -> int:
    try:
        from .verify import run_all
    except ImportError as err:  # pragma: no cover - the referees are optional to import
        print(f"the referees are not available: {err}", file=sys.stderr)
        return 2
    return run_all(args)


def _find_book(given, *, writing: bool = False):
    """The book a command works on, or None after a one-line error on stderr."""
    from .locate import NoBook, find_book

    try:
        return find_book(given, writing=writing)
    except NoBook as err:
        print(err, file=sys.stderr)
        return None


def cmd_book(args) -> int:
    from . import book

    if args.action == "html":
        return _cmd_book_html(args)
    folder = _find_book(args.book, writing=args.action != "check")
    if folder is None:
        return 2
    if args.action == "sync":
        done = book.sync(folder)
        for nb in done:
            print(f"synced {nb}")
        if not done:
            print(f"no text twins (NN-name.py) to sync in {folder}", file=sys.stderr)
            return 1
        return 0
    if args.action == "execute":
        book.sync(folder)
        targets = [Path(c) for c in args.chapters] or book.chapters(folder)
        total, done, failed = 0.0, [], []
        for nb in targets:
            try:
                seconds = book.execute(nb)
            except book.CellFailed as err:  # one line, not nbclient's traceback; the notebook is left as it was
                print(f"lguest-book book execute: {err}", file=sys.stderr)
                failed.append(nb)
                continue
            total += seconds
            done.append(nb)
            print(f"executed {nb} in {seconds:.1f} s")
        from .locate import trust

        trust(done)  # outputs this machine just computed: JupyterLab shows their widgets at once
        print(f"{len(done)} notebook(s) in {total:.1f} s"
              + (f"; {len(failed)} failed, left unchanged: {', '.join(str(nb) for nb in failed)}" if failed else ""))
        return 1 if failed else 0
    notebooks = [Path(c) for c in args.chapters]
    reports = [book.check_notebook(nb) for nb in notebooks] if notebooks else book.check(folder)
    bad = [r for r in reports if r.problems]
    for r in reports:
        print(f"{'ok ' if not r.problems else 'BAD'} {r.notebook.name}")
        for problem in r.problems:
            print(f"    - {problem}")
    return 1 if bad else 0


def _cmd_book_html(args) -> int:
    from . import htmlsite as site

    if not args.chapters or len(args.chapters) != 1:
        print("book html needs one output folder: lguest-book book html OUT", file=sys.stderr)
        return 2
    folder = _find_book(args.book)
    if folder is None:
        return 2
    try:
        index = site.build(folder, Path(args.chapters[0]))
    except site.SiteError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"the HTML edition is in {index.parent} (open {index}; publish the folder on any static host)")
    return 0


def lab_options() -> list[str]:
    """JupyterLab options `open` adds: the kernels get CurveZMQ keys when pyzmq can encrypt, so
    each kernel neither runs in plain text nor warns that it does."""
    try:
        import zmq
    except ImportError:  # pragma: no cover - JupyterLab brings pyzmq
        return []
    return ["--MappingKernelManager.transport_encryption=auto"] if zmq.has("curve") else []


def cmd_open(args) -> int:
    from . import locate

    if args.dir and args.book and Path(args.dir) != Path(args.book):
        print(f"lguest-book open: two books named ({args.dir} and --book {args.book}): name one", file=sys.stderr)
        return 2
    named = args.dir or args.book or os.environ.get("LGUEST_BOOK_DIR")
    source = locate.source_book()
    if named:
        folder = Path(named)
    elif locate.is_book("book") and locate.in_clone():
        folder = Path("book")  # a clone: open the book itself, the source of truth
    elif locate.in_clone():
        folder = source
    else:
        folder = Path(locate.READER_COPY)
    if not locate.is_book(source) and not locate.is_book(folder):
        print(f"no book at {folder}, and this installation carries none to copy there", file=sys.stderr)
        return 2
    if locate.is_book(source) and folder.resolve() != source.resolve():
        fresh = not folder.exists()
        copied, kept = locate.copy_book(folder, source)
        if copied:
            print(f"{'copied the book' if fresh else 'added'} {len(copied)} file(s) {'into' if fresh else 'missing from'} {folder}")
        for rel in kept:
            print(f"kept your {folder / rel} (it differs from the book's; delete it to get the book's back)")
    if not locate.is_book(folder):
        print(f"no book at {folder}: no chapter notebooks (NN-name.ipynb) there", file=sys.stderr)
        return 2
    signed = locate.trust(folder)
    print(f"trusted {len(signed)} notebook(s) in {folder} (their widgets show at once)")
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:  # this Python's, even when its venv is not activated
        print("JupyterLab is not installed: pip install 'lguest-book[book]'", file=sys.stderr)
        return 2
    extra = ["--no-browser"] if args.no_browser else []
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # JupyterLab refuses root unless told
        extra.append("--allow-root")
    command = [sys.executable, "-m", "jupyterlab", str(folder)] + extra + lab_options()
    if args.dry_run:
        print("would run: " + " ".join(command))
        return 0
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lguest-book", description="lguest's shadow page tables, executable.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tour", help="a guided fault, told step by step")
    _layout_flag(p)
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser("where", help="the Python twin of a C function of page_tables.c")
    p.add_argument("name", help="a C function name, e.g. demand_page")
    p.add_argument("--brief", action="store_true", help="only the file and line")
    p.add_argument("--c", action="store_true", help="the C beside the Python, read live from a source you have")
    p.add_argument("--source", help="a page_tables.c (or its cregit text); default: $LGUEST_BOOK_C_SOURCE, "
                   "else the cregit text beside the repository")
    p.set_defaults(func=cmd_where)

    p = sub.add_parser("trace", help="trace demand_page for one address")
    p.add_argument("vaddr", type=_int, help="virtual address (e.g. 0x08048000)")
    p.add_argument("--write", action="store_true", help="a write fault (errcode bit 1)")
    p.add_argument("--user", action="store_true", help="from user mode (errcode bit 2)")
    p.add_argument("--unmapped", action="store_true", help="do not map the address first")
    _layout_flag(p)
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("flaws", help="show each known flaw of page_tables.c happen")
    _layout_flag(p)
    p.set_defaults(func=cmd_flaws)

    p = sub.add_parser("bench", help="measure the model's speed and memory")
    p.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke run)")
    p.add_argument("--source", help="the page_tables.c (or its cregit text) the compiled C is timed from; "
                   "default: as verify finds it")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("verify", help="check the model against the C and a real MMU",
                       description="Check the model against referee 1 (page_tables.c compiled with gcc -m32) and "
                       "referee 2 (Unicorn's MMU).  Exit status: 0 every referee ran and agrees; 1 a divergence; "
                       "2 bad input; 3 the referees that ran agree but one could not run here (not a full verification).")
    p.add_argument("--source", help="a page_tables.c (or its cregit text) to compile; default: "
                   "$LGUEST_BOOK_C_SOURCE, else the cregit text in ../shared/seeds beside the repository")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--pae", dest="pae", action="store_true", default=None, help="only the PAE layout")
    group.add_argument("--no-pae", dest="pae", action="store_false", help="only the non-PAE layout")
    p.add_argument("--sequences", type=int, default=200, help="random operation sequences per layout (0 or more)")
    p.add_argument("--seed", type=_seed, default=0, help="a non-negative integer: the same seed, the same sequences")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("book", help="sync, execute or check the book's notebooks; build its HTML edition")
    p.add_argument("action", choices=("sync", "execute", "check", "html"))
    p.add_argument("chapters", nargs="*", help="execute, check: the notebooks to execute or check (default: every "
                   "chapter of the book); html: the output folder; sync: none (it syncs the whole book)")
    p.add_argument("--book", default=None, help="the book's folder (default: $LGUEST_BOOK_DIR, else ./book or "
                   "./lguest-book when they hold chapters, else the book this installation carries)")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("classroom", help="an nbgrader course from the book, or self-study copies")
    _classroom_parsers(p.add_subparsers(dest="action", required=True, metavar="STEP"))

    p = sub.add_parser("practice", help="a seeded practice problem, answer on request")
    p.add_argument("kind", choices=("walk", "fault", "evict", "set_pte"))
    p.add_argument("--seed", type=_seed, default=0, help="a non-negative integer: the same seed, the same problem")
    p.add_argument("--answer", action="store_true", help="also show the answer (computed by the model)")
    p.set_defaults(func=cmd_practice)

    p = sub.add_parser("experiment", help="measure a claim of the C's comments (chapter 10)")
    p.add_argument("action", choices=("list", "run", "bench"))
    p.add_argument("name", nargs="?", help="the experiment to run (see `experiment list`), or `all`")
    p.add_argument("--quick", action="store_true", help="the chapter's small sizes (about a second each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="lguest-book-results", help="where to write the CSV, summary and PNG files")
    p.add_argument("--ops", type=int, default=1_000_000, help="operations for `experiment bench`")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser(
        "lab", help="the hostile-guest lab (chapter 11): challenges, hints, grading, fuzzing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The hostile-guest lab of chapter 11: you are the Guest, the Host is under test.",
        epilog="actions:\n"
               "  challenges              list the challenges: id, where the book teaches it, the goal\n"
               "  hint CHALLENGE          the first rung of its hint ladder (--level N: the first N rungs)\n"
               "  grade CHALLENGE FILE    grade the attack(a) that FILE defines, as chapter 11's graded cell\n"
               "                          is graded: it runs in a sandbox, and only the steps it took are\n"
               "                          replayed on a pristine Host (exit 0 if it achieves the challenge)\n"
               "  fuzz                    random hostile Guests for --seconds S (or exactly --runs N, the\n"
               "                          same result on every machine; --seed, --pae): what broke, shrunk\n"
               "                          to a minimal replay\n"
               "examples:\n"
               "  lguest-book lab challenges\n"
               "  lguest-book lab hint amplify --level 2\n"
               "  lguest-book lab grade crash-host my_attack.py\n"
               "  lguest-book lab fuzz --runs 60 --seed 3")
    p.add_argument("action", choices=("challenges", "hint", "grade", "fuzz"),
                   help="challenges | hint | grade | fuzz (described below)")
    p.add_argument("challenge", nargs="?", help="a challenge (see `lab challenges`)")
    p.add_argument("file", nargs="?", help="grade: a Python file defining attack(a)")
    p.add_argument("--level", type=int, default=1, help="hint: how many rungs of the ladder")
    p.add_argument("--seconds", type=float, default=10.0, help="fuzz: how long")
    p.add_argument("--runs", type=int, help="fuzz: exactly this many random Guests instead")
    p.add_argument("--seed", type=_seed, default=0, help="fuzz: a non-negative integer below 2**64")
    p.add_argument("--pae", action="store_true", help="fuzz: PAE Guests")
    p.set_defaults(func=cmd_lab)

    p = sub.add_parser("open", help="open the book in JupyterLab (copying it into DIR first)")
    p.add_argument("dir", nargs="?", default=None, help="your copy of the book (default: the clone's book/ "
                   "inside a clone, else ./lguest-book); missing files are copied in, yours are never overwritten")
    p.add_argument("--book", default=None, help=argparse.SUPPRESS)  # the older spelling of DIR
    p.add_argument("--no-browser", action="store_true", help="start JupyterLab without opening a browser")
    p.add_argument("--dry-run", action="store_true", help="copy and trust the book, print the JupyterLab command, do not run it")
    p.set_defaults(func=cmd_open)
    return parser


_BOOK_DIR = None  # as for `lguest-book book`: --book, $LGUEST_BOOK_DIR, the clone's or the installed book


def _classroom_parsers(steps) -> None:
    """The steps of ``lguest-book classroom``, in nbgrader's vocabulary (each one line of help).
    Another step is one more ``steps.add_parser(...)`` with ``set_defaults(func=...)``."""
    def course_flag(q):
        q.add_argument("--course", default=".", help="the course directory (default: the current one)")

    q = steps.add_parser("course", help="make an nbgrader course from the book's graded chapters")
    q.add_argument("dir", nargs="?", default="lguest-course", help="where to make it (default: lguest-course)")
    q.add_argument("--force", action="store_true", help="refresh an existing course's config and source/ notebooks")
    q.add_argument("--exchange", help="nbgrader's exchange folder, for release/fetch/submit/collect")
    q.add_argument("--time-limit", type=float, default=10.0, help="seconds for each run of an exercise's checks")
    q.add_argument("--book", default=_BOOK_DIR)
    q.set_defaults(func=cmd_classroom)
    for name, what in (("generate", "nbgrader generate_assignment: the student version in release/"),
                       ("release", "generate, then nbgrader release_assignment to the exchange"),
                       ("collect", "submissions into submitted/: from the exchange, or --zip files from an LMS"),
                       ("autograde", "nbgrader autograde (the verdicts are decided outside the students' code)"),
                       ("feedback", "nbgrader generate_feedback: an HTML page per student in feedback/"),
                       ("report", "per student: score, failed cells, and answers flagged as copies of the model")):
        q = steps.add_parser(name, help=what)
        q.add_argument("assignment", help="an assignment id, e.g. ch03")
        course_flag(q)
        if name == "collect":
            q.add_argument("--zip", nargs="+", default=[], metavar="FILE", help="zip files of submissions (nbgrader zip_collect)")
        if name in ("autograde", "feedback"):
            q.add_argument("--student", help="only this student")
        q.set_defaults(func=cmd_classroom)
    q = steps.add_parser("export", help="nbgrader export: every grade as CSV")
    course_flag(q)
    q.add_argument("--to", default="grades.csv", help="the CSV file (default: grades.csv in the course)")
    q.set_defaults(func=cmd_classroom)
    q = steps.add_parser("student-copy", help="self-study copies of the book: solutions and answer sources stripped")
    q.add_argument("--out", default="student-book", help="where to put the copies")
    q.add_argument("--book", default=_BOOK_DIR)
    q.set_defaults(func=cmd_classroom)
    q = steps.add_parser("bench-grading", help="time autograding a class of submissions of one chapter")
    q.add_argument("--students", type=int, default=60)
    q.add_argument("--assignment", default="ch03")
    q.add_argument("--jobs", type=int, default=0, help="answers graded at once (0: one per CPU)")
    q.add_argument("--keep", help="make the course here and keep it")
    q.set_defaults(func=cmd_classroom)
    q = steps.add_parser("hub", help="JupyterHub for a whole class on one machine (docs/hub.md)")
    q.add_argument("dir", nargs="?", help="the hub's own folder, e.g. /srv/lguest-hub")
    q.add_argument("--book", default=_BOOK_DIR)
    _hub_arguments(q)
    q.set_defaults(func=cmd_classroom_hub)


def _hub_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `classroom hub` (see lguest_book/hub.py and docs/hub.md)."""
    from .hub import DEFAULT_ENV

    g = p.add_argument_group("classroom hub DIR: JupyterHub for a whole class on one machine")
    g.add_argument("--students", help="the students' unix user names, comma-separated")
    g.add_argument("--roster", help="a file with one student user name a line (# comments)")
    g.add_argument("--instructor", help="the instructor's unix user name (hub admin, owns the course)")
    g.add_argument("--auth", choices=("pam", "shared"), default="pam",
                   help="pam: each user's own unix password (default); shared: one password for all students")
    g.add_argument("--ip", default="127.0.0.1", help="where the hub listens (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="public port; the next two are the proxy API and the hub")
    g.add_argument("--env", default=DEFAULT_ENV, help=f"the environment every server runs from (default {DEFAULT_ENV}; made if missing)")
    g.add_argument("--exchange", help="nbgrader's exchange folder (default DIR/exchange)")
    g.add_argument("--create-users", action="store_true", help="useradd the missing users (homes 0700)")
    g.add_argument("--remove-users", action="store_true", help="stop and userdel -r the users --create-users made, then exit")
    g.add_argument("--start", action="store_true", help="run the hub in the foreground")


def cmd_classroom_hub(args) -> int:
    from . import hub

    if args.dir in (None, "lguest-course"):  # none, or the default of `classroom course`: a hub needs its own folder
        print("classroom hub: give DIR, the hub's own folder (e.g. /srv/lguest-hub)", file=sys.stderr)
        return 2
    try:
        students, instructor = hub.roster(args.students, args.roster, args.instructor)
        if args.remove_users:
            removed = hub.remove_users([*students, instructor])
            print(f"removed {len(removed)} user(s)")
            return 0
        hub.check_options(port=args.port, book=args.book, auth=args.auth)
        env = hub.make_env(args.env)
        if args.create_users:
            hub.create_users([instructor, *students], Path(args.dir).resolve() / "state", passwords=args.auth == "pam")
        if args.start:
            hub.check_ready(Path(args.dir), env, students, instructor)
        who = f"--students {','.join(students)}" if args.students else f"--roster {args.roster}"
        shown = f"{who} --instructor {instructor} --auth {args.auth} --port {args.port}"
        config = hub.write_config(args.dir, students, instructor, env=env, exchange=args.exchange, ip=args.ip,
                                  port=args.port, auth=args.auth, book=args.book, args=shown)
        print(f"JupyterHub configuration: {config}")
        print(f"  {len(students)} students ({', '.join(students[:5])}{', ...' if len(students) > 5 else ''}), "
              f"instructor {instructor}, {args.auth} login, http://{args.ip}:{args.port}/")
        print(f"  servers run from {env}; exchange {args.exchange or Path(args.dir).resolve() / 'exchange'}")
        if args.start:
            print(f"starting the hub: http://{args.ip}:{args.port}/ (Ctrl-C stops it and every server)")
            hub.start(args.dir, env)
        else:
            print(f"start it: lguest-book classroom hub {args.dir} ... --start")
    except hub.HubError as err:
        print(f"classroom hub: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_classroom(args) -> int:
    from . import classroom

    classroom.WARNINGS.clear()  # this step's warnings only (not those of earlier calls in this process)
    try:
        return _classroom_step(classroom, args)
    except (classroom.CourseError, classroom.NbgraderError, ValueError) as err:
        print(f"lguest-book classroom {args.action}: {err}", file=sys.stderr)
        return 2
    finally:
        for line in classroom.WARNINGS:  # nbgrader's own warnings, if any, are the instructor's to see
            print(f"nbgrader: {line}", file=sys.stderr)
        classroom.WARNINGS.clear()


def _classroom_step(classroom, args) -> int:
    say = print
    if args.action in ("course", "student-copy"):
        args.book = _find_book(args.book)
        if args.book is None:
            return 2
    if args.action == "course":
        ids = classroom.make_course(args.dir, args.book, force=args.force, exchange=args.exchange,
                                    time_limit=args.time_limit)
        say(f"nbgrader course in {args.dir}: assignments {', '.join(ids)} (source/<id>/ and nbgrader_config.py; "
            "generate makes its gradebook.db)")
        say(f"next: lguest-book classroom generate {ids[0]} --course {args.dir}")
        return 0
    if args.action == "student-copy":
        out = classroom.student_copies(args.out, args.book)
        say(f"{len(out)} chapters copied to {args.out} (graded solutions and their model sources stripped, checks kept)")
        return 0
    if args.action == "bench-grading":
        from . import grading

        result = grading.bench(students=args.students, assignment=args.assignment, jobs=args.jobs, keep=args.keep)
        say(grading.format_bench(result))
        return 0 if result["correct"] else 1
    course = args.course
    if getattr(args, "assignment", None) is not None:  # every step that names one: checked here, once
        classroom.check_assignment(course, args.assignment)
    if args.action in ("generate", "release"):
        if args.action == "generate":
            folder, exchange = classroom.generate(course, args.assignment), None
        else:
            folder, exchange = classroom.release(course, args.assignment)
        names = ", ".join(p.name for p in sorted(folder.glob("*.ipynb")))
        say(f"student version of {args.assignment} in {folder}: {names}")
        if exchange is not None:
            say(f"released to the exchange at {exchange}: students can fetch it (nbgrader fetch_assignment, "
                "or the Assignments tab)")
        return 0
    if args.action == "collect":
        students = classroom.collect(course, args.assignment, args.zip)
        where = "the zip files" if args.zip else "the exchange"
        say(f"collected {args.assignment} from {where}: {len(students)} submission(s) in submitted/: {', '.join(students) or 'none'}")
        return 0
    if args.action == "autograde":
        classroom.autograde(course, args.assignment, args.student)
        rows = classroom.report(course, args.assignment)
        if args.student:
            rows = [r for r in rows if r["student"] == args.student]
        say(f"autograded {args.assignment}: {len(rows)} submission(s)")
        for r in rows:
            mark = "  FLAGGED" if r["flags"] else ""
            say(f"  {r['student']:<20} {_points(r['score'])}/{_points(r['max'])}{mark}")
        return 0
    if args.action == "feedback":
        pages = classroom.feedback(course, args.assignment, args.student)
        say(f"feedback for {args.assignment}: {len(pages)} HTML page(s) in {Path(course).resolve() / 'feedback'}")
        for page in pages:
            say(f"  {page.relative_to(Path(course).resolve())}")
        return 0
    if args.action == "export":
        to = Path(args.to) if Path(args.to).is_absolute() else Path(course).resolve() / args.to
        path = classroom.export(course, to)
        rows = max(0, len(path.read_text().splitlines()) - 1)
        say(f"exported {rows} grade row(s) to {path} (CSV: assignment, student, score, max score, ...)")
        return 0
    if args.action == "report":
        rows = classroom.report(course, args.assignment)
        say(f"{args.assignment}: {len(rows)} autograded submission(s)")
        for r in rows:
            say(f"  {r['student']:<20} {_points(r['score'])}/{_points(r['max'])}"
                + (f"  failed: {', '.join(r['failed'])}" if r["failed"] else ""))
            for flag in r["flags"]:
                say(f"      FLAG {flag}")
        flagged = sum(1 for r in rows if r["flags"])
        say(f"{flagged} submission(s) flagged as copies of the model's own function (not zeroed: review them)")
        return 0
    raise ValueError(f"unknown step {args.action!r}")  # pragma: no cover - argparse refuses it first


def _points(x) -> str:
    return "-" if x is None else f"{x:g}"


def cmd_practice(args) -> int:
    from . import practice

    prob = practice.problem(args.kind, args.seed)
    print(prob)
    if args.answer:
        print(f"\nanswer: {prob.explain()}")
    return 0


def cmd_lab(args) -> int:
    from . import lab

    def fail(message: str) -> int:
        print(f"lguest-book lab {args.action}: {message}", file=sys.stderr)
        return 2

    extra = {"challenges": [args.challenge, args.file], "fuzz": [args.challenge, args.file], "hint": [args.file]}
    extra = [a for a in extra.get(args.action, []) if a is not None]
    if extra:
        return fail(f"unexpected argument {' '.join(extra)} (usage: lab challenges | lab hint CHALLENGE "
                    "[--level N] | lab grade CHALLENGE FILE | lab fuzz [--seconds S] [--runs N])")
    if args.action == "challenges":
        for c in lab.CHALLENGES.values():
            print(f"{c.id:22} {c.where:32} {c.goal}")
        return 0
    if args.action == "fuzz":
        try:
            report = lab.fuzz(args.seconds, runs=args.runs, seed=args.seed, pae=args.pae)
        except ValueError as err:
            return fail(str(err))
        print(report)
        return 0
    if args.challenge is None:
        return fail(f"name a challenge; there are: {', '.join(lab.CHALLENGES)}")
    if args.challenge not in lab.CHALLENGES:
        return fail(f"no challenge named {args.challenge!r}; there are: {', '.join(lab.CHALLENGES)}")
    if args.action == "hint":
        if args.level < 1:
            return fail(f"--level {args.level} must be at least 1")
        print(lab.hints(args.challenge, args.level))
        return 0
    if not args.file:
        return fail("name the file that defines attack(a)")
    path = Path(args.file)
    if not path.is_file():
        return fail(f"no file {path}")
    from . import grading

    # The grader of chapter 11's graded cell: the attack runs in its sandbox, which reports only
    # the steps taken; they are replayed on a pristine Host and the challenge's checker decides.
    grader = grading.Grader()
    try:
        verdict = grader.grade_attack(args.challenge, path.read_text(errors="replace"), source_name=str(path))
    finally:
        grader.close()
    print(verdict.text)
    return 0 if verdict.ok else 1


def cmd_experiment(args) -> int:
    from . import experiments

    if args.action in ("list", "bench") and args.name is not None:
        print(f"lguest-book experiment {args.action}: takes no experiment name ({args.name}); "
              "`lguest-book experiment run NAME` runs one", file=sys.stderr)
        return 2
    if args.action == "list":
        for exp in experiments.EXPERIMENTS.values():
            print(f"{exp.name:<22} {exp.marker:<6} {exp.question}")
        return 0
    if args.action == "bench":
        if args.ops < 1:
            print(f"lguest-book experiment bench: --ops {args.ops} must be at least 1", file=sys.stderr)
            return 2
        result = experiments.bench_workload(args.ops, seed=args.seed, progress=experiments.Progress(sys.stderr, "workload"))
        print(f"{result['ops']} Guest operations in {result['total_s']:.1f} s ({result['ops_per_s']:,.0f}/s; "
              f"generating {result['generate_s']:.1f} s, running {result['run_s']:.1f} s); "
              f"{result['faults']} faults, {result['exits']} exits")
        return 0
    if not args.name:
        print("lguest-book experiment run: name an experiment (see `lguest-book experiment list`) or `all`", file=sys.stderr)
        return 2
    todo = experiments.names() if args.name == "all" else [args.name]
    for name in todo:
        if name not in experiments.EXPERIMENTS:
            print(f"lguest-book experiment run: no experiment named {name!r}; there are: "
                  f"{', '.join(experiments.names())}", file=sys.stderr)
            return 2
    if not 0 <= args.seed < 1 << 32:
        print(f"lguest-book experiment run: --seed {args.seed} must be from 0 to 2**32-1", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"lguest-book experiment run: --out {out} is a file, not a directory", file=sys.stderr)
        return 2
    from .locate import make_writable_dir, unmake

    try:  # before the experiment runs, not after
        made = make_writable_dir(out)
    except OSError as err:
        print(f"lguest-book experiment run: --out {out}: cannot write there ({err.strerror or err})", file=sys.stderr)
        return 2
    for n, name in enumerate(todo):
        try:
            result = experiments.run(name, quick=args.quick, seed=args.seed,
                                     progress=experiments.Progress(sys.stderr, name))
        except BaseException:
            if n == 0:
                unmake(made)  # nothing written: leave nothing behind
            raise
        paths = result.write(out)
        print(f"{name} ({'quick' if args.quick else 'full'} size, seed {args.seed}, {result.seconds:.1f} s):")
        for line in result.summary:
            print(f"  {line}")
        print(f"  wrote {', '.join(str(p) for p in paths)}")
    return 0


def _path_mistake(args) -> str | None:
    """A folder or notebook named on the command line that is not there (checked before any
    subcommand starts, so it gets one line instead of a traceback or a silent no-op)."""
    book = getattr(args, "book", None)
    if args.command in ("book", "classroom") and book is not None and not Path(book).is_dir():
        return f"--book {book}: no such folder (the book's notebooks live in book/)"
    if args.command == "book" and args.action == "sync" and args.chapters:
        return (f"sync takes no notebook ({' '.join(args.chapters)}): it pairs every chapter of the book "
                "folder with its text twin (name the folder with --book DIR)")
    if args.command == "book" and args.action in ("execute", "check"):
        from .book import notebook_problem

        for chapter in args.chapters:
            problem = notebook_problem(chapter)
            if problem:
                return problem
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mistake = _path_mistake(args)
    if mistake:
        print(f"lguest-book {args.command}: {mistake}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `lguest-book flaws | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a folder that cannot be made, a file that cannot be read: one line
        where = f": {err.filename}" if err.filename else ""
        print(f"lguest-book {args.command}: {err.strerror or err}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
