"""The ``lguest-book`` command.

    lguest-book tour [--pae]              a guided fault, told step by step
    lguest-book where NAME                the Python twin of a C function of page_tables.c
    lguest-book trace VADDR [--write] [--user] [--pae]
                                          trace demand_page for one address
    lguest-book flaws [--pae]             show each known flaw of page_tables.c happen
    lguest-book bench [--quick]           measure the model's speed and memory
    lguest-book verify [...]              check the model against the referees
    lguest-book open                      open the book in JupyterLab
    lguest-book classroom course DIR      an nbgrader course made from the book's graded chapters
    lguest-book classroom student-copy    self-study copies of the book: solutions stripped
    lguest-book classroom hub DIR --students a,b --instructor t [--create-users] [--start]
                                          JupyterHub for a whole class on one machine
    lguest-book practice KIND [--seed N] [--answer]
                                          a practice problem (walk, fault, evict, set_pte)
    lguest-book book sync|execute|check   keep the book's notebooks, twins and outputs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import flaws as _flaws
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


def _layout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pae", action="store_true", help="use the 3-level PAE layout")


def cmd_tour(args) -> int:
    g = Guest(pae=args.pae)
    L = g.x86
    say = print
    say(f"A {L.name} guest with {g.lg.pfn_limit} pages of memory has booted under lguest.")
    say(f"Its kernel lives at {g.kernel_address:#x}; the Switcher at {g.host.switcher_addr:#x}.")
    proc = g.new_process("init")
    g.switch_to(proc)
    vaddr = 0x08048000
    pte = g.map(vaddr, 0x300, accessed=False)
    say(f"\nThe guest maps {vaddr:#x} to its page {0x300:#x} in its own tables: PTE {pte:#x} ({L.describe(pte)}).")
    say(f"Shadow PTE for {vaddr:#x} before any access: {li.walk_shadow(g, vaddr)[-1].value:#x}")
    say("\nNow the guest writes to it.  The CPU walks the shadow tables, finds nothing, faults,")
    say("and lguest's demand_page() runs.  Its decisions:")
    with Tracer() as t:
        access = g.touch(vaddr, write=True, user=True)
    for e in t.trace.decisions("demand_page"):
        say(f"  [{'yes' if e.outcome else 'no '}] {e.label}")
    for kind, ptr, old, new in t.trace.writes():
        where = f"shadow entry {ptr}" if kind == "shadow" else f"guest PTE at {ptr:#x}"
        say(f"  wrote {where}: {old or 0:#x} -> {new:#x}")
    spte = li.walk_shadow(g, vaddr)[-1].value
    say(f"\nThe access succeeded after {access.faults} fault(s): host physical address {access.hpa:#x}.")
    say(f"Shadow PTE: {spte:#x} ({L.describe(spte)}): host frame {L.pte_pfn(spte):#x} stands for guest page {0x300:#x}.")
    gpte = g.guest_pte(vaddr)
    say(f"Guest PTE now: {gpte:#x} ({L.describe(gpte)}): lguest set Accessed and Dirty for it.")
    say("\nThe four cached shadow top levels:")
    for slot in li.pgdir_cache(g):
        mark = "*" if slot["current"] else " "
        say(f" {mark} slot {slot['slot']}: gpgdir={slot['gpgdir']:#x} allocated={slot['allocated']} "
            f"switcher_mapped={slot['switcher_mapped']} last_host_cpu={slot['last_host_cpu']}")
    g.shutdown()
    return 0


def cmd_where(args) -> int:
    import inspect as pyinspect

    name = args.name
    if name not in pt.C_FUNCTIONS:
        close = [n for n in pt.C_FUNCTIONS if name.strip("_") in n]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"{name} is not a function of page_tables.c{hint}", file=sys.stderr)
        return 2
    func = getattr(pt, name)
    lines, start = pyinspect.getsourcelines(func)
    path = Path(pyinspect.getsourcefile(func)).resolve()
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    print(f"{name} ({pt.MARKERS[name]}): {path}:{start}")
    if not args.brief:
        print("".join(lines), end="")
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
    print(f"\ndemand_page returned {result}; guest {'killed: ' + g.dead if g.dead else 'alive'}")
    return 0


def cmd_flaws(args) -> int:
    for f in _flaws.FLAWS:
        print(f"== {f.title}\n   in {f.where}; breaks: {f.promise}")
        for key, value in f.demo(args.pae).items():
            shown = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) and value > 9 else value
            print(f"   {key}: {shown}")
        print()
    return 0


def cmd_bench(args) -> int:
    from . import bench

    results = bench.run_all(quick=args.quick)
    print(bench.format_results(results))
    return 0


def cmd_verify(args) -> int:
    try:
        from .verify import run_all
    except ImportError as err:  # pragma: no cover - the referees are optional to import
        print(f"the referees are not available: {err}", file=sys.stderr)
        return 2
    return run_all(args)


def cmd_book(args) -> int:
    from . import book

    folder = Path(args.book)
    if args.action == "sync":
        for nb in book.sync(folder):
            print(f"synced {nb}")
        return 0
    if args.action == "execute":
        book.sync(folder)
        targets = [Path(c) for c in args.chapters] or book.chapters(folder)
        total = 0.0
        for nb in targets:
            seconds = book.execute(nb)
            total += seconds
            print(f"executed {nb} in {seconds:.1f} s")
        print(f"{len(targets)} notebook(s) in {total:.1f} s")
        return 0
    reports = book.check(folder)
    bad = [r for r in reports if r.problems]
    for r in reports:
        print(f"{'ok ' if not r.problems else 'BAD'} {r.notebook.name}")
        for problem in r.problems:
            print(f"    - {problem}")
    return 1 if bad else 0


def cmd_open(args) -> int:
    book = Path(args.book)
    if not book.is_dir():
        print(f"no book folder at {book}", file=sys.stderr)
        return 2
    beside = Path(sys.executable).parent / "jupyter"  # the venv's, even when it is not activated
    exe = str(beside) if beside.exists() else shutil.which("jupyter")
    if exe is None:
        print("JupyterLab is not installed: pip install 'lguest-book[book]'", file=sys.stderr)
        return 2
    extra = ["--no-browser"] if args.no_browser else []
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # JupyterLab refuses root unless told
        extra.append("--allow-root")
    return subprocess.call([exe, "lab", str(book)] + extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lguest-book", description="lguest's shadow page tables, executable.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tour", help="a guided fault, told step by step")
    _layout_flag(p)
    p.set_defaults(func=cmd_tour)

    p = sub.add_parser("where", help="the Python twin of a C function of page_tables.c")
    p.add_argument("name", help="a C function name, e.g. demand_page")
    p.add_argument("--brief", action="store_true", help="only the file and line")
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
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("verify", help="check the model against the C and a real MMU")
    p.add_argument("--source", help="a page_tables.c (or its cregit text) to compile; default: "
                   "$LGUEST_BOOK_C_SOURCE, else the cregit text in ../shared/seeds beside the repository")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--pae", dest="pae", action="store_true", default=None, help="only the PAE layout")
    group.add_argument("--no-pae", dest="pae", action="store_false", help="only the non-PAE layout")
    p.add_argument("--sequences", type=int, default=200, help="random operation sequences per layout")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("book", help="sync, execute or check the book's notebooks")
    p.add_argument("action", choices=("sync", "execute", "check"))
    p.add_argument("chapters", nargs="*", help="notebooks to execute (default: all)")
    p.add_argument("--book", default=os.environ.get("LGUEST_BOOK_DIR", "book"))
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("classroom", help="nbgrader course, or self-study copies of the book")
    p.add_argument("action", choices=("course", "student-copy", "hub"))
    p.add_argument("dir", nargs="?", default="lguest-course", help="where to make the course (course)")
    p.add_argument("--out", default="student-book", help="where to put the copies (student-copy)")
    p.add_argument("--book", default=os.environ.get("LGUEST_BOOK_DIR", str(Path(__file__).resolve().parent.parent / "book")))
    _hub_arguments(p)
    p.set_defaults(func=cmd_classroom)

    p = sub.add_parser("practice", help="a seeded practice problem, answer on request")
    p.add_argument("kind", choices=("walk", "fault", "evict", "set_pte"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--answer", action="store_true", help="also show the answer (computed by the model)")
    p.set_defaults(func=cmd_practice)

    p = sub.add_parser("open", help="open the book in JupyterLab")
    p.add_argument("--book", default=os.environ.get("LGUEST_BOOK_DIR", "book"))
    p.add_argument("--no-browser", action="store_true")
    p.set_defaults(func=cmd_open)
    return parser


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

    if args.action == "hub":
        return cmd_classroom_hub(args)
    if args.action == "course":
        ids = classroom.make_course(args.dir, args.book)
        print(f"nbgrader course in {args.dir}: assignments {', '.join(ids)}")
        print(f"next: cd {args.dir} && nbgrader generate_assignment {ids[0]}   (student version in release/)")
        print(f"      collect submissions in submitted/<student>/{ids[0]}/, then: nbgrader autograde {ids[0]}")
        return 0
    out = classroom.student_copies(args.out, args.book)
    print(f"{len(out)} chapters copied to {args.out} (graded solutions stripped, checks kept)")
    return 0


def cmd_practice(args) -> int:
    from . import practice

    prob = practice.problem(args.kind, args.seed)
    print(prob)
    if args.answer:
        print(f"\nanswer: {prob.explain()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `lguest-book flaws | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
