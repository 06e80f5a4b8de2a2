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


def run_all(args) -> int:
    """The ``lguest-book verify`` command: returns the number of divergences (0 = agree)."""
    from . import c_referee

    layouts = [False, True] if args.pae is None else [args.pae]
    reports = []
    if not c_referee.gcc_m32_available():
        print("referee 1 skipped: gcc cannot build 32-bit programs here (apt-get install gcc-multilib)")
    else:
        for pae in layouts:
            reports.append(c_referee.run(pae, sequences=args.sequences, seed=args.seed, source=args.source))
            print(reports[-1], flush=True)
    try:
        from . import mmu_referee
    except ImportError as err:  # unicorn missing
        print(f"referee 2 skipped: {err}")
    else:
        for pae in layouts:
            reports.append(mmu_referee.run(pae, sequences=args.sequences, seed=args.seed))
            print(reports[-1], flush=True)
    total = sum(len(r.divergences) for r in reports)
    ops = sum(r.operations for r in reports)
    print(f"\n{len(reports)} referee runs, {ops} operations compared: "
          + ("the model agrees with every referee." if total == 0 else f"{total} divergence(s)."))
    return min(total, 1)
