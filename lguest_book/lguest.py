"""The guest's state as lguest's lg.h keeps it, and the few helpers page_tables.c borrows
from the rest of lguest: ``kill_guest``, ``lgread``/``lgwrite`` (core.c), the Launcher-side
``get_user``/``put_user`` on the ``lguest_data`` page, and ``prandom_u32``.

* :class:`Pgdir` is ``struct pgdir``: one cached shadow top level.
* :class:`Lguest` is ``struct lguest``: four ``Pgdir`` slots, the memory limits, the
  kernel address, the stack size, and ``dead`` (the first kill reason, or ``None``).
* :class:`LgCpu` is ``struct lg_cpu``: which slot is current (``cpu_pgd``), whether the
  guest still runs on the made-up linear mapping, its register page, and ``esp1``.

Nothing here imports page_tables: the model's layers only look down.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable

from .host import Host, Launcher, _check_int
from .x86 import PAGE_SIZE, ULONG_MASK

PGDIR_SLOTS = 4  # ARRAY_SIZE(lg->pgdirs)

# Where the fields of "struct lguest_data" live in this model.  The real structure has many
# more fields; only the offsets of the three page_tables.c and the fault path touch matter
# here, and these are the model's own choice (documented, not the kernel's layout).
LGUEST_DATA_CR2 = 0
LGUEST_DATA_RESERVE_MEM = 4
LGUEST_DATA_KERNEL_ADDRESS = 8
LGUEST_DATA_SIZE = 12


class PrandomSource:
    """Where ``prandom_u32()`` gets its numbers: a seeded generator by default, or any
    sequence of 32-bit values a caller supplies (so tests can replay exact evictions)."""

    def __init__(self, seed: int | None = 0, values: Iterable[int] | None = None):
        self._rng = random.Random(seed)
        self._values = None if values is None else iter(list(values))
        self.drawn: list[int] = []

    def __call__(self) -> int:
        if self._values is None:
            value = self._rng.getrandbits(32)
        else:
            try:
                value = next(self._values)
            except StopIteration:
                raise LookupError("prandom_u32: the supplied sequence of values is used up") from None
            _check_int("prandom value", value, 0, ULONG_MASK)
        self.drawn.append(value)
        return value


class Pgdir:
    """struct pgdir: one cached shadow top level."""

    __slots__ = ("gpgdir", "switcher_mapped", "last_host_cpu", "pgdir")

    def __init__(self):
        self.gpgdir = 0  # the Guest's top level this shadows (a guest-physical address)
        self.switcher_mapped = False
        self.last_host_cpu = 0  # lg starts zeroed: 0, not -1, until new_pgdir sets it
        self.pgdir = 0  # host frame of the shadow top level; 0 is NULL

    def __repr__(self) -> str:
        return (
            f"Pgdir(gpgdir={self.gpgdir:#x}, pgdir={self.pgdir:#x}, "
            f"switcher_mapped={self.switcher_mapped}, last_host_cpu={self.last_host_cpu})"
        )


class LgCpu:
    """struct lg_cpu: the parts page_tables.c uses."""

    __slots__ = ("lg", "id", "cpu_pgd", "linear_pages", "regs_page", "esp1", "ss1")

    def __init__(self, lg: "Lguest", id: int):
        self.lg = lg
        self.id = id
        self.cpu_pgd = 0
        self.linear_pages = False
        self.regs_page = 0
        self.esp1 = 0
        self.ss1 = 0


class Lguest:
    """struct lguest: one guest as the host sees it.

    :param host: the :class:`~lguest_book.host.Host` it runs on.
    :param mem_pages: pages of guest memory the Launcher mapped (this is ``pfn_limit``).
    :param mem_base: where the Launcher mapped it in its own address space.
    :param device_limit: the first page beyond the device (I/O) memory; pages from
        ``pfn_limit`` up to here are I/O memory.  Defaults to ``pfn_limit + 256``.
    :param prandom: a :class:`PrandomSource`, a seed (int), or a sequence of 32-bit values.
    """

    __slots__ = (
        "host", "x86", "entry_bytes", "launcher", "mem_base", "pfn_limit", "device_limit",
        "kernel_address", "stack_pages", "lguest_data", "dead", "pgdirs", "cpus", "prandom_u32",
    )

    def __init__(
        self,
        host: Host,
        mem_pages: int,
        mem_base: int = 0x40000000,
        device_limit: int | None = None,
        prandom: PrandomSource | int | Iterable[int] | None = 0,
    ):
        if not isinstance(host, Host):
            raise TypeError(f"host must be a Host, not {type(host).__name__}")
        self.host = host
        self.x86 = host.layout
        self.entry_bytes = host.layout.entry_bytes
        self.launcher = Launcher(host, mem_base, mem_pages)
        self.mem_base = mem_base
        self.pfn_limit = mem_pages
        if device_limit is None:
            device_limit = mem_pages + 256
        self.device_limit = _check_int("device_limit", device_limit, mem_pages, ULONG_MASK)
        self.kernel_address = 0
        self.stack_pages = 0
        self.lguest_data = 0  # a Launcher address, NULL until LHCALL_LGUEST_INIT
        self.dead: str | None = None
        self.pgdirs = [Pgdir() for _ in range(PGDIR_SLOTS)]
        self.cpus = [LgCpu(self, 0)]
        if isinstance(prandom, PrandomSource):
            self.prandom_u32 = prandom
        elif prandom is None or isinstance(prandom, int):
            self.prandom_u32 = PrandomSource(seed=prandom)
        else:
            self.prandom_u32 = PrandomSource(values=prandom)

    @property
    def switcher_addr(self) -> int:
        return self.host.switcher_addr

    def __repr__(self) -> str:
        state = f"dead: {self.dead}" if self.dead else "alive"
        return f"<Lguest {self.x86.name} {self.pfn_limit} pages, {state}>"


# --- printk formats of kill messages -----------------------------------------------------------
# kill_guest() takes a printf format.  These give the exact text the C would produce for the
# conversions lguest uses, so kill reasons compare equal with the C's.
def c_hex(value: int) -> str:
    """``%#lx``: C prints zero as ``0`` (no ``0x``)."""
    return f"{value:#x}" if value else "0"


def c_long(value: int) -> str:
    """``%li``/``%i`` of a 32-bit register: printed as a signed number."""
    value &= ULONG_MASK
    return str(value - (1 << 32) if value & 0x80000000 else value)


def c_ptr(value: int) -> str:
    """The kernel's ``%p`` on 32-bit x86 (Linux 4.7): eight zero-padded hex digits, and
    ``(null)`` right-aligned in the same width for NULL."""
    return f"{value:08x}" if value else "  (null)"


# --- kill_guest (lg.h) ---------------------------------------------------------------------
def kill_guest(cpu: LgCpu, reason: str) -> None:
    """Mark the guest dead.  Only the first reason is kept: later kills change nothing."""
    if cpu.lg.dead is None:
        cpu.lg.dead = reason


# --- lgread / lgwrite (core.c) -----------------------------------------------------------
def lguest_address_ok(lg: Lguest, addr: int, length: int) -> bool:
    """The access [addr, addr+len) lies below pfn_limit and does not wrap (32-bit math)."""
    end = (addr + length) & ULONG_MASK
    return end <= (lg.pfn_limit * PAGE_SIZE) & ULONG_MASK and end >= addr


def lgread(cpu: LgCpu, addr: int, type_name: str) -> int:
    """Read a ``pgd_t``/``pmd_t``/``pte_t`` from guest-physical ``addr``.

    A bad address kills the guest and reads as zero.  ``type_name`` names the C type read;
    all three are one entry wide in a given layout.
    """
    lg = cpu.lg
    size = lg.entry_bytes
    end = (addr + size) & 0xFFFFFFFF
    if addr <= end <= (lg.pfn_limit << 12) & 0xFFFFFFFF:  # lguest_address_ok()
        # copy_from_user(mem_base + addr): first the common case, an aligned entry of a page
        # held as entries (see host.py), then the general copy.
        if not addr & (size - 1):  # a whole entry
            try:
                return lg.host.tables[lg.launcher.frames[addr >> 12]][(addr & 0xFFF) // size]
            except (KeyError, IndexError):  # not a page held as entries: the general copy
                pass
        value = lg.launcher.read_guest(addr, size)
        if value is not None:
            return value
    kill_guest(cpu, f"bad read address {c_hex(addr)} len {size}")
    return 0


def lgwrite(cpu: LgCpu, addr: int, type_name: str, value: int) -> None:
    """Write a ``type_name`` entry to guest-physical ``addr``; a bad address kills the guest."""
    lg = cpu.lg
    size = lg.entry_bytes
    end = (addr + size) & 0xFFFFFFFF
    if addr <= end <= (lg.pfn_limit << 12) & 0xFFFFFFFF:  # lguest_address_ok()
        # copy_to_user(mem_base + addr): the common case first, as in lgread.
        launcher = lg.launcher
        index = addr >> 12
        if not addr & (size - 1) and index not in launcher.readonly:  # a whole, writable entry
            try:
                lg.host.tables[launcher.frames[index]][(addr & 0xFFF) // size] = value
            except (KeyError, IndexError):  # not a page held as entries: the general copy
                pass
            else:
                if lg.host.tlb:  # a cached walk may have read this entry
                    lg.host.tlb.clear()
                return
        if launcher.write_guest(addr, size, value):
            return
    kill_guest(cpu, f"bad write address {c_hex(addr)} len {size}")


# --- get_user / put_user on the lguest_data page --------------------------------------------
def get_user_u32(lg: Lguest, uaddr: int) -> tuple[int, int]:
    """get_user() of a 32-bit field at Launcher address ``uaddr``: (error, value)."""
    value = lg.launcher.read_int(uaddr & ULONG_MASK, 4)
    return (0, value) if value is not None else (-14, 0)  # -EFAULT


def put_user_u32(lg: Lguest, value: int, uaddr: int) -> int:
    """put_user() of a 32-bit value; 0 on success, -EFAULT if the address is bad."""
    ok = lg.launcher.write_int(uaddr & ULONG_MASK, 4, value & ULONG_MASK)
    return 0 if ok else -14


Prandom = Callable[[], int]
