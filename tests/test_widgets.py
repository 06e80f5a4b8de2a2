"""Widget logic, driven without a browser; and the redraw benchmark."""

import matplotlib

matplotlib.use("Agg")

import pytest

from lguest_book import inspect as li
from lguest_book import widgets
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
    # the PTE index of 0x08048000 is 72 (0x048): the trace hands the widget typed indices
    shadow_pte_write = [i for i in writes if "shadow entry 72 " in s.steps[i].text
                        or "shadow entry 0x048 " in s.steps[i].text][0]
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
    assert relative == {(None, "inspect"), (None, "plots"), ("trace", "Tracer")}
    package = pathlib.Path(lguest_book.__file__).parent
    for name in ("x86", "host", "lguest", "page_tables", "hypercalls", "mmu", "guest", "trace", "inspect"):
        mod = ast.parse((package / f"{name}.py").read_text())
        names = {a.name for n in ast.walk(mod) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        names |= {n.module or "" for n in ast.walk(mod) if isinstance(n, ast.ImportFrom)}
        assert not any("plots" in x or "widgets" in x for x in names), name


@LAYOUTS
def test_stepper_view_has_the_controls_and_a_plot(pae):
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    view = s.view
    buttons = {b.description for box in view.children if hasattr(box, "children") for b in box.children
               if type(b).__name__ == "Button"}
    assert buttons == {"Back", "Step", "Run to end", "Reset"}
    for _ in range(3):
        s._w_buttons["Step"].click()
    assert s.position == 3 and s.current.kind == "check"
    assert "step 3 of" in s._w_text.value and s.current.text in s._w_text.value and "lgb-step-text" in s._w_text._dom_classes
    assert f"page_tables.py:{s.current.lineno}" in s._w_source.value and s.current.lineno > 0
    assert "vaddr" in s.current.source_line  # the model's line, read through inspect.source_line
    assert s._w_image.value[:8] == b"\x89PNG\r\n\x1a\n"
    s._w_buttons["Run to end"].click()
    assert s.at_end and s._w_buttons["Step"].disabled
    s._w_addr.value = "0x8049000"
    s._w_buttons["Reset"].click()
    assert s.vaddr == 0x8049000 and s.outcome == "guest"  # nothing mapped there
    s._w_addr.value = "nonsense"
    s._w_buttons["Reset"].click()
    assert "invalid literal" in s._w_error.value or "base" in s._w_error.value
    bundle = s._repr_mimebundle_()
    assert bundle["text/plain"].startswith("FaultStepper(0x8049000, write, user): step 0 of")
    assert "0x7f" not in bundle["text/plain"]  # no memory addresses


@LAYOUTS
def test_table_explorer_selects_and_decodes(pae):
    g = guest_with_page(pae, accessed=True)
    g.touch(0x08048000, user=True)
    e = widgets.TableExplorer(g)
    assert e.level == "pgd" and e.entries
    entry = e.select(level="pte", vaddr=0x08048000)
    assert entry.index == 0x48 and entry.present
    assert "host frame" in e.detail and "guest 0x300" in e.detail
    guest_entry = e.select(which="guest")
    assert guest_entry.frame == 0x300 and "guest frame 0x300" in e.detail
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


@LAYOUTS
def test_hypercall_console_reports_what_the_host_did(pae):
    g = Guest(pae=pae, seed=1)
    p = g.new_process("p")
    c = widgets.HypercallConsole(g)
    c.switch_to(p)
    c.touch(0x08048000, user=True)
    assert "guest-fault" in c.log[-1]
    c.set_pte(0x08048000, 0x300 << 12 | 0x07)          # not accessed: nothing shadowed yet
    assert not li.walk_shadow(g, 0x08048000)[-1].present
    assert "outcome ok after 1 fault(s)" in c.touch(0x08048000, user=True)
    line = c.set_pte(0x08049000, 0x301 << 12 | 0x67)   # accessed+dirty: the shortcut maps it now
    assert line.startswith(f"SET_PTE 0x8049000 = {0x301067:#x}: 1 shadow entries written, 0 Guest entries")
    assert li.walk_shadow(g, 0x08049000)[-1].present
    line = c.flush_user()
    assert "2 unpinned" in line and not li.walk_shadow(g, 0x08049000)[-1].present
    c.flush_all()
    line = c.new_pgtable(name="q")
    assert c.log[-2].startswith("the Guest built a new top level for q") and line.startswith("NEW_PGTABLE q:")
    assert li.pgdir_cache(g)[li.current_slot(g)]["gpgdir"] != p.gpgdir
    c.switch_to(p)
    if pae:
        assert "SET_PMD" in c.set_pmd(0x08048000, 0)
    else:
        with pytest.raises(ValueError, match="PAE"):
            c.set_pmd(0x08048000, 0)
    kaddr = li.limits(g)["kernel_address"] + 0x5000
    line = c.map_kernel(kaddr, 0x311)
    assert line.startswith(f"kernel map {kaddr:#x} -> page 0x311: ") and g.guest_pte(kaddr) >> 12 == 0x311
    with pytest.raises(ValueError, match="kernel_address"):
        c.map_kernel(0x08048000, 0x311)
    # the view's buttons do the same
    view = c.view
    n = len(c.log)
    c._w_buttons["new process"].click()
    assert len(c.log) == n + 2 and c.log[-1].startswith("NEW_PGTABLE ")
    c._w_vaddr.value, c._w_value.value = "0x8050000", "0x320067"
    c._w_buttons["SET_PTE"].click()
    assert c.log[-1].startswith("SET_PTE 0x8050000 = 0x320067: ") and g.guest_pte(0x8050000) == 0x320067
    assert "SET_PTE 0x8050000" in c._w_log.value and ("SET_PMD" in c._w_buttons) == pae
    c._w_value.value = "zzz"
    c._w_buttons["SET_PTE"].click()
    assert c.log[-1].startswith("SET_PTE: not done")
    c.switch_to(p)
    switcher = li.limits(g)["switcher_addr"]
    line = c.set_pte(switcher, 0x1067)
    assert "KILLED: 'attempt to set pte into Switcher pages'" in line
    assert "the Guest is dead" in c.flush_all()
    assert repr(c).startswith("HypercallConsole: ")


@LAYOUTS
def test_stepper_pictures_change_only_when_a_table_does(pae):
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    writes = [st.index for st in s.steps if st.kind in ("enter", "write")]
    for k in range(len(s.steps)):
        assert s.changed_at(k) == max([w for w in writes if w <= k], default=0)
    # the cached picture for a step is the one drawn from the state at that step
    k = writes[-1] - 1   # just before the last write: the shadow PTE is there, the Guest's A/D not yet
    assert li.walk_shadow(s.state_at(k), 0x08048000)[-1].present
    assert s.png(k) == widgets._png(s.figure(k)) and s.png(k) != s.png(writes[-1])


@LAYOUTS
def test_fault_stepper_redraw_benchmark(benchmark, pae):
    """Redraw after a step that changed a table (state at that step + PNG of the walks, no
    cache): target <= 100 ms."""
    g = guest_with_page(pae)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    s.view
    changing = [st.index for st in s.steps if st.kind == "write"][:2]

    def one_step():
        s._pngs.clear()
        s.go(changing[0] if s.position != changing[0] else changing[1])

    benchmark(one_step)
    assert s.position in changing and s._w_image.value == s.png()
