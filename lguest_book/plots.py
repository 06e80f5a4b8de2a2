"""Pictures of the tables, drawn from the read-only API (:mod:`lguest_book.inspect`) only.

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` and accepts ``ax=`` to
draw into Axes the caller owns (then the Axes' figure is returned).  Figures are made with
the object-oriented API, never pyplot, so nothing lingers in a global figure list and a
notebook displays each figure exactly once (make it the cell's last expression).

Each figure also carries ``fig.lguest``: a small dict of what it shows (entries drawn,
entries highlighted, where a walk stopped...), so tests can check a picture says what it
claims (:func:`plot_side_by_side` also sets ``fig._lguest_highlighted`` and names the count in
its legend).

Colours are the Okabe–Ito palette, which stays distinguishable with the common forms of
colour blindness.
"""

from __future__ import annotations

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.patches import Patch, Polygon, Rectangle

from . import fmt
from . import inspect as li

# Okabe-Ito
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
EMPTY = "#F2F2F2"

# Categories of a top-level/mid-level entry, in the order of the colour map.
_CATS = ("not present", "kernel, read-only", "kernel, writable", "user, read-only", "user, writable", "large page (PSE)")
_CAT_COLOURS = (EMPTY, SKY, BLUE, YELLOW, ORANGE, PURPLE)
_CMAP = ListedColormap(_CAT_COLOURS)

_P, _RW, _U, _A, _D, _PSE, _G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100
FLAG_BITS = (("P", _P), ("RW", _RW), ("U", _U), ("A", _A), ("D", _D), ("PSE", _PSE), ("G", _G))


def _category(value: int) -> int:
    if not value & _P:
        return 0
    if value & _PSE:
        return 5
    return 1 + (2 if value & _U else 0) + (1 if value & _RW else 0)


class BookFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter without pyplot (and so without any
    global figure state): make it the last expression of a cell."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=90)
        return buf.getvalue()


def new_figure(size=(6.4, 4.8), **kwargs) -> BookFigure:
    """A :class:`BookFigure` (constrained layout), for pictures of your own."""
    kwargs.setdefault("layout", "constrained")
    return BookFigure(figsize=size, dpi=100, **kwargs)


def _figure(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(size)
    return fig, fig.add_subplot()


def _hex(v: int) -> str:
    return f"{v:#x}"


# --- one top level ---------------------------------------------------------------------------
def _tables(guest, which: str, slot):
    """(top-level entries, mid-level entries of each top entry (PAE) or None)."""
    L = li.layout(guest)
    s = li.current_slot(guest) if slot is None else slot
    if not li.pgdir_cache(guest)[s]["allocated"]:  # an empty slot: no table to show
        blank = [li.decode(guest, "pgd", i, i * L.PGDIR_SIZE, 0) for i in range(L.PTRS_PER_PGD)]
        return blank, ([[] for _ in blank] if L.pae else None)
    if which == "shadow":
        top = li.shadow_table(guest, s, "pgd")
        mid = lambda v: li.shadow_table(guest, s, "pmd", v)  # noqa: E731
    else:
        gpgdir = li.pgdir_cache(guest)[s]["gpgdir"]
        top = li.guest_table(guest, gpgdir, "pgd")
        mid = lambda v: li.guest_table(guest, gpgdir, "pmd", v)  # noqa: E731
    if not L.pae:
        return top, None
    return top, [mid(e.vaddr) if e.present else [] for e in top]


def _outline(ax, first: int, rows: int, colour, lw, **kw) -> None:
    """Outline cells ``first`` .. end of a ``rows`` x 32 grid (row-major) as one polygon."""
    r, c = divmod(first, 32)
    if c == 0:
        pts = [(-0.5, r - 0.5), (31.5, r - 0.5), (31.5, rows - 0.5), (-0.5, rows - 0.5)]
    else:
        pts = [(c - 0.5, r - 0.5), (31.5, r - 0.5), (31.5, rows - 0.5), (-0.5, rows - 0.5),
               (-0.5, r + 0.5), (c - 0.5, r + 0.5)]
    ax.add_patch(Polygon(pts, closed=True, fill=False, ec=colour, lw=lw, **kw))


def plot_directory(guest, which: str = "shadow", slot: int | None = None, ax=None, flags: bool = True,
                   zoom: bool = True, max_rows: int = 36) -> Figure:
    """A top level, zoomed to the entries that are present.

    One row per present entry — its index, the addresses it covers, its value, what it is
    (colour: kernel or user, read-only or writable, large page) and its Accessed/Dirty/Global
    bits — and one grey row for each run of entries that are not ("0x001–0x01f: 31 empty
    entries").  With PAE each of the four PDPT entries (blue band) is followed by the present
    entries of the PMD page it points to (yellow band): the levels are coloured apart.  Rows
    in the kernel's part carry a green bar, the Switcher's entry a black outline.  At most
    ``max_rows`` rows are drawn; the rest are counted in the last one.
    ``zoom=False`` draws the whole top level as a grid instead (:func:`plot_directory_grid`).

    ``fig.lguest`` tells what was drawn: ``present``, ``rows`` (each with its level, index or
    range, category and colour), ``empty`` (entries summarised), ``coloured`` ({(level,
    index): colour} of the entry rows).
    """
    if not zoom:
        return plot_directory_grid(guest, which, slot, ax, flags)
    if which not in ("shadow", "guest"):
        raise ValueError(f"which={which!r}: use 'shadow' or 'guest'")
    if slot is not None and not (isinstance(slot, int) and 0 <= slot < 4):
        raise ValueError(f"slot={slot!r} is not a pgdir slot (0..3)")
    L = li.layout(guest)
    s = li.current_slot(guest) if slot is None else slot
    lim = li.limits(guest)
    kaddr, saddr = lim["kernel_address"], lim["switcher_addr"]
    top, mids = _tables(guest, which, s)
    rows: list[dict] = []

    def add_level(entries, level, span, indent):
        run = []

        def flush_run():
            if run:
                a, b = run[0], run[-1]
                rows.append({"kind": "empty", "level": level, "range": (a.index, b.index), "count": len(run),
                             "indent": indent, "vaddr": a.vaddr, "end": (b.vaddr + span - 1) & 0xFFFFFFFF})
                run.clear()

        for e in entries:
            if not e.present:
                run.append(e)
                continue
            flush_run()
            pdpt = mids is not None and level == "pgd"
            rows.append({"kind": "entry", "level": level, "index": e.index, "value": e.value, "vaddr": e.vaddr,
                         "end": (e.vaddr + span - 1) & 0xFFFFFFFF,
                         "category": "points to a PMD page" if pdpt else _CATS[_category(e.value)],
                         "colour": SKY if pdpt else _CAT_COLOURS[_category(e.value)], "indent": indent,
                         "kernel": e.vaddr >= kaddr, "switcher": e.vaddr <= saddr <= (e.vaddr + span - 1)})
            if mids is not None and level == "pgd":
                add_level(mids[e.index], "pmd", L.PMD_SIZE, indent + 1)
        flush_run()

    if mids is None:
        add_level(top, "pgd", L.PGDIR_SIZE, 0)
        total = len(top)
    else:
        add_level(top[:4], "pgd", L.PGDIR_SIZE, 0)
        total = 4 * L.PTRS_PER_PMD  # the PMD entries four PDPT entries could point at
    entry_rows = [r for r in rows if r["kind"] == "entry"]
    shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
    hidden = len(rows) - len(shown)
    n = len(shown) + (1 if hidden else 0)
    fig, ax = _figure(ax, (7.6, 0.26 * n + 1.3))
    ax.set_xlim(0, 30)
    ax.set_ylim(n + 0.2, -0.9)
    ax.axis("off")
    band = {"pgd": "#DDEEFF", "pmd": "#FFF8CC", "pte": "#E5F5EE"}
    name = {"pgd": "PDPT" if L.pae else "PGD", "pmd": "PMD", "pte": "PTE"}
    ax.text(0.2, -0.45, "entry", fontsize=8, weight="bold")
    ax.text(6.0, -0.45, "covers", fontsize=8, weight="bold")
    ax.text(14.5, -0.45, "value", fontsize=8, weight="bold")
    ax.text(19.5, -0.45, "what it maps", fontsize=8, weight="bold")
    marks = {"A": 0, "D": 0, "G": 0}
    for y, r in enumerate(shown):
        x0 = 0.2 + 1.2 * r["indent"]
        if r["kind"] == "empty":
            a, b = r["range"]
            what = f"{_idx(a)}–{_idx(b)}" if a != b else _idx(a)
            noun = "entry" if r["count"] == 1 else "entries"
            ax.add_patch(Rectangle((x0 - 0.1, y - 0.42), 29.8 - x0, 0.84, color=EMPTY, lw=0))
            ax.text(x0, y, f"{name[r['level']]} {what}: {r['count']:,} empty {noun} "
                           f"({_va(r['vaddr'])}–{_va(r['end'])})", fontsize=7.5, va="center", color="#555555")
            continue
        v = r["value"]
        ax.add_patch(Rectangle((x0 - 0.1, y - 0.42), 29.8 - x0, 0.84, color=band[r["level"]], lw=0))
        ax.add_patch(Rectangle((19.2, y - 0.36), 0.6, 0.72, color=r["colour"], ec=BLACK, lw=0.5))
        if r["kernel"]:
            ax.add_patch(Rectangle((29.55, y - 0.42), 0.35, 0.84, color=GREEN, lw=0))
        if r["switcher"] and r["level"] == ("pmd" if L.pae else "pgd"):
            ax.add_patch(Rectangle((x0 - 0.1, y - 0.42), 29.8 - x0, 0.84, fill=False, ec=BLACK, lw=1.6))
        bits = [f for f, bit in (("A", _A), ("D", _D), ("G", _G)) if v & bit]
        for f in bits:
            marks[f] += 1
        ax.text(x0, y, f"{name[r['level']]}[{_idx(r['index'])}]", fontsize=8, va="center", family="monospace")
        ax.text(6.0, y, f"{_va(r['vaddr'])}–{_va(r['end'])}", fontsize=7.5, va="center", family="monospace")
        ax.text(14.5, y, _entry(L, v), fontsize=7.5, va="center", family="monospace")
        ax.text(20.0, y, r["category"] + (f"  {' '.join(bits)}" if bits and flags else "")
                + ("  (Switcher)" if r["switcher"] and r["level"] == ("pmd" if L.pae else "pgd") else ""),
                fontsize=7.5, va="center")
    if hidden:
        y = len(shown)
        more = sum(1 for r in rows[len(shown):] if r["kind"] == "entry")
        ax.text(0.2, y, f"… {hidden} more rows ({more} present entries) not drawn", fontsize=7.5, va="center")
    present = len(entry_rows) if mids is None else sum(1 for r in entry_rows if r["level"] == "pmd")
    empty = sum(r["count"] for r in rows if r["kind"] == "empty")
    where = "shadow" if which == "shadow" else "Guest's"
    if not li.pgdir_cache(guest)[s]["allocated"]:
        where = "empty slot — no"
    level = "" if mids is None else f" {sum(1 for e in top[:4] if e.present)} of 4 PDPT present;"
    ax.set_title(f"{where} top level (slot {s}):{level} {present} present "
                 f"{'entries' if mids is None else 'PMD entries'}; {empty:,} empty ones summarised", fontsize=9)
    handles = [Patch(color=c, label=n_) for c, n_ in zip(_CAT_COLOURS[1:], _CATS[1:])]
    handles += [Patch(color=band["pgd"], label=f"{name['pgd']} entry")]
    if mids is not None:
        handles += [Patch(color=band["pmd"], label="PMD entry")]
    handles += [Patch(color=GREEN, label=f"kernel part (≥ {_va(kaddr)})"),
                Patch(fill=False, ec=BLACK, lw=1.6, label=f"Switcher ({_va(saddr)})")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    values = [r["value"] for r in entry_rows if mids is None or r["level"] == "pmd"]
    counts = {nm: sum(1 for v in values if v & bit) for nm, bit in FLAG_BITS}
    fig.lguest = {"kind": "directory", "which": which, "slot": s, "present": present, "flags": counts,
                  "entries": total, "span": L.PGDIR_SIZE if mids is None else L.PMD_SIZE,
                  "top_present": sum(1 for e in top[:4 if mids is not None else len(top)] if e.present),
                  "marks": marks, "rows": rows, "empty": empty, "hidden_rows": hidden,
                  "coloured": {(r["level"], r["index"]): r["colour"] for r in entry_rows}}
    return fig


def _row_keys(rows) -> dict:
    """{(level, PDPT index or None, index): (row number, value)} for the entry rows drawn."""
    out, parent = {}, None
    for y, r in enumerate(rows):
        if r["kind"] != "entry":
            continue
        if r["level"] == "pgd":
            parent = r["index"]
        out[(r["level"], parent if r["level"] == "pmd" else None, r["index"])] = (y, r["value"])
    return out


def plot_directory_change(before, after, which: str = "shadow", slot: int | None = None,
                          titles=("before", "after")) -> Figure:
    """Two zoomed directories (:func:`plot_directory`), one above the other so each keeps
    the width of a single directory: ``before`` and ``after`` (two Guests, or one Guest
    copied before a change), each entry that differs between them outlined in vermilion on
    both — gone above, new or changed below; the legend (under the lower panel, shared by
    both) names that outline.
    ``fig.lguest["changed"]`` lists the (level, PDPT index, index) of those entries;
    ``fig.lguest["outlined"]`` the number of outlines drawn, ``["legend"]`` the legend's labels."""
    fig = new_figure((7.6, 6.0))
    # the two panels' heights follow their rows (and the lower one carries the legend)
    plot_directory(before, which, slot, ax=fig.add_subplot(2, 1, 1))
    info_before = fig.lguest
    plot_directory(after, which, slot, ax=fig.add_subplot(2, 1, 2))
    info_after = fig.lguest
    top, bottom = fig.axes
    rows_before = info_before["rows"][: len(info_before["rows"]) - info_before["hidden_rows"]]
    rows_after = info_after["rows"][: len(info_after["rows"]) - info_after["hidden_rows"]]
    nb = len(rows_before) + (1 if info_before["hidden_rows"] else 0)
    na = len(rows_after) + (1 if info_after["hidden_rows"] else 0)
    kb, ka = _row_keys(rows_before), _row_keys(rows_after)
    changed = sorted(k for k in set(kb) | set(ka) if kb.get(k, (0, None))[1] != ka.get(k, (0, None))[1])
    outlined = 0
    for ax, keys in ((top, kb), (bottom, ka)):
        for k in changed:
            if k in keys:
                y = keys[k][0]
                ax.add_patch(Rectangle((0.05, y - 0.45), 29.9, 0.9, fill=False, ec=VERMILION, lw=2.2))
                outlined += 1
    for ax, t in zip((top, bottom), titles):  # the panel's name on a line of its own: the width stays readable
        ax.set_title(f"{t}\n{ax.get_title()}", fontsize=8.5)
    # one legend for both panels, under the lower one, with the outline explained
    top.get_legend().remove()
    old = bottom.get_legend()
    handles = list(old.legend_handles) + [Patch(fill=False, ec=VERMILION, lw=2.2,
                                                label=f"changed: gone ({titles[0]}), new or changed ({titles[1]})")]
    labels = [t.get_text() for t in old.get_texts()] + [handles[-1].get_label()]
    old.remove()
    bottom.legend(handles=handles, labels=labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
                  fontsize=7, frameon=False)
    legend_rows = -(-len(handles) // 3)
    # each panel as high as its rows (ylim spans n + 1.1 rows), the legend under the lower one
    top.get_subplotspec().get_gridspec().set_height_ratios([nb + 1.1, na + 1.1])
    fig.set_size_inches(7.6, round(0.26 * (nb + na + 2.2) + 1.3 + 0.16 * legend_rows, 2))  # whole pixels
    fig.lguest = {"kind": "directory_change", "changed": changed, "before": info_before, "after": info_after,
                  "gone": [k for k in changed if k not in ka], "new": [k for k in changed if k not in kb],
                  "outlined": outlined, "legend": labels}
    return fig


_idx = fmt.index
_va = fmt.vaddr


def _entry(L, v: int) -> str:
    return fmt.entry(v, L)


def plot_directory_grid(guest, which: str = "shadow", slot: int | None = None, ax=None, flags: bool = True) -> Figure:
    """A top level at a glance, every entry a cell.

    Without PAE: the 1024 top-level entries as a 32 × 32 grid (entry ``i`` at row ``i // 32``,
    column ``i % 32``; each covers 4 MiB).  With PAE: the 4 PDPT entries as a column on the
    left, and beside each one a 16 × 32 block with the 512 entries of the mid-level page it
    points to (2 MiB each; empty if the PDPT entry is not present).  Colour says present /
    user / writable / large page; small marks show accessed (dot), dirty (triangle) and
    global (plus) when ``flags``; the kernel's part (at and above ``kernel_address``) is
    outlined in green and the Switcher's slot in black.
    """
    if which not in ("shadow", "guest"):
        raise ValueError(f"which={which!r}: use 'shadow' or 'guest'")
    if slot is not None and not (isinstance(slot, int) and 0 <= slot < 4):
        raise ValueError(f"slot={slot!r} is not a pgdir slot (0..3)")
    L = li.layout(guest)
    s = li.current_slot(guest) if slot is None else slot
    lim = li.limits(guest)
    kaddr, saddr = lim["kernel_address"], lim["switcher_addr"]
    top, mids = _tables(guest, which, s)
    fig, ax = _figure(ax, (6.4, 6.2) if not L.pae else (6.4, 7.4))
    if mids is None:
        values = [e.value for e in top] or [0] * 1024
        kernel_first, switcher = kaddr >> L.PGDIR_SHIFT, saddr >> L.PGDIR_SHIFT
        unit, span = "4 MiB", L.PGDIR_SIZE
    else:
        values = []
        for m in mids:
            values.extend([e.value for e in m] or [0] * 512)
        kernel_first, switcher = kaddr >> L.PMD_SHIFT, saddr >> L.PMD_SHIFT
        unit, span = "2 MiB", L.PMD_SIZE
    rows = len(values) // 32
    grid = [[_category(values[r * 32 + c]) for c in range(32)] for r in range(rows)]
    ax.imshow(grid, cmap=_CMAP, vmin=-0.5, vmax=len(_CATS) - 0.5, interpolation="nearest", aspect="equal")
    marks = {"A": ([], []), "D": ([], []), "G": ([], [])}
    if flags:
        for i, v in enumerate(values):
            if v & _P:
                r, c = divmod(i, 32)
                for name, bit, dx, dy in (("A", _A, -0.22, 0.2), ("D", _D, 0.22, 0.2), ("G", _G, 0, -0.22)):
                    if v & bit:
                        marks[name][0].append(c + dx)
                        marks[name][1].append(r + dy)
        for name, marker in (("A", "."), ("D", "^"), ("G", "+")):
            if marks[name][0]:
                ax.scatter(*marks[name], marker=marker, s=6, color=BLACK, linewidths=0.6, zorder=3)
    _outline(ax, kernel_first, rows, GREEN, 2)
    sr, sc = divmod(switcher, 32)
    ax.add_patch(Rectangle((sc - 0.5, sr - 0.5), 1, 1, fill=False, ec=BLACK, lw=2.2, zorder=4))
    if mids is not None:
        for b in range(4):
            if b:
                ax.axhline(b * 16 - 0.5, color=BLACK, lw=1)
            ax.add_patch(Rectangle((-4.5, b * 16 - 0.5), 3, 16, color=_CAT_COLOURS[_category(top[b].value)],
                                   ec=BLACK, lw=0.8, clip_on=False))
        ax.set_xlim(-4.6, 31.6)
        ax.set_yticks([b * 16 + 7.5 for b in range(4)], [f"PDPT {b}\n{top[b].value:#x}" for b in range(4)], fontsize=7)
        ax.set_ylabel("PDPT entries (left) and the 512 PMD entries below each", fontsize=8)
    else:
        ax.set_yticks(range(0, 32, 8), [f"{r * 32}" for r in range(0, 32, 8)])
        ax.set_ylabel("entry index (row start)", fontsize=8)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks(range(0, 32, 8))
    present = sum(1 for v in values if v & _P)
    where = "shadow" if which == "shadow" else "Guest's"
    if not li.pgdir_cache(guest)[s]["allocated"]:
        where = "empty slot — no"
    level = "" if mids is None else f" {sum(1 for e in top if e.present)} of 4 PDPT present;"
    ax.set_title(f"{where} top level (slot {s}):{level} {present} present {'entries' if mids is None else 'PMD entries'}, "
                 f"one cell = {unit}", fontsize=9)
    handles = [Patch(color=c, label=n) for c, n in zip(_CAT_COLOURS, _CATS)]
    handles += [Patch(fill=False, ec=GREEN, lw=2, label=f"kernel part (≥ {kaddr:#x})"),
                Patch(fill=False, ec=BLACK, lw=2, label=f"Switcher slot ({saddr:#x})")]
    if flags:
        handles += [Line2D([], [], ls="", marker=m, color=BLACK, ms=4, label=lab)
                    for m, lab in ((".", "accessed"), ("^", "dirty"), ("+", "global"))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=3, fontsize=7, frameon=False)
    counts = {name: sum(1 for v in values if v & _P and v & bit) for name, bit in FLAG_BITS}
    fig.lguest = {"kind": "directory", "which": which, "slot": s, "present": present, "flags": counts,
                  "entries": len(values), "span": span,
                  "top_present": sum(1 for e in top if e.present),
                  "marks": {k: len(v[0]) for k, v in marks.items()}}
    return fig


# --- guest and shadow side by side --------------------------------------------------------------
def plot_side_by_side(guest, start: int, pages: int = 16, slot: int | None = None, ax=None) -> Figure:
    """The Guest's PTEs and the shadow PTEs for ``pages`` pages from ``start``.

    Each row is one virtual page: on the left the Guest's entry (guest frame and flags), on
    the right the shadow's (host frame and flags), with an arrow for the frame translation.
    Rows where the two differ (no shadow entry, or other flags) are highlighted.
    """
    if not isinstance(pages, int) or not 1 <= pages <= 64:
        raise ValueError(f"pages={pages!r}: draw between 1 and 64 pages")
    rows = li.compare(guest, start, pages, slot)
    L = li.layout(guest)
    fig, ax = _figure(ax, (7.8, 0.3 * pages + 1.1))
    ax.set_xlim(0, 12)
    ax.set_ylim(pages, -1)
    ax.axis("off")
    ax.text(0.0, -0.6, "virtual page", fontsize=8, weight="bold")
    ax.text(2.0, -0.6, "Guest PTE (guest frame)", fontsize=8, weight="bold")
    ax.text(6.2, -0.6, "shadow PTE (host frame)", fontsize=8, weight="bold")
    ax.text(10.1, -0.6, "difference", fontsize=8, weight="bold")
    highlighted = 0
    for n, r in enumerate(rows):
        if r["differs"]:
            highlighted += 1
            ax.add_patch(Rectangle((0, n - 0.45), 12, 0.9, color=ORANGE, alpha=0.35, lw=0))
            if r["host_frame"] is None:
                why = "no shadow PTE"
            else:
                gf, sf = set(L.flag_names(r["guest"])), set(L.flag_names(r["shadow"]))
                why = " ".join([f"-{f}" for f in sorted(gf - sf)] + [f"+{f}" for f in sorted(sf - gf)])
            ax.text(10.1, n, why, fontsize=7.5, va="center", family="monospace")
        ax.text(0.0, n, fmt.vaddr(r["vaddr"]), fontsize=8, va="center", family="monospace")
        gtxt = (f"{fmt.frame(r['guest_frame'], L)} {'|'.join(L.flag_names(r['guest']))}"
                if r["guest_frame"] is not None else "—")
        stxt = (f"{fmt.frame(r['host_frame'], L)} {'|'.join(L.flag_names(r['shadow']))}"
                if r["host_frame"] is not None else "— (faults)")
        ax.text(2.0, n, gtxt, fontsize=8, va="center", family="monospace")
        ax.text(6.2, n, stxt, fontsize=8, va="center", family="monospace")
        if r["guest_frame"] is not None and r["host_frame"] is not None:
            ax.annotate("", xy=(6.1, n), xytext=(5.3, n), arrowprops=dict(arrowstyle="->", color=BLUE))
    ax.legend(handles=[Patch(color=ORANGE, alpha=0.35, label=f"guest and shadow differ ({highlighted})")],
              loc="lower center", bbox_to_anchor=(0.5, -0.02 - 1.0 / (pages + 2)), fontsize=8, frameon=False)
    s = li.current_slot(guest) if slot is None else slot
    ax.set_title(f"Guest vs shadow PTEs from {fmt.vaddr(start)} (slot {s})", fontsize=10)
    fig._lguest_highlighted = highlighted
    fig.lguest = {"kind": "side_by_side", "rows": len(rows), "highlighted": highlighted,
                  "differing": [r["vaddr"] for r in rows if r["differs"]]}
    return fig


# --- one walk --------------------------------------------------------------------------------------
def _fields(L, vaddr: int):
    if L.pae:
        return [("PDPT", 2, vaddr >> 30), ("PMD", 9, (vaddr >> 21) & 511),
                ("PTE", 9, (vaddr >> 12) & 511), ("offset", 12, vaddr & 0xFFF)]
    return [("PGD", 10, vaddr >> 22), ("PTE", 10, (vaddr >> 12) & 1023), ("offset", 12, vaddr & 0xFFF)]


MARK = "#E8000B"  # the entry a step read or wrote: red, apart from the palette's vermilion


def plot_walk(guest, vaddr: int, which: str = "shadow", ax=None, mark=None, mark_text: str = "") -> Figure:
    """``vaddr`` split into its index fields, then the walk drawn as a diagram: one box per
    table the walk reads (its frame, the entry read: index, value, flags), an arrow from each
    entry to the table it points at, and the page reached — or a red box where the walk
    stopped (and why).

    ``mark``: the entry to outline in red (:data:`MARK`, thick), labelled ``mark_text`` — a
    ``(frame, index)`` pointer on the shadow walk, a guest-physical address on the Guest's.
    ``fig.lguest["marked"]`` is that entry as drawn (its level, index, value and where), or
    None when ``mark`` is not on this walk."""
    if not isinstance(vaddr, int) or not 0 <= vaddr <= 0xFFFFFFFF:
        raise ValueError(f"vaddr={vaddr!r} is not a 32-bit address")
    if which not in ("shadow", "guest"):
        raise ValueError(f"which={which!r}: use 'shadow' or 'guest'")
    L = li.layout(guest)
    steps = li.walk_shadow(guest, vaddr) if which == "shadow" else li.walk_guest(guest, vaddr)
    fig, ax = _figure(ax, (7.6, 2.7))
    ax.set_xlim(0, 32)
    ax.set_ylim(7.4, -0.6)
    ax.axis("off")
    x = 0.0
    fields = _fields(L, vaddr)
    colours = (SKY, YELLOW, GREEN, EMPTY) if L.pae else (SKY, GREEN, EMPTY)
    level_colour = dict(zip(("pgd", "pmd", "pte") if L.pae else ("pgd", "pte"), colours))
    for (name, bits, value), colour in zip(fields, colours):
        ax.add_patch(Rectangle((x, 0.2), bits, 1, color=colour, ec=BLACK))
        label = f"{name} {fmt.index(value)}" if bits >= 4 else fmt.index(value)
        ax.text(x + bits / 2, 0.7, label, ha="center", va="center", fontsize=8 if bits >= 4 else 6.5)
        x += bits
    ax.text(0, -0.15, f"{fmt.vaddr(vaddr)}, split into its fields", fontsize=8.5, family="monospace")
    n = len(steps) + 1
    width, gap = 32 / n - 1.0, 1.0
    stopped = None
    boxes = []
    marked = None
    for k, st in enumerate(steps):
        bx = k * (width + gap)
        if isinstance(st.where, tuple):
            where = f"host frame {fmt.frame(st.where[0], L)}"
        else:
            base = st.where - st.index * L.entry_bytes
            where = f"at {fmt.paddr(base, L)}"
        name = "PDPT" if (L.pae and st.level == "pgd") else st.level.upper()
        colour = level_colour[st.level]
        ax.add_patch(Rectangle((bx, 2.0), width, 0.9, color=colour, ec=BLACK, lw=0.8))
        ax.text(bx + 0.2, 2.45, f"{name} page", fontsize=8, va="center", weight="bold")
        ax.add_patch(Rectangle((bx, 2.9), width, 2.6, fill=False, ec=BLACK, lw=0.8))
        ax.text(bx + 0.2, 3.25, where, fontsize=7, va="center", family="monospace")
        ec = BLACK if st.present else VERMILION
        ax.add_patch(Rectangle((bx + 0.1, 3.7), width - 0.2, 1.6, fc="#FFFFFF", ec=ec, lw=0.8 if st.present else 1.4,
                               ls="-" if st.present else "--"))
        hit = mark is not None and (tuple(mark) == tuple(st.where) if isinstance(st.where, tuple)
                                    else not isinstance(mark, tuple) and mark == st.where)
        if hit:
            ax.add_patch(Rectangle((bx - 0.05, 3.55), width + 0.1, 1.9, fill=False, ec=MARK, lw=3.2, zorder=5,
                                   gid="lguest-mark"))
            if mark_text:
                ax.text(bx + width / 2, 5.85, mark_text, ha="center", va="center", fontsize=8, weight="bold",
                        color=MARK)
            marked = {"level": st.level, "index": st.index, "value": st.value, "where": st.where,
                      "text": mark_text, "colour": MARK}
        ax.text(bx + 0.3, 4.1, f"[{fmt.index(st.index)}] {_entry(L, st.value)}", fontsize=7, va="center", family="monospace")
        flags = "|".join(L.flag_names(st.value)) if st.value else "empty"
        ax.text(bx + 0.3, 4.8, flags if st.present else f"{flags}: not present", fontsize=7, va="center",
                color=BLACK if st.present else VERMILION)
        boxes.append(bx)
        if not st.present:
            stopped = st.level
            break
    bx = len(boxes) * (width + gap)
    if not steps:
        stopped = "pgd"
        ax.add_patch(Rectangle((0, 2.0), 14, 1.2, color=VERMILION, alpha=0.25, lw=0))
        ax.text(0.3, 2.6, "no top level in this slot", fontsize=8.5, va="center")
    elif stopped:
        why = "page fault: demand_page runs" if which == "shadow" else "the Guest does not map it"
        ax.annotate("", xy=(bx + 0.1, 4.5), xytext=(bx - gap + 0.05, 4.5), arrowprops=dict(arrowstyle="-", color=VERMILION))
        ax.add_patch(Rectangle((bx, 3.7), width, 1.6, color=VERMILION, alpha=0.2, lw=0))
        ax.text(bx + 0.3, 4.5, f"walk stops:\n{why}", fontsize=7.5, va="center", color=VERMILION)
    else:
        last = steps[-1]
        pfn = L.pte_pfn(last.value)
        ax.add_patch(Rectangle((bx, 2.0), width, 3.5, color=EMPTY, ec=BLACK, lw=0.8))
        ax.text(bx + 0.3, 2.45, "page", fontsize=8, va="center", weight="bold")
        ax.text(bx + 0.3, 3.4, f"{'host' if which == 'shadow' else 'guest'} frame", fontsize=7.5, va="center")
        ax.text(bx + 0.3, 4.0, fmt.frame(pfn, L), fontsize=7.5, va="center", family="monospace")
        ax.text(bx + 0.3, 4.8, f"+ offset {vaddr & 0xFFF:#05x}", fontsize=7.5, va="center", family="monospace")
    for k in range(len(boxes) - (1 if stopped and steps else 0)):
        x0 = boxes[k] + width - 0.1
        ax.annotate("", xy=(x0 + gap + 0.15, 2.5), xytext=(x0, 4.5),
                    arrowprops=dict(arrowstyle="->", color=BLUE, lw=1.4, connectionstyle="arc3,rad=-0.25"))
    if not steps:
        outcome = "no top level in this slot"
    elif stopped:
        outcome = f"walk stops at the {stopped}: entry not present"
    else:
        last = steps[-1]
        outcome = f"reaches physical address {fmt.paddr((L.pte_pfn(last.value) << 12) | (vaddr & 0xFFF), L)}"
    ax.text(0, 6.4, outcome, fontsize=8.5, weight="bold", color=BLACK if not stopped else VERMILION)
    ax.set_title(f"{'shadow' if which == 'shadow' else 'Guest'} walk of {fmt.vaddr(vaddr)}", fontsize=10)
    fig.lguest = {"kind": "walk", "which": which, "levels": [s.level for s in steps],
                  "stopped": stopped, "complete": stopped is None and bool(steps),
                  "boxes": len(boxes) + (0 if stopped else 1), "arrows": len(boxes) - (1 if stopped and steps else 0),
                  "marked": marked}
    return fig


# --- the pgdir cache over time ------------------------------------------------------------------
class CacheRecorder:
    """Records the four-slot cache around each switch, for :func:`plot_cache_timeline`.

    ``rec.switch_to(proc)`` makes the Guest switch and records whether it was a hit (the top
    level was cached), a miss, and which top level was evicted.  ``rec.events`` is the list.
    """

    def __init__(self, guest):
        self.guest = guest
        self.events: list[dict] = []
        self.snapshot("start")

    def snapshot(self, label: str, kind: str = "state", evicted: int | None = None,
                 evicted_slot: int | None = None) -> dict:
        cache = li.pgdir_cache(self.guest)
        current = li.current_slot(self.guest)
        slots = [c["gpgdir"] if c["allocated"] else None for c in cache]
        if evicted is not None and evicted_slot is None:  # after a switch: the slot it took
            evicted_slot = current
        event = {"label": label, "kind": kind, "current": current, "slots": slots, "evicted": evicted,
                 "evicted_slot": evicted_slot, "pae": li.layout(self.guest).pae}
        self.events.append(event)
        return event

    def switch_to(self, proc) -> dict:
        before = [c["gpgdir"] if c["allocated"] else None for c in li.pgdir_cache(self.guest)]
        self.guest.switch_to(proc)
        slot = li.current_slot(self.guest)
        hit = proc.gpgdir in before
        evicted = before[slot] if not hit and before[slot] not in (None, proc.gpgdir) else None
        return self.snapshot(getattr(proc, "name", "?"), "hit" if hit else "miss", evicted)

    def record(self, label: str, action) -> dict:
        """Run ``action()`` (any operation on the Guest: a flush, a mapping...) and record the
        cache after it; kind "state", and ``evicted`` set if a slot lost its top level."""
        before = [c["gpgdir"] if c["allocated"] else None for c in li.pgdir_cache(self.guest)]
        action()
        after = [c["gpgdir"] if c["allocated"] else None for c in li.pgdir_cache(self.guest)]
        lost = [(i, b) for i, (b, a) in enumerate(zip(before, after)) if b is not None and a != b]
        return self.snapshot(label, "state", lost[0][1] if lost else None, lost[0][0] if lost else None)

    def __repr__(self) -> str:
        kinds = [e["kind"] for e in self.events]
        evictions = sum(1 for e in self.events if e["evicted"] is not None)
        return (f"CacheRecorder({fmt.count(len(self.events), 'event')}: {fmt.count(kinds.count('hit'), 'hit')}, "
                f"{fmt.count(kinds.count('miss'), 'miss', 'misses')}, {fmt.count(evictions, 'eviction')})")


def plot_cache_timeline(events: list[dict], ax=None) -> Figure:
    """Which Guest top level each of the four slots held after each step, the current slot
    (black outline), misses and hits, and evictions (a cross)."""
    if not events:
        raise ValueError("events is empty: record some switches with CacheRecorder first")
    fig, ax = _figure(ax, (max(5.5, 0.55 * len(events) + 2), 3.4))
    pae = bool(events[0].get("pae", False))
    names: dict[int, int] = {}
    palette = (SKY, ORANGE, GREEN, YELLOW, BLUE, VERMILION, PURPLE, "#999999")
    # who each top level is: the label of the switch that made it current (p0, p1...)
    who: dict[int, str] = {}
    for ev in events:
        g = ev["slots"][ev["current"]]
        if ev["kind"] in ("hit", "miss") and g is not None:
            who.setdefault(g, ev["label"])
    marks: list[tuple[int, int]] = []  # (step, slot) of each eviction drawn
    for t, ev in enumerate(events):
        for s, g in enumerate(ev["slots"]):
            if g is None:
                ax.add_patch(Rectangle((t - 0.45, s - 0.45), 0.9, 0.9, color=EMPTY))
                continue
            k = names.setdefault(g, len(names))
            ax.add_patch(Rectangle((t - 0.45, s - 0.45), 0.9, 0.9, color=palette[k % len(palette)]))
            ax.text(t, s, who.get(g, "boot"), ha="center", va="center", fontsize=6.5)
        cur = ev["current"]
        ax.add_patch(Rectangle((t - 0.45, cur - 0.45), 0.9, 0.9, fill=False, ec=BLACK, lw=2))
        if ev["evicted"] is not None:  # a black cross in the cell's corner: no slot's colour, off its label
            slot = ev.get("evicted_slot", cur)
            ax.plot([t + 0.27], [slot - 0.25], marker="X", color=BLACK, mec="white", mew=0.8, ms=8)
            marks.append((t, slot))
    ax.set_xlim(-0.6, len(events) - 0.4)
    ax.set_ylim(3.6, -0.6)
    ax.set_yticks(range(4), [f"slot {s}" for s in range(4)])
    ax.set_xticks(range(len(events)), [f"{e['label']}\n{e['kind']}" for e in events], fontsize=7)
    hits = sum(1 for e in events if e["kind"] == "hit")
    misses = sum(1 for e in events if e["kind"] == "miss")
    evictions = sum(1 for e in events if e["evicted"] is not None)
    ax.set_title(f"pgdir cache: {fmt.count(hits, 'hit')}, {fmt.count(misses, 'miss', 'misses')}, "
                 f"{fmt.count(evictions, 'eviction')}", fontsize=9)
    key = {who.get(g, "boot"): g for g in names}
    handles = [Patch(color=palette[k % len(palette)], label=f"{who.get(g, 'boot')}: Guest top level {fmt.paddr(g, pae=pae)}")
               for g, k in names.items()]
    handles += [Line2D([], [], ls="", marker="X", color=BLACK, mec="white", mew=0.8, ms=8,
                       label="its top level evicted here")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
              title="cell: whose top level a slot holds\noutline: the current slot", title_fontsize=7)
    fig.lguest = {"kind": "cache", "hits": hits, "misses": misses, "evictions": evictions,
                  "eviction_marks": marks, "key": {name: g for name, g in key.items()}}
    return fig


# --- reference counts --------------------------------------------------------------------------
def plot_refcounts(guest, ax=None) -> Figure:
    """How many host frames each owner holds, split by their reference count: a guest page
    with count 2 is mapped by the Launcher *and* pinned by a shadow PTE."""
    counts: dict[str, dict[int, int]] = {}
    for frame, (count, (kind, _)) in li.refcounts(guest).items():
        counts.setdefault(kind, {}).setdefault(count, 0)
        counts[kind][count] += 1
    kinds = [k for k in ("guest", "shadow", "switcher", "regs", "host") if k in counts]
    levels = sorted({c for per in counts.values() for c in per})
    fig, ax = _figure(ax, (6.0, 3.0))
    palette = (SKY, ORANGE, GREEN, BLUE, VERMILION, PURPLE, YELLOW)
    bottoms = [0] * len(kinds)
    for i, c in enumerate(levels):
        heights = [counts[k].get(c, 0) for k in kinds]
        ax.bar(kinds, heights, bottom=bottoms, color=palette[i % len(palette)], label=f"count {c}")
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, total in enumerate(bottoms):
        ax.text(x, total, str(total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("host frames")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("host frames in use, by owner and reference count", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.lguest = {"kind": "refcounts", "frames": {k: sum(counts[k].values()) for k in kinds}}
    return fig


# --- faults over time ------------------------------------------------------------------------------
_OUTCOMES = ("hit", "fixed by the shadow", "passed to the Guest", "device memory", "killed")


def _outcome(access) -> str:
    if access.outcome == "ok":
        return "hit" if access.faults == 0 else "fixed by the shadow"
    if access.outcome == "guest-fault":
        return "passed to the Guest"
    if access.outcome == "mmio":
        return "device memory"
    return "killed"


def plot_fault_timeline(accesses, ax=None) -> Figure:
    """One mark per access (``Guest.touch()`` results), in order: a hit, a fault the shadow
    fixed, one passed to the Guest, device memory, or a kill; with running totals."""
    accesses = list(accesses)
    if not accesses:
        raise ValueError("accesses is empty: pass the results of Guest.touch()")
    fig, ax = _figure(ax, (7.0, 2.6))
    colours = dict(zip(_OUTCOMES, (GREEN, SKY, ORANGE, PURPLE, VERMILION)))
    totals = dict.fromkeys(_OUTCOMES, 0)
    for i, a in enumerate(accesses):
        kind = _outcome(a)
        totals[kind] += 1
        ax.scatter([i], [_OUTCOMES.index(kind)], color=colours[kind], s=18 + 10 * a.faults, zorder=3)
    ax.set_yticks(range(len(_OUTCOMES)), [f"{k} ({totals[k]})" for k in _OUTCOMES], fontsize=8)
    ax.set_ylim(len(_OUTCOMES) - 0.5, -0.5)
    ax.set_xlabel("access number")
    ax.grid(axis="x", alpha=0.3)
    faults = sum(a.faults for a in accesses)
    ax.set_title(f"{len(accesses)} accesses, {faults} page faults taken by the Host", fontsize=10)
    fig.lguest = {"kind": "faults", "totals": totals, "faults": faults}
    return fig
