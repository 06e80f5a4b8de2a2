"""The referees: independent checks that the model is the C and that its shadow tables are
what a real MMU would walk.

* :mod:`lguest_book.verify.c_referee` — the original page_tables.c, compiled with gcc -m32
  (with and without PAE) against this project's kernel shims, driven with the same operations
  as the model and compared after every one.
* :mod:`lguest_book.verify.mmu_referee` — Unicorn (QEMU's i386 page walker) walking the
  model's shadow tables, compared with the model's own walk and its fault decisions.

``lguest-book verify`` runs both (see :func:`run_all`); ``python -m pytest`` runs them too.
"""

from __future__ import annotations


# Exit codes of ``lguest-book verify``.
AGREES = 0          # every referee ran and agrees with the model
DIVERGES = 1        # a referee found a divergence
BAD_INPUT = 2       # the command could not run as asked (a bad --source, a bad count...)
NOT_FULL = 3        # the referees that ran agree, but at least one could not run here


class VerifyError(Exception):
    """A reason ``lguest-book verify`` cannot run as asked, in one line."""


def check_source(path=None):
    """The page_tables.c a command was told to read, checked: ``path`` (its ``--source``), else
    ``$LGUEST_BOOK_C_SOURCE``; None when neither names one (the command's default applies).
    Raises :class:`VerifyError`, naming the option or the variable, for one that is missing or
    is not page_tables.c (nor its cregit rendering): a path given is never passed over for
    another.  ``verify``, ``where --c`` and ``bench`` all check their source here."""
    import os
    from pathlib import Path

    from . import extract

    if path is not None:
        named = f"--source {path}"
    elif os.environ.get("LGUEST_BOOK_C_SOURCE"):
        path = os.environ["LGUEST_BOOK_C_SOURCE"]
        named = f"LGUEST_BOOK_C_SOURCE={path}"
    else:
        return None
    source = Path(path)
    if not source.exists():
        raise VerifyError(f"{named}: no such file")
    if not source.is_file():
        raise VerifyError(f"{named}: not a file")
    try:
        text = extract.to_c(source.read_text(errors="replace"))
    except (OSError, StopIteration, ValueError) as err:
        raise VerifyError(f"{named}: cannot read it as page_tables.c ({err})") from None
    needed = ("demand_page(", "guest_set_pgd(", "gpte_to_spte(", "map_switcher_in_guest(")
    missing = [name.rstrip("(") for name in needed if name not in text]
    if missing:
        raise VerifyError(f"{named}: not drivers/lguest/page_tables.c nor a cregit rendering of it "
                          f"(no {', '.join(missing)})")
    return source


class _Progress:
    """Progress on stderr while a referee runs: one line rewritten in place on a terminal,
    else a line at every tenth of the work (and at its start)."""

    def __init__(self, stream, label: str):
        self.stream, self.label = stream, label
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int, name: str) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K{self.label}: {done + 1}/{total} {name}")
        else:
            tenth = done * 10 // max(total, 1)
            if tenth == self.shown:
                return
            self.shown = tenth
            self.stream.write(f"{self.label}: {done + 1}/{total} {name}\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_all(args, out=None, err=None) -> int:
    """The ``lguest-book verify`` command.  Returns :data:`AGREES` (0) when every referee ran and
    agrees, :data:`DIVERGES` (1) on a divergence, :data:`BAD_INPUT` (2) when it cannot run as
    asked, :data:`NOT_FULL` (3) when the referees that ran agree but one could not run here."""
    import sys

    from . import c_referee

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if args.sequences < 0:
            raise VerifyError(f"--sequences {args.sequences}: a count of random sequences must be 0 or more")
        source = check_source(args.source)
    except VerifyError as problem:
        print(f"lguest-book verify: {problem}", file=err)
        return BAD_INPUT

    layouts = [False, True] if args.pae is None else [args.pae]
    reports, skipped = [], []
    if not c_referee.gcc_m32_available():
        skipped.append("referee 1 (compiled page_tables.c): gcc cannot build 32-bit programs here "
                       "(apt-get install gcc-multilib)")
    else:
        try:
            c_referee.extract.find_source(source)
        except FileNotFoundError as problem:
            skipped.append(f"referee 1 (compiled page_tables.c): {problem}")
    if not skipped:  # referee 1 can run
        for pae in layouts:
            progress = _Progress(err, f"referee 1, {'PAE' if pae else 'non-PAE'}")
            try:
                reports.append(c_referee.run(pae, sequences=args.sequences, seed=args.seed, source=source,
                                             progress=progress))
            except c_referee.BuildError as problem:
                progress.end()
                first = next((line for line in str(problem).splitlines() if "error" in line), "gcc failed")
                print(f"lguest-book verify: {args.source or 'page_tables.c'} does not compile against the shims: "
                      f"{first.strip()}", file=err)
                return BAD_INPUT
            progress.end()
            print(reports[-1], file=out, flush=True)
    try:
        from . import mmu_referee
    except ImportError as problem:  # unicorn missing
        how = (" (get it: pip install 'lguest-book[referee]', or in a clone scripts/bootstrap referee)"
               if problem.name == "unicorn" or "unicorn" in str(problem) else "")
        skipped.append(f"referee 2 (Unicorn MMU): {problem}{how}")
    else:
        for pae in layouts:
            progress = _Progress(err, f"referee 2, {'PAE' if pae else 'non-PAE'}")
            reports.append(mmu_referee.run(pae, sequences=args.sequences, seed=args.seed, progress=progress))
            progress.end()
            print(reports[-1], file=out, flush=True)
    total = sum(len(r.divergences) for r in reports)
    ops = sum(r.operations for r in reports)
    for reason in skipped:
        print(f"NOT RUN: {reason}", file=out)
    if total:
        verdict = f"{total} divergence(s)."
    elif skipped:
        names = " and ".join(reason.split(":")[0] for reason in skipped)
        verdict = f"the model agrees with the referees that ran; {names} NOT run, so this is not a full verification."
    else:
        verdict = "the model agrees with every referee."
    print(f"\n{len(reports)} referee runs, {ops} operations compared: {verdict}", file=out)
    if total:
        return DIVERGES
    return NOT_FULL if skipped else AGREES
