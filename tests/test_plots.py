"""The plots say what they claim: counts drawn match the model's read-only API."""

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from lguest_book import inspect as li
from lguest_book import plots
from lguest_book.guest import Guest

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])


def busy(pae):
    g = Guest(pae=pae, seed=3)
    p = g.new_process("p")
    g.switch_to(p)
    for i in range(6):
        g.map(0x08048000 + i * 4096, 0x300 + i, accessed=(i % 2 == 0))
    for i in range(4):
        g.touch(0x08048000 + i * 4096, write=(i == 0), user=True)
    return g


@LAYOUTS
def test_directory_counts_present_top_level_entries(pae):
    g = busy(pae)
    fig = plots.plot_directory(g)
    assert isinstance(fig, Figure)
    if pae:
        expected = sum(1 for top in li.shadow_table(g, None, "pgd") if top.present
                       for m in li.shadow_table(g, None, "pmd", top.vaddr) if m.present)
        assert fig.lguest["entries"] == 4 * 512
    else:
        expected = sum(1 for e in li.shadow_table(g, None, "pgd") if e.present)
        assert fig.lguest["entries"] == 1024
    assert fig.lguest["present"] == expected > 0
    # ...and that is what is drawn: one row per present entry, every other entry summarised
    rows = fig.lguest["rows"]
    low = "pmd" if pae else "pgd"
    assert sum(1 for r in rows if r["kind"] == "entry" and r["level"] == low) == expected
    assert fig.lguest["present"] + sum(r["count"] for r in rows if r["kind"] == "empty" and r["level"] == low) \
        == (sum(512 for top in li.shadow_table(g, None, "pgd") if top.present) if pae else 1024)
    assert all(r["count"] >= 1 for r in rows if r["kind"] == "empty")
    # the levels are coloured apart: PDPT rows and PMD rows have different bands
    if pae:
        assert {r["level"] for r in rows if r["kind"] == "entry"} == {"pgd", "pmd"}
    # the accessed / dirty / global marks drawn are the present entries with those flags
    values = [e.value for e in li.shadow_table(g, None, "pgd")] if not pae else [
        m.value for top in li.shadow_table(g, None, "pgd") for m in
        (li.shadow_table(g, None, "pmd", top.vaddr) if top.present else [])]
    for name, bit in (("A", 0x20), ("D", 0x40), ("G", 0x100)):
        assert fig.lguest["marks"][name] == sum(1 for v in values if v & 1 and v & bit) + (
            sum(1 for r in rows if r["kind"] == "entry" and r["level"] == "pgd" and r["value"] & bit) if pae else 0)
    assert "empty ones summarised" in fig.axes[0].get_title()
    grid = plots.plot_directory(g, zoom=False)
    drawn = grid.axes[0].images[0].get_array()
    assert drawn.shape == ((64, 32) if pae else (32, 32)) and int((drawn > 0).sum()) == expected
    assert fig.lguest["top_present"] == sum(1 for e in li.shadow_table(g, None, "pgd") if e.present)
    guest_fig = plots.plot_directory(g, which="guest")
    assert guest_fig.lguest["which"] == "guest"
    assert guest_fig.lguest["present"] >= 1


@LAYOUTS
def test_directory_change_outlines_exactly_the_entries_that_differ(pae):
    import copy

    g = busy(pae)
    before = copy.deepcopy(g)
    g.flush_all()
    fig = plots.plot_directory_change(before, g)
    low = "pmd" if pae else "pgd"
    old = {(r["level"], r["index"]): r["value"] for r in fig.lguest["before"]["rows"] if r["kind"] == "entry"}
    new = {(r["level"], r["index"]): r["value"] for r in fig.lguest["after"]["rows"] if r["kind"] == "entry"}
    user = [k for k in fig.lguest["gone"] if k[0] == low]
    assert user and all(k[2] < (0x600 if pae else 0x300) for k in user)  # the user part went
    assert all(old.get((k[0], k[2])) != new.get((k[0], k[2])) for k in fig.lguest["changed"] if not pae)
    outlined = [p for ax in fig.axes for p in ax.patches if p.get_edgecolor()[:3] == to_rgb(plots.VERMILION)
                and not p.get_fill()]
    assert len(outlined) == sum(1 for k in fig.lguest["changed"] if k not in fig.lguest["gone"]) + \
        sum(1 for k in fig.lguest["changed"] if k not in fig.lguest["new"])


@LAYOUTS
def test_directory_change_legend_explains_every_outline_and_fits_a_notebook(pae):
    import copy
    import io

    from PIL import Image

    g = busy(pae)
    before = copy.deepcopy(g)
    g.flush_all()
    fig = plots.plot_directory_change(before, g, titles=("before FLUSH_TLB(1)", "after"))
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1  # one legend, shared by both panels
    keyed = {(to_rgb(h.get_edgecolor()), h.get_fill()): t.get_text()
             for h, t in zip(legends[0].legend_handles, legends[0].get_texts())}
    outlines = {(to_rgb(p.get_edgecolor()), False) for ax in fig.axes for p in ax.patches if not p.get_fill()}
    assert outlines and outlines <= set(keyed), outlines - set(keyed)  # every outline drawn is in the legend
    assert "changed" in keyed[(to_rgb(plots.VERMILION), False)]
    drawn = sum(1 for ax in fig.axes for p in ax.patches
                if not p.get_fill() and to_rgb(p.get_edgecolor()) == to_rgb(plots.VERMILION))
    assert drawn == fig.lguest["outlined"] > 0 and fig.lguest["legend"] == [t.get_text() for t in legends[0].get_texts()]
    # at notebook width: one directory wide (the panels one above the other), rows in readable type
    width, height = Image.open(io.BytesIO(fig._repr_png_())).size
    assert width <= 720, width
    top, bottom = fig.axes
    assert top.get_position().y0 > bottom.get_position().y1  # before above after
    assert min(t.get_fontsize() for ax in fig.axes for t in ax.texts) >= 7.5
    # the two panels' rows are drawn the same height (neither panel stretched to fill space), as tall as
    # a lone directory's at least
    rows = [len(fig.lguest[k]["rows"]) + 1.1 for k in ("before", "after")]
    per_row = [fig.get_size_inches()[1] * ax.get_position().height / n for ax, n in zip((top, bottom), rows)]
    assert abs(per_row[0] - per_row[1]) < 0.1 * per_row[0] and min(per_row) >= 0.2, per_row


@LAYOUTS
def test_highlighted_rows_are_exactly_the_differing_entries(pae):
    g = busy(pae)
    fig = plots.plot_side_by_side(g, 0x08048000, pages=8)
    differing = [r["vaddr"] for r in li.compare(g, 0x08048000, 8) if r["differs"]]
    assert fig.lguest["highlighted"] == fig._lguest_highlighted == len(differing) == len(fig.lguest["differing"])
    bands = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == to_rgb(plots.ORANGE)]
    assert len(bands) == len(differing)
    assert fig.lguest["differing"] == differing
    # the write made page 0 writable and dirty in both: it must not be highlighted...
    assert 0x08048000 not in differing
    # ...while a page only read has a read-only shadow of a writable guest PTE
    assert 0x08049000 in differing
    # the legend names the count
    legend = fig.axes[0].get_legend().get_texts()[0].get_text()
    assert f"({len(differing)})" in legend


@LAYOUTS
def test_walk_stops_where_the_entry_is_missing(pae):
    g = busy(pae)
    done = plots.plot_walk(g, 0x08048000)
    assert done.lguest["complete"] and done.lguest["stopped"] is None
    assert done.lguest["levels"] == (["pgd", "pmd", "pte"] if pae else ["pgd", "pte"])
    missing = plots.plot_walk(g, 0x08048000 + 5 * 4096)  # mapped by the guest, never touched
    assert missing.lguest["stopped"] == "pte"
    far = plots.plot_walk(g, 0x40000000 if not pae else 0x60000000)
    assert far.lguest["stopped"] in ("pgd", "pmd")
    # drawn as tables and arrows: one box per table read (plus the page reached), an arrow
    # from each entry to the next table
    n = 3 if pae else 2
    assert done.lguest["boxes"] == n + 1 and done.lguest["arrows"] == n
    assert missing.lguest["boxes"] == n and missing.lguest["arrows"] == n - 1
    guest_walk = plots.plot_walk(g, 0x08048000 + 5 * 4096, which="guest")
    assert guest_walk.lguest["complete"]


@LAYOUTS
def test_cache_timeline_counts_hits_misses_evictions(pae):
    g = Guest(pae=pae, prandom=[1, 2, 3, 3, 0, 1, 1, 2, 3])
    rec = plots.CacheRecorder(g)
    procs = [g.new_process(f"p{i}") for i in range(3)]
    rec.switch_to(procs[0])   # miss (slot 3, never used)
    rec.switch_to(procs[1])   # miss (slot 3 again: evicts p0)
    rec.switch_to(procs[1])   # hit
    rec.switch_to(procs[2])   # miss (slot 0)
    rec.switch_to(procs[0])   # miss (slot 1)
    kinds = [e["kind"] for e in rec.events[1:]]
    assert kinds == ["miss", "miss", "hit", "miss", "miss"]
    assert rec.events[2]["evicted"] == procs[0].gpgdir
    rec.record("flush", g.flush_all)  # a flush empties no slot
    assert rec.events[-1]["kind"] == "state" and rec.events[-1]["evicted"] is None
    # slot 1 held the top level the Guest booted on (at guest address 0): p0's return evicts it
    assert rec.events[5]["evicted"] == 0 and rec.events[5]["current"] == rec.events[5]["evicted_slot"] == 1
    assert rec.events[2]["evicted_slot"] == 3
    assert repr(rec) == "CacheRecorder(7 events: 1 hit, 4 misses, 2 evictions)"
    fig = plots.plot_cache_timeline(rec.events)
    key = fig.lguest.pop("key")
    evicted = [(t, e["evicted_slot"]) for t, e in enumerate(rec.events) if e["evicted"] is not None]
    assert fig.lguest == {"kind": "cache", "hits": 1, "misses": 4, "evictions": len(evicted),
                          "eviction_marks": evicted}
    assert fig.axes[0].get_title() == "pgdir cache: 1 hit, 4 misses, 2 evictions"
    # each eviction is a black cross, a colour no slot's cell has
    crosses = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "X"]
    assert len(crosses) == len(evicted) and all(ln.get_color() == plots.BLACK for ln in crosses)
    from matplotlib.colors import to_rgba

    assert to_rgba(plots.BLACK) not in [tuple(p.get_facecolor()) for p in fig.axes[0].patches if p.get_fill()]
    # the key names each top level: p0..p2 and the one the Guest booted on
    assert {k: key[k] for k in ("p0", "p1", "p2")} == {p.name: p.gpgdir for p in procs}
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"p1: Guest top level {procs[1].gpgdir:#0{18 if pae else 10}x}" in legend


@LAYOUTS
def test_refcounts_and_fault_timeline(pae):
    g = busy(pae)
    fig = plots.plot_refcounts(g)
    frames = fig.lguest["frames"]
    owners = [who[0] for _, (_, who) in li.refcounts(g).items()]
    assert frames["switcher"] == owners.count("switcher") == 3
    assert frames["guest"] == owners.count("guest")
    accesses = [g.touch(0x08048000, user=True), g.touch(0x0804D000, user=True), g.touch(0x70000000, user=True)]
    fig = plots.plot_fault_timeline(accesses)
    assert fig.lguest["totals"]["hit"] == 1
    assert fig.lguest["totals"]["fixed by the shadow"] == 1
    assert fig.lguest["totals"]["passed to the Guest"] == 1
    assert fig.lguest["faults"] == 2


@LAYOUTS
def test_directory_of_an_empty_slot_draws_nothing(pae):
    g = Guest(pae=pae, seed=1)
    empty = [c["slot"] for c in li.pgdir_cache(g) if not c["allocated"]]
    assert empty
    for which in ("shadow", "guest"):
        fig = plots.plot_directory(g, which, slot=empty[0])
        assert fig.lguest["present"] == 0 and "empty slot" in fig.axes[0].get_title()


def test_plots_draw_into_given_axes_and_refuse_nonsense():
    g = busy(False)
    fig = Figure()
    a, b = fig.subplots(1, 2)
    assert plots.plot_walk(g, 0x08048000, ax=a) is fig
    assert plots.plot_directory(g, ax=b) is fig
    with pytest.raises(ValueError, match="which"):
        plots.plot_walk(g, 0x08048000, which="host")
    with pytest.raises(ValueError, match="vaddr"):
        plots.plot_walk(g, -1)
    with pytest.raises(ValueError, match="pages"):
        plots.plot_side_by_side(g, 0, pages=0)
    with pytest.raises(ValueError, match="slot"):
        plots.plot_directory(g, slot=7)
    with pytest.raises(ValueError, match="events"):
        plots.plot_cache_timeline([])


def test_plots_module_uses_only_the_public_api():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(plots))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert imported <= {"", None}  # only "from . import inspect" (and fmt)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level for a in n.names}
    assert names <= {"inspect", "fmt"}
