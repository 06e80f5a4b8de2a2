"""Each known flaw of page_tables.c, reproduced by the model exactly as the C behaves.

See lguest_book/flaws.py for the explanations; these tests pin down the evidence, so the
model can never quietly "fix" one of them (the book teaches them)."""

import pytest

from lguest_book import flaws
from lguest_book.x86 import _PAGE_DIRTY, _PAGE_RW

LAYOUTS = [pytest.param(False, id="nonpae"), pytest.param(True, id="pae")]


def test_catalogue_is_complete_and_named():
    keys = [f.key for f in flaws.FLAWS]
    assert keys == ["set_pgd_bound", "double_release", "switcher_oops", "writable_not_dirty",
                    "pinned_not_present", "stack_pages", "pat_is_pse", "unaligned_kernel_address",
                    "nx_dropped"]
    with pytest.raises(KeyError, match="no flaw called 'nope'"):
        flaws.flaw("nope")


def test_set_pgd_bound_nonpae_frees_a_frame_the_guest_names():
    ev = flaws.flaw("set_pgd_bound").demo(False)
    assert ev["killed"] is None  # idx == 1024 passes the bound test
    assert ev["frame_after_top_level"] == ev["last_slot_pte_page"]
    # three fake present entries -> three put_page() calls on the victim frame (count 1)
    assert ev["victim_refs_before"] == 1
    assert ev["victim_refs_after"] == 1 - ev["fake_entries"]
    assert len(ev["anomalies"]) == 2


def test_set_pgd_bound_pae_touches_a_zero_entry():
    ev = flaws.flaw("set_pgd_bound").demo(True)
    assert ev["killed"] is None
    assert ev["switcher_refs_after"] == ev["switcher_refs_before"]


@pytest.mark.parametrize("pae", LAYOUTS)
def test_double_release_frees_a_page_the_launcher_still_maps(pae):
    ev = flaws.flaw("double_release").demo(pae)
    assert ev["killed"] == "bad page table entry"
    assert ev["refs_while_mapped"] == 2  # the Launcher's mapping + the shadow PTE
    assert ev["refs_after_kill"] == 1  # released by __guest_set_pte ...
    assert ev["stale_shadow_entry"] & 1  # ... but the entry was left present
    assert ev["refs_after_teardown"] == 0  # released again at teardown
    assert ev["freed_while_launcher_maps_it"]


@pytest.mark.parametrize("pae", LAYOUTS)
def test_switcher_slot_of_cached_pgdir_oopses_the_host(pae):
    ev = flaws.flaw("switcher_oops").demo(pae)
    assert ev["switcher_mapped_flag"] and not ev["switcher_really_mapped"]
    assert ev["touch"] == "killed"
    assert ev["oopses"] == [
        "BUG: unable to handle kernel NULL pointer dereference "
        "(in remove_switcher_percpu_map, called from map_switcher_in_guest)"
    ]
    assert ev["killed"].startswith("Launcher killed by a host oops")


@pytest.mark.parametrize("pae", LAYOUTS)
def test_accessed_shortcut_makes_clean_pages_writable(pae):
    ev = flaws.flaw("writable_not_dirty").demo(pae)
    assert ev["guest_pte"] & _PAGE_RW and not ev["guest_pte"] & _PAGE_DIRTY
    assert ev["shadow_writable"]
    assert ev["write_faults"] == 0
    assert not ev["guest_sees_dirty"]


@pytest.mark.parametrize("pae", LAYOUTS)
def test_non_present_pte_pins_its_page_forever(pae):
    ev = flaws.flaw("pinned_not_present").demo(pae)
    # one reference for the Launcher's mapping, plus one per SET_PTE
    assert ev["refs_while_running"] == 1 + ev["set_ptes"]
    assert ev["refs_after_teardown"] == ev["refs_while_running"] != ev["expected_after_teardown"]


@pytest.mark.parametrize("pae", LAYOUTS)
def test_stack_pages_are_pinned_after_the_kill(pae):
    ev = flaws.flaw("stack_pages").demo(pae)
    assert ev["killed"] == "bad stack pages 64"
    assert ev["pages_pinned_anyway"] == ev["pages_asked"] == 64
    assert ev["model_stops_after"] == 2**20


@pytest.mark.parametrize("pae", LAYOUTS)
def test_pat_bit_kills_and_device_pages_lose_their_exit(pae):
    ev = flaws.flaw("pat_is_pse").demo(pae)
    assert ev["ram_without_bit7"] == "ok" and ev["device_without_bit7"] == "mmio"
    assert ev["ram_with_bit7"] == ev["device_with_bit7"] == "killed"
    assert ev["ram_with_bit7_killed"] == ev["device_with_bit7_killed"] == "bad page table entry"


def test_unaligned_kernel_address_leaves_user_entries_after_a_flush_under_pae():
    ev = flaws.flaw("unaligned_kernel_address").demo(True)
    assert ev["pgd_index"] == 2 and not ev["on_boundary"]
    assert ev["guest_pte_after"] == 0 and ev["shadow_left_after_flush"]
    assert ev["access_after_flush"] == "ok" and ev["faults"] == 0


def test_unaligned_kernel_address_is_exact_without_pae():
    ev = flaws.flaw("unaligned_kernel_address").demo(False)
    assert ev["on_boundary"] and not ev["shadow_left_after_flush"]
    assert ev["access_after_flush"] == "guest-fault"


def test_nx_never_reaches_a_shadow_pte_even_on_an_nx_host():
    ev = flaws.flaw("nx_dropped").demo(True)
    assert ev["host_supports_nx"] and ev["guest_pte_nx"] and ev["guest_pte_after_fault_nx"]
    assert not ev["shadow_from_fault_nx"] and not ev["shadow_from_shortcut_nx"]
    assert ev["host_regs_page_nx"]  # the Host's own entry keeps it


def test_nx_host_choice_is_only_a_host_property():
    from lguest_book.x86 import PAE, layout_for
    assert layout_for(True) is PAE and layout_for(True, host_nx=True).host_nx
    assert not layout_for(False, host_nx=True).host_nx  # no NX bit without PAE
