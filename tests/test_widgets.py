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
    assert kinds[0] == "fault" and kinds[-1] == "result"
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
    shadow_pte_write = [i for i in writes if "shadow entry 72 " in s.steps[i].text][0]
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


def test_stepper_shows_refusals_and_kills():
    g = Guest(pae=False, seed=1)
    p = g.new_process("p")
    g.switch_to(p)
    g.set_pte(0x08048000, 0x300 << 12 | 0x05)  # present, user, read-only, not accessed
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    assert s.outcome == "guest"
    assert any(st.text == "demand_page: write to a read-only page? yes" for st in s.steps)
    g.set_pte(0x08048000, (g.lg.device_limit + 9) << 12 | 0x07)
    s.reset()
    assert s.outcome == "killed"
    assert [st.text for st in s.steps if st.kind == "kill"] == ["kill_guest: 'bad page table entry'"]
    assert g.dead is None  # only the stepper's copy died
    with pytest.raises(ValueError, match="vaddr"):
        s.reset(vaddr=1 << 32)
    with pytest.raises(ValueError, match="k="):
        s.go(len(s.steps))


def test_stepper_view_has_the_controls_and_a_plot():
    g = guest_with_page(False)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    view = s.view
    buttons = {b.description for box in view.children if hasattr(box, "children") for b in box.children
               if type(b).__name__ == "Button"}
    assert buttons == {"Back", "Step", "Run to end", "Reset"}
    s._w_buttons["Step"].click()
    s._w_buttons["Step"].click()
    assert s.position == 2
    assert "step 2 of" in s._w_text.value and "lgb-step-text" in s._w_text._dom_classes
    assert "page_tables.py:" in s._w_source.value
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
    if pae:
        assert "SET_PMD" in c.set_pmd(0x08048000, 0)
    else:
        with pytest.raises(ValueError, match="PAE"):
            c.set_pmd(0x08048000, 0)
    switcher = li.limits(g)["switcher_addr"]
    line = c.set_pte(switcher, 0x1067)
    assert "KILLED: 'attempt to set pte into Switcher pages'" in line
    assert "the Guest is dead" in c.flush_all()
    assert repr(c).startswith("HypercallConsole: ")


def test_fault_stepper_redraw_benchmark(benchmark):
    """Redraw after one step (state at that step + PNG of the walks): target <= 100 ms."""
    g = guest_with_page(False)
    s = widgets.FaultStepper(g, 0x08048000, write=True, user=True)
    s.view

    def one_step():
        s.go(1 if s.position != 1 else 2)

    benchmark(one_step)
    assert s.position in (1, 2)
