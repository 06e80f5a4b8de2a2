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


def count(n: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, in decimal: ``"1 step"``, ``"3 steps"``, ``"2 misses"``."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def ptr(frame_number: int, idx: int, layout=None, *, pae=None) -> str:
    """A pointer to an entry, the model's ``(frame, index)`` pair: ``frame 0x08016[0x048]``."""
    return f"frame {frame(frame_number, layout, pae=pae)}[{index(idx)}]"


# --- numbers that print the rule's way ----------------------------------------------------
# The read-only views (``inspect``, traces, flaws) hand out plain ints a reader compares and
# computes with; these subclasses stay ints (equal, hashable, usable in arithmetic, in
# ``%x``/``{:#x}`` and in JSON) and only change how ``repr``/``str``/``f"{x}"`` show them.
# Arithmetic on them gives plain ints again.


class Hex(int):
    """An int shown as ``0x`` and a fixed number of hex digits (negative values, such as
    ``-1`` for "no address", show in decimal)."""

    __slots__ = ()
    digits = 8

    def __repr__(self) -> str:
        value = int(self)
        return f"0x{value:0{self.digits}x}" if value >= 0 else str(value)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        # a presentation type (x, d, #010x...) formats the int; an alignment or width alone
        # (">12", "<18") lays out the hex text
        if spec and spec[-1] in "bcdoxXneEfFgG%":
            return int.__format__(int(self), spec)
        return format(self.__repr__(), spec.rstrip("s"))

    def __reduce__(self):
        return (type(self), (int(self),))


class Vaddr(Hex):
    """A 32-bit virtual address."""

    __slots__ = ()
    digits = 8


class Index(Hex):
    """An index into a page-table page."""

    __slots__ = ()
    digits = 3


class Hex8(Hex):
    """An entry or physical address of the non-PAE layout (8 digits)."""

    __slots__ = ()
    digits = 8


class Hex16(Hex):
    """An entry or physical address of the PAE layout (16 digits)."""

    __slots__ = ()
    digits = 16


class Frame5(Hex):
    """A frame number of the non-PAE layout (5 digits)."""

    __slots__ = ()
    digits = 5


class Frame8(Hex):
    """A frame number of the PAE layout (8 digits)."""

    __slots__ = ()
    digits = 8


class Ptr(tuple):
    """A pointer to an entry, ``(frame, index)``, shown as :func:`ptr` shows it; still a pair
    (``frame, index = p`` and ``p == (frame, index)`` work)."""

    __slots__ = ()
    pae = False

    def __new__(cls, frame_number: int, idx: int):
        return tuple.__new__(cls, (_frame_type(cls.pae)(frame_number), Index(idx)))

    def __repr__(self) -> str:
        return ptr(self[0], self[1], pae=self.pae)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return self.__repr__() if not spec else format(self.__repr__(), spec)

    def __reduce__(self):
        return (type(self), (int(self[0]), int(self[1])))


class Ptr8(Ptr):
    __slots__ = ()
    pae = False


class Ptr16(Ptr):
    __slots__ = ()
    pae = True


def _frame_type(pae: bool):
    return Frame8 if pae else Frame5


def as_vaddr(value):
    """``value`` as a :class:`Vaddr` (None stays None)."""
    return None if value is None else Vaddr(value)


def as_index(value):
    return None if value is None else Index(value)


def as_entry(value, layout=None, *, pae=None):
    """``value`` as an entry of the layout's width (None stays None)."""
    return None if value is None else (Hex16 if _pae(layout, pae) else Hex8)(value)


as_paddr = as_entry  # physical addresses are as wide as entries


def as_frame(value, layout=None, *, pae=None):
    return None if value is None else _frame_type(_pae(layout, pae))(value)


def as_ptr(pointer, layout=None, *, pae=None):
    """A ``(frame, index)`` pair as a :class:`Ptr` (None, the NULL pointer, stays None)."""
    if pointer is None:
        return None
    return (Ptr16 if _pae(layout, pae) else Ptr8)(pointer[0], pointer[1])


__all__ += ["Hex", "Vaddr", "Index", "Hex8", "Hex16", "Frame5", "Frame8", "Ptr", "as_vaddr", "as_index",
            "as_entry", "as_paddr", "as_frame", "as_ptr"]
