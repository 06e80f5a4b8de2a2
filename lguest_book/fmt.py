"""One way to print a number: the rule every repr, CLI line, trace text, widget label and plot
label of the package follows.

* **Virtual addresses** are 32 bits in both layouts: ``0x`` and 8 hex digits (``0xc0000000``).
* **Entries** (PTE, PMD, PGD values) are as wide as the layout's entry: 8 hex digits without
  PAE, 16 with PAE (``0x0000000008016067``).
* **Physical addresses** (guest-physical or host-physical) are as wide as the layout's
  physical addresses: 8 hex digits without PAE, 16 with PAE.
* **Frame numbers** (pfns, guest or host) are as wide as the layout's frame numbers: 5 hex
  digits without PAE (20 bits), 8 with PAE (32 bits of a 44-bit address).
* **Indices** into a table (top-level, PMD, PTE index; a pgdir slot is a small count, not an
  index into a page) are ``0x`` and 3 hex digits (``0x300``).
* **Counts** (reference counts, faults, pages, operations, sizes in pages) are decimal: they
  are not addresses.

Kill messages are the C's own text, printed by the kernel's printf rules (see
:mod:`lguest_book.lguest`), and are not reformatted by this module.

Each function takes the layout (``lguest_book.x86.NONPAE``/``PAE``) where the width depends on
it, or ``pae=True/False``.
"""

from __future__ import annotations

__all__ = ["addr", "vaddr", "paddr", "entry", "frame", "index", "ptr", "entry_digits", "frame_digits"]


def _pae(layout=None, pae=None) -> bool:
    if layout is not None:
        return bool(layout.pae)
    return bool(pae)


def entry_digits(layout=None, *, pae=None) -> int:
    """Hex digits of an entry (and of a physical address) in this layout: 8 or 16."""
    return 16 if _pae(layout, pae) else 8


def frame_digits(layout=None, *, pae=None) -> int:
    """Hex digits of a frame number in this layout: 5 or 8."""
    return 8 if _pae(layout, pae) else 5


def vaddr(value: int) -> str:
    """A 32-bit virtual address: ``0x`` and 8 hex digits."""
    return f"{value:#010x}"


addr = vaddr  # the common case: a virtual address


def paddr(value: int, layout=None, *, pae=None) -> str:
    """A physical address, as wide as the layout's physical addresses."""
    return f"0x{value:0{entry_digits(layout, pae=pae)}x}"


def entry(value: int, layout=None, *, pae=None) -> str:
    """A page-table entry, as wide as the layout's entries."""
    return f"0x{value:0{entry_digits(layout, pae=pae)}x}"


def frame(value: int, layout=None, *, pae=None) -> str:
    """A frame number, as wide as the layout's frame numbers."""
    return f"0x{value:0{frame_digits(layout, pae=pae)}x}"


def index(value: int) -> str:
    """An index into a page-table page: ``0x`` and 3 hex digits."""
    return f"{value:#05x}"


def ptr(frame_number: int, idx: int, layout=None, *, pae=None) -> str:
    """A pointer to an entry, the model's ``(frame, index)`` pair: ``frame 0x08016[0x048]``."""
    return f"frame {frame(frame_number, layout, pae=pae)}[{index(idx)}]"
