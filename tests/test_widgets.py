"""Widget logic, driven without a browser; and the redraw benchmark."""

import matplotlib

matplotlib.use("Agg")

import html

import pytest

from lguest_book import inspect as li
from lguest_book import plots, widgets
from lguest_book.guest import Guest

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])


def guest_with_page(pae, accessed=False):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    g.map(0x08048000, 0x300, accessed=accessed)
    return g


@LAYOUTS
def test_stepper_walks_a_fixed_fault_step_by_step(pae):
    g = guest_with_page(pae)
    before = li.walk_shadow(g, 0x08048000)[-1].value
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    kinds = [st.kind for st in s.steps]
    # the Guest enters (mapping the Switcher, one summarised step), then faults once
    assert kinds[:3] == ["access", "enter", "fault"] and kinds[-1] == "result"
    assert "map_switcher_in_guest" in s.steps[1].text
    assert kinds.count("fault") == 1  # one fault, fixed; the retried access succeeds
    assert s.outcome == "fixed"
    assert "fixed the fault" in s.steps[-1].text
    # the Guest's two (non-PAE) or three (PAE) entries were read, in walk order
    reads = [st.text for st in s.steps if st.kind == "read"]
    assert [r.split()[3] for r in reads] == (["pgd_t", "pmd_t", "pte_t"] if pae else ["pgd_t", "pte_t"])
    # every check is labelled with its function and answered
    assert all(st.text.endswith(("? yes", "? no")) for st in s.steps if st.kind == "check")
    assert any(st.kind == "alloc" for st in s.steps)
    # moving
    assert s.position == 0
    s.step(); s.step()
    assert s.position == 2
    s.back()
    assert s.position == 1
    s.run_to_end()
    assert s.at_end and s.current is s.steps[-1]
    s.step()  # stays at the end
    assert s.at_end
    for _ in range(len(s.steps) + 2):
        s.back()
    assert s.position == 0
    # the Guest given is untouched: the stepper works on copies
    assert li.walk_shadow(g, 0x08048000)[-1].value == before


@LAYOUTS
def test_state_at_freezes_the_model_mid_fault(pae):
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    writes = [i for i, st in enumerate(s.steps) if st.kind == "write"]
    shadow_pte_write = [i for i in writes if "[0x048]:" in s.steps[i].text][0]
    guest_write = [i for i in writes if "Guest's PTE" in s.steps[i].text][0]
    just_before = s.state_at(shadow_pte_write - 1)
    assert not li.walk_shadow(just_before, 0x08048000)[-1].present
    after = s.state_at(shadow_pte_write)
    spte = li.walk_shadow(after, 0x08048000)[-1]
    assert spte.level == "pte" and spte.present and spte.value & 0x2   # writable: a write fault
    assert after.guest_pte(0x08048000) & 0x60 == 0                     # not yet written back
    done = s.state_at(guest_write)
    assert done.guest_pte(0x08048000) & 0x60 == 0x60                   # accessed and dirty
    assert s.state_at(0).guest_pte(0x08048000) == g.guest_pte(0x08048000)


@LAYOUTS
def test_stepper_shows_refusals_and_kills(pae):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    g.set_pte(0x08048000, 0x300 << 12 | 0x05)  # present, user, read-only, not accessed
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    assert s.outcome == "guest"
    assert any(st.text == "demand_page: write to a read-only page? yes" for st in s.steps)
    g.set_pte(0x08048000, (li.limits(g)["device_limit"] + 9) << 12 | 0x07)
    s.reset()
    assert s.outcome == "killed"
    assert [st.text for st in s.steps if st.kind == "kill"] == ["kill_guest: 'bad page table entry'"]
    assert g.dead is None  # only the stepper's copy died
    with pytest.raises(ValueError, match="vaddr"):
        s.reset(vaddr=1 << 32)
    with pytest.raises(ValueError, match="k="):
        s.go(len(s.steps))


@LAYOUTS
def test_stepper_on_an_access_that_does_not_fault(pae):
    g = guest_with_page(pae)
    g.touch(0x08048000, write=True, user=True)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    assert s.outcome == "no-fault" and "demand_page" not in [st.func for st in s.steps]
    assert [st.kind for st in s.steps] == ["access", "result"]
    s.reset(vaddr=0x08048000, write=False, user=False)   # a kernel read: still mapped
    assert s.outcome == "no-fault" and s.errcode == 0


def test_widgets_use_only_the_public_api_and_the_model_never_imports_them():
    import ast
    import inspect
    import pathlib

    import lguest_book

    tree = ast.parse(inspect.getsource(widgets))
    relative = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
                for a in n.names}
    assert relative <= {(None, "inspect"), (None, "plots"), (None, "fmt"), ("trace", "Tracer"), ("recorder", "Recorder")}
    import lguest_book.recorder as recorder

    rtree = ast.parse(inspect.getsource(recorder))
    rel = {(n.module, a.name) for n in ast.walk(rtree) if isinstance(n, ast.ImportFrom) and n.level for a in n.names}
    assert rel <= {(None, "inspect"), ("guest", "Guest")}  # the recorder reads through inspect only
    package = pathlib.Path(lguest_book.__file__).parent
    for name in ("x86", "host", "lguest", "page_tables", "hypercalls", "mmu", "guest", "trace", "inspect", "recorder"):
        mod = ast.parse((package / f"{name}.py").read_text())
        names = {a.name for n in ast.walk(mod) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        names |= {n.module or "" for n in ast.walk(mod) if isinstance(n, ast.ImportFrom)}
        assert not any("plots" in x or "widgets" in x or (name != "recorder" and "recorder" in x) for x in names), name


@LAYOUTS
def test_stepper_view_has_the_controls_and_a_picture(pae):
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    view = s.view
    buttons = {b.description for box in view.children if hasattr(box, "children") for b in box.children
               if type(b).__name__ == "Button"}
    assert buttons == {"Back", "Step", "Next decision", "Next change", "Run to end", "Reset"}
    assert s._w_buttons["Back"].disabled and not s._w_buttons["Step"].disabled
    for _ in range(3):
        s._w_buttons["Step"].click()
    assert s.position == 3 and s.current.kind == "check"
    shown = s._w_out.value
    assert "step 3 of" in shown and html.escape(s.current.text, quote=False) in shown and "lgb-step-text" in shown
    assert f"page_tables.py:{s.current.lineno}" in shown and s.current.lineno > 0
    assert "vaddr" in s.current.source_line  # the model's line, read through inspect.source_line
    assert "shadow walk" in shown and "Guest's walk" in shown
    # next decision: past calls and reads to the next check
    s._w_buttons["Next decision"].click()
    assert s.current.kind == "check" and s.position == 4
    # next change: past every quiet step to the next table change
    s.go(2)
    s._w_buttons["Next change"].click()
    assert s.current.kind in ("write", "alloc") and all(not st.changes for st in s.steps[3:s.position])
    # a read or a write is outlined in the walk, labelled
    reads = [st.index for st in s.steps if st.kind == "read"]
    writes = [st.index for st in s.steps if st.kind == "write"]
    assert all(s.marked(k) for k in reads + writes)
    assert "read now" in s.picture_html(reads[0]) and "written now" in s.picture_html(writes[-1])
    assert "read now" not in s.picture_html(3) and "written now" not in s.picture_html(3)
    # each picture is the state after the last change: the shadow PTE is there after its write
    assert "not present" in s.picture_html(writes[-2] - 1) and "not present" not in s.picture_html(writes[-2]).split("shadow walk")[1].split("Guest")[0]
    s._w_buttons["Run to end"].click()
    assert s.at_end and s._w_buttons["Step"].disabled and s._w_buttons["Next change"].disabled
    s._w_addr.value = "0x8049000"
    s._w_buttons["Reset"].click()
    assert s.vaddr == 0x8049000 and s.outcome == "guest"  # nothing mapped there
    s._w_addr.value = "hello"
    s._w_buttons["Reset"].click()
    assert s._w_error.value.endswith("'hello' is not an address: type a number such as 0x08048000.</span>")
    s._w_addr.value = "0x100000000"
    s._w_buttons["Reset"].click()
    assert "is not a 32-bit address" in s._w_error.value and "Traceback" not in s._w_error.value
    bundle = s._repr_mimebundle_()
    assert bundle["text/plain"].startswith("FaultStepper(0x08049000, write, user): step 0 of")
    assert "0x7f" not in bundle["text/plain"]  # no memory addresses
    assert s._w_c.value == ""  # no C source given: no C shown


def test_stepper_shows_the_c_only_live_and_only_when_given(tmp_path, monkeypatch):
    monkeypatch.delenv("LGUEST_BOOK_C_SOURCE", raising=False)
    c = tmp_path / "page_tables.c"
    c.write_text("bool demand_page(struct lg_cpu *cpu, unsigned long vaddr, int errcode)\n{\n"
                 "\tgpgd = lgread(cpu, gpgd_addr(cpu, vaddr), c_only_marker);\n\treturn true;\n}\n")
    g = guest_with_page(False)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True, c_source=str(c))
    read = [st.index for st in s.steps if st.kind == "read"][0]
    assert s.c_line(read) == (3, "gpgd = lgread(cpu, gpgd_addr(cpu, vaddr), c_only_marker);")
    s.view
    s.go(read)
    assert "page_tables.c:3" in s._w_c.value
    # the C never enters the text form nor the picture stored with a notebook
    assert "c_only_marker" not in s.summary() and "c_only_marker" not in s._w_out.value and "c_only_marker" in s._w_c.value
    assert widgets.FaultStepper(g, 0x08048000).c_line(read) is None


def test_stepper_text_prints_each_number_one_way():
    import re

    g = guest_with_page(False)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    for st in s.steps:
        # no bare decimal index beside hex ones: every number of 3+ digits is hex
        assert not re.search(r"(?<![\w.])\d{3,}(?![\w.])", st.text.replace("page_tables.py", "")), st.text


@LAYOUTS
def test_table_explorer_selects_and_decodes(pae):
    g = guest_with_page(pae, accessed=True)
    g.touch(0x08048000, user=True)
    e = widgets.TableExplorer(g)
    assert e.level == "pgd" and e.entries
    entry = e.select(level="pte", vaddr=0x08048000)
    assert entry.index == 0x48 and entry.present
    assert "host frame" in e.detail and ("guest 0x00000300" if pae else "guest 0x00300") in e.detail
    guest_entry = e.select(which="guest")
    assert guest_entry.frame == 0x300 and ("guest frame 0x00000300" if pae else "guest frame 0x00300") in e.detail
    if pae:
        mid = e.select(which="shadow", level="pmd")
        assert mid.index == 64
    else:
        with pytest.raises(ValueError, match="level"):
            e.select(level="pmd")
    with pytest.raises(ValueError, match="slot"):
        e.select(slot=4)
    empty = [c["slot"] for c in li.pgdir_cache(g) if not c["allocated"]][0]
    assert e.select(slot=empty, level="pgd") is None and e.detail == f"slot {empty} is empty: no top level cached there"
    e.select(slot=li.current_slot(g))
    view = e.view
    e._w_level.value = "pgd"
    assert e.level == "pgd"
    assert e._w_list.options and "pgd[" in e._w_list.options[0][0]
    # bad input: a sentence, never Python's message
    e._w_vaddr.value = "hello"
    assert e._w_detail.value.endswith("'hello' is not an address: type a number such as 0x08048000.</span>")
    e._w_index.value = "0x5000"
    assert "is outside this table" in e._w_detail.value and "invalid literal" not in e._w_detail.value
    e._w_index.value = "1"
    assert e.index == 1


def test_table_explorer_lists_every_entry_and_selects_by_index():
    g = Guest(pae=False, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    e = widgets.TableExplorer(g, which="guest")
    e.view
    # the Guest's kernel maps all its memory: 1,024 present PTEs in one page, all listed
    e._w_level.value = "pte"
    e._w_vaddr.value = "0xc0000000"
    assert len(e.entries) == 1024 and len(e._w_list.options) == 1024
    assert "1024 present entries of 1024, all listed" in e._w_count.value
    e._w_index.value = "0x3ff"
    assert e.index == 0x3FF and e._w_list.value == 0x3FF and "pte[0x3ff]" in e._w_detail.value
    assert e._w_list.options[-1][0].startswith("pte[0x3ff] 0xc03ff000")
    e._w_list.value = 0x200
    assert e.index == 0x200 and e._w_index.value == "0x200"
    e._w_level.value = "pgd"
    assert len(e._w_list.options) == len(e.entries) < 1024
    e._w_empty.value = True
    assert len(e._w_list.options) == 1024 and "all 1024 listed" in e._w_count.value


@LAYOUTS
def test_hypercall_console_reports_what_the_host_did(pae):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    c = widgets.HypercallConsole(g)
    c.switch_to(p)
    c.touch(0x08048000, user=True)
    assert "guest-fault" in c.log[-1]
    line = c.set_pte(0x08048000, 0x300 << 12 | 0x07)    # not accessed: nothing shadowed yet
    # the Guest had no page table there: it built one and made SET_PGD (or SET_PMD) first, and the log says so
    assert f"[hypercalls made: {'SET_PMD' if pae else 'SET_PGD'}, SET_PTE]" in line
    assert not li.walk_shadow(g, 0x08048000)[-1].present
    assert "outcome ok after 1 fault" in c.touch(0x08048000, user=True)
    assert any(x.startswith("Guest entry at ") and "(A/D written back by the Host)" in x for x in c.changes[-1])
    line = c.set_pte(0x08049000, 0x301 << 12 | 0x67)   # accessed+dirty: the shortcut maps it now
    e = (lambda v: f"{v:#018x}") if pae else (lambda v: f"{v:#010x}")
    assert line.startswith(f"SET_PTE 0x08049000 = {e(0x301067)}: 1 shadow entry written")
    spte = li.walk_shadow(g, 0x08049000)[-1]
    assert spte.present and any(x.endswith(f"→ {e(spte.value)}") and x.startswith("shadow frame") for x in c.changes[-1])
    line = c.flush_user()
    assert "2 unpinned" in line and not li.walk_shadow(g, 0x08049000)[-1].present
    c.flush_all()
    line = c.new_pgtable(name="q")
    assert c.log[-2].startswith("the Guest built a new top level for q") and line.startswith("NEW_PGTABLE q:")
    assert li.pgdir_cache(g)[li.current_slot(g)]["gpgdir"] != p.gpgdir
    assert any(x.startswith("cache slot ") for x in c.changes[-1])
    c.switch_to(p)
    if pae:
        assert "SET_PMD" in c.set_pmd(0x08048000, 0)
    else:
        with pytest.raises(ValueError, match="PAE"):
            c.set_pmd(0x08048000, 0)
    kaddr = li.limits(g)["kernel_address"] + 0x5000
    line = c.map_kernel(kaddr, 0x311)
    assert line.startswith(f"kernel map {kaddr:#010x} -> page ") and g.guest_pte(kaddr) >> 12 == 0x311
    with pytest.raises(ValueError, match="kernel_address"):
        c.map_kernel(0x08048000, 0x311)
    # the view's buttons do the same
    view = c.view
    n = len(c.log)
    c._w_buttons["new process"].click()
    assert len(c.log) == n + 2 and c.log[-1].startswith("NEW_PGTABLE ")
    assert c._w_proc.value == g.current.name and "p" in c._w_proc.options
    c._w_proc.value = "p"
    c._w_buttons["switch to"].click()
    assert c.log[-1].startswith("NEW_PGTABLE p:") and g.current is p
    c._w_vaddr.value, c._w_value.value = "0x8050000", "0x320067"
    c._w_buttons["SET_PTE"].click()
    assert c.log[-1].startswith(f"SET_PTE 0x08050000 = {e(0x320067)}") and g.guest_pte(0x8050000) == 0x320067
    assert "SET_PTE 0x08050000" in c._w_log.value and ("SET_PMD" in c._w_buttons) == pae
    # touch: kernel or user, read or write
    c._w_write.value, c._w_user.value = True, False
    c._w_buttons["touch"].click()
    assert c.log[-1].startswith("touch 0x08050000 (write, kernel)")
    c._w_value.value = "zzz"
    c._w_buttons["SET_PTE"].click()
    assert c.log[-1] == "SET_PTE: not done — 'zzz' in entry is not a number: type one such as 0x00300067"
    c.switch_to(p)
    switcher = li.limits(g)["switcher_addr"]
    line = c.set_pte(switcher, 0x1067)
    assert "KILLED: 'attempt to set pte into Switcher pages'" in line
    assert "the Guest is dead" in c.flush_all()
    assert repr(c).startswith("HypercallConsole: ")
    # Reset: a fresh copy of the Guest as it was when the console was made
    c._w_buttons["Reset"].click()
    assert c.guest is not g and c.guest.dead is None and c.log[-1].startswith("Reset")
    assert "NEW_PGTABLE p:" in c.switch_to(p) and c.guest.dead is None


def _mark_pixels(fig) -> int:
    """How many pixels of the PNG are the stepper's mark red."""
    import io

    import numpy as np
    from matplotlib.colors import to_rgb
    from PIL import Image

    png = Image.open(io.BytesIO(fig._repr_png_())).convert("RGB")
    px = np.asarray(png).astype(int)
    red = np.array([round(c * 255) for c in to_rgb(plots.MARK)])
    return int((np.abs(px - red).sum(axis=2) < 40).sum())


@LAYOUTS
def test_stepper_figure_outlines_the_step_entry_in_red(pae):
    from matplotlib.colors import to_rgb

    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    mark = to_rgb(plots.MARK)
    for k, st in enumerate(s.steps):
        fig = s.figure(k)
        info = fig.lguest
        assert info["kind"] == "stepper" and info["step"] == k
        red = [(ax, p) for ax in fig.axes for p in ax.patches if to_rgb(p.get_edgecolor()) == mark]
        if st.kind not in ("read", "write"):
            assert info["mark"] is None and info["marked"] is None and red == []
            continue
        # the entry the step read or wrote, and only it, is outlined in red, in its own walk
        which, where = st.where
        assert info["mark"] == st.where and info["marked"]["which"] == which
        assert s.marked(k) and info["marked"]["where"] == where and info["marked"]["text"] in ("read now", "written now")
        assert len(red) == 1 and red[0][0] is fig.axes[0 if which == "shadow" else 1]
        # the walk drawn says the same: the marked entry is the step of that walk at that place
        state = s.state_at(k)
        walk = li.walk_shadow(state, 0x08048000) if which == "shadow" else li.walk_guest(state, 0x08048000)
        drawn = [w for w in walk if w.where == where]
        assert drawn and info["marked"]["value"] == drawn[0].value and info["marked"]["level"] == drawn[0].level
    # red is the mark's alone: no other patch of any step's figure uses it, and the PNG shows it
    write = max(i for i, st in enumerate(s.steps) if st.kind == "write" and st.where[0] == "shadow")
    quiet = next(i for i, st in enumerate(s.steps) if st.kind == "check")
    assert _mark_pixels(s.figure(write)) > 200 and _mark_pixels(s.figure(quiet)) == 0
    others = {to_rgb(c) for ax in s.figure(write).axes for p in ax.patches
              for c in (p.get_edgecolor(), p.get_facecolor()) if to_rgb(p.get_edgecolor()) != mark}
    assert mark not in others


def _count_in(line: str) -> tuple[int, int]:
    """(shadow entries written, no-op stores) as a console log line states them."""
    import re

    m = re.search(r": (\d+) shadow entr(?:y|ies) written(?: \(and (\d+) no-op stores?: the value already there\))?,", line)
    assert m, line
    return int(m.group(1)), int(m.group(2) or 0)


@LAYOUTS
def test_console_counts_the_shadow_entries_it_lists(pae):
    g = Guest(pae=pae, seed=1)
    c = widgets.HypercallConsole(g)
    c.switch_to(g.new_process("p"))
    c.set_pte(0x08048000, 0x300 << 12 | 0x07)
    noops_seen = 0
    for act in (lambda: c.touch(0x08048000, user=True), lambda: c.set_pte(0x08049000, 0x301 << 12 | 0x27),
                c.flush_user, lambda: c.touch(0xC0100000), c.flush_all):
        line = act()
        written, noop = _count_in(line)
        listed = [x for x in c.changes[-1] if x.startswith("shadow frame")]
        stores = [w for w in c.last_trace.writes() if w[0] == "shadow"]
        assert written == len(listed) == sum(1 for w in stores if (w[2] or 0) != w[3]), (line, listed)
        assert noop == len(stores) - written, line
        for x in listed:  # each listed store changed its entry
            old, new = x.split(": ", 1)[1].split(" → ")
            assert old != new, x
        noops_seen += noop
    # the first touch enters the Guest: remove_switcher_percpu_map clears entries already clear
    assert noops_seen > 0
    first_touch = c.log[2]
    assert "(and 2 no-op stores: the value already there)" in first_touch


@LAYOUTS
def test_console_shows_the_real_previous_value_of_each_guest_entry(pae):
    g = Guest(pae=pae, seed=1)
    c = widgets.HypercallConsole(g)
    c.switch_to(g.new_process("p"))
    L = li.layout(g)
    e = (lambda v: f"{v:#018x}") if pae else (lambda v: f"{v:#010x}")
    c.set_pte(0x08048000, 0x300 << 12 | 0x07)
    c.touch(0x08048000, user=True)
    top = 0x08048000 & ~(L.PGDIR_SIZE - 1)
    before = li.walk_guest(g, top)[0]
    assert before.level == "pgd" and before.present
    if pae:
        before = li.walk_guest(g, 0x08048000)[1]
        assert before.level == "pmd" and before.present
        c.set_pmd(0x08048000, 0)
        key, after = "the Guest's pmd for 0x08048000", li.walk_guest(c.guest, 0x08048000)[1].value
    else:
        c.set_pgd(L.pgd_index(0x08048000), 0)
        key, after = f"the Guest's pgd for {top:#010x}", li.walk_guest(c.guest, top)[0].value
    assert after == 0
    shown = [x for x in c.changes[-1] if x.startswith(key)]
    assert shown == [f"{key}: {e(before.value)} → {e(0)}"], c.changes[-1]
    assert not any("— →" in x for x in c.changes[-1])
    # an entry the walk did not reach before (no PTE page yet) is "—" before, and only then
    c.set_pte(0x0C048000, 0x302 << 12 | 0x07)
    changed = dict(x.split(": ", 1) for x in c.changes[-1] if x.startswith("the Guest's"))
    assert changed["the Guest's pte for 0x0c048000"] == f"— → {e(0x302007)}"
    deepest_above = "pmd" if pae else "pgd"
    old, new = changed[f"the Guest's {deepest_above} for 0x0c048000"].split(" → ")
    assert old == e(0) and new != e(0)


@LAYOUTS
def test_console_reaches_set_pgd_at_ptrs_per_pgd(pae):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    c = widgets.HypercallConsole(g)
    c.switch_to(p)
    limit = li.ptrs_per_pgd(g)
    line = c.set_pgd(limit, 0)
    assert line.startswith(f"SET_PGD [{limit:#05x}] (PTRS_PER_PGD: no entry to write, the hypercall only)")
    assert [e.args for e in c.last_trace if e.kind == "call" and e.func == "guest_set_pgd"][0]["idx"] == limit
    # one past it the Host's own check refuses: the Guest is killed
    assert "KILLED" in c.set_pgd(limit + 1, 0)


def test_console_scripted_on_another_guest_does_not_kill_this_one():
    g1, g2 = Guest(pae=False, seed=1), Guest(pae=False, seed=1)
    shown, script = widgets.HypercallConsole(g1), widgets.HypercallConsole(g2)
    script.switch_to(g2.new_process("p"))
    assert "KILLED" in script.set_pte(li.limits(g2)["switcher_addr"], 0x1067)
    assert shown.guest.dead is None and "the Guest is dead" not in shown.touch(0xC0000000)


@LAYOUTS
def test_stepper_pictures_change_only_when_a_table_does(pae):
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    writes = [st.index for st in s.steps if st.kind in ("enter", "write")]
    for k in range(len(s.steps)):
        assert s.changed_at(k) == max([w for w in writes if w <= k], default=0)
    k = writes[-1] - 1   # just before the last write: the shadow PTE is there, the Guest's A/D not yet
    assert li.walk_shadow(s.state_at(k), 0x08048000)[-1].present
    assert s._pictures[s.changed_at(k)].shadow == li.walk_shadow(s.state_at(k), 0x08048000)
    assert s.figure(k).axes  # the matplotlib version, for stored pictures


@LAYOUTS
def test_fault_stepper_move_benchmark(benchmark, pae):
    """Moving to a step that changed a table: the picture is ready, only sent."""
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    s.view
    changing = [st.index for st in s.steps if st.kind == "write"][:2]

    def one_step():
        s.go(changing[0] if s.position != changing[0] else changing[1])

    benchmark(one_step)
    assert s.position in changing and s._w_out.value == s.picture_html()
