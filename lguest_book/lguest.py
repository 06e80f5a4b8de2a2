"""The guest's state as lguest's lg.h keeps it, and the few helpers page_tables.c borrows
from the rest of lguest: ``kill_guest``, ``lgread``/``lgwrite`` (core.c), the Launcher-side
``get_user``/``put_user`` on the ``lguest_data`` page, and ``prandom_u32``.

* :class:`Pgdir` is ``struct pgdir``: one cached shadow top level.
* :class:`Lguest` is ``struct lguest``: four ``Pgdir`` slots, the memory limits, the
  kernel address, the stack size, and ``dead`` (the first kill reason, or ``None``).
* :class:`LgCpu` is ``struct lg_cpu``: which slot is current (``cpu_pgd``), whether the
  guest still runs on the made-up linear mapping, its register page, and ``esp1``.
* :func:`kasprintf` prints a kill message by the kernel's printf rules (lib/vsprintf.c), not
  Python's or glibc's: ``%#lx`` of 0 is ``0x0``.
* :func:`pgd_flags`, :func:`pgd_pfn`, :func:`pmd_flags`, :func:`pmd_pfn` are lg.h's own
  accessors, which hide the kernel's (PSE-aware) ones from page_tables.c.

Nothing here imports page_tables: the model's layers only look down.
"""

from __future__ import annotations

import random
import re
from typing import Callable, Iterable

from . import fmt as _fmt
from .host import Host, Launcher, _check_int
from .x86 import PAGE_SHIFT, PAGE_SIZE, ULONG_MASK

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
            f"Pgdir(gpgdir={_fmt.paddr(self.gpgdir, pae=self.pae)}, pgdir={_fmt.frame(self.pgdir, pae=self.pae)}, "
            f"switcher_mapped={self.switcher_mapped}, last_host_cpu={self.last_host_cpu})"
        )

    pae = False  # for printing only: a PAE guest's slots are PgdirPAE


class PgdirPAE(Pgdir):
    """A PAE guest's ``struct pgdir`` (the same fields; it prints 16-digit addresses)."""

    __slots__ = ()
    pae = True


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

    def __repr__(self) -> str:
        return f"<LgCpu {self.id} of a {self.lg.x86.name} guest, slot {self.cpu_pgd}>"


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
        self.pgdirs = [(PgdirPAE if host.layout.pae else Pgdir)() for _ in range(PGDIR_SLOTS)]
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


# --- kill messages: the kernel's printf (lib/vsprintf.c, Linux 4.7) -----------------------------
# kill_guest() hands its format to kasprintf(), so a kill reason is printed by the kernel's
# vsnprintf(), not by glibc's.  The two differ where lguest's messages go: the kernel's
# number() always gives base 16 its "0x" when '#' is asked for, so %#lx of 0 is "0x0"
# (glibc prints "0"), and %p is the kernel's own (8 zero-padded hex digits on 32-bit x86,
# "(null)" right-aligned in that width for NULL).  kasprintf() below implements the
# conversions lguest's messages use, from those rules (written for this project: see
# https://elixir.bootlin.com/linux/v4.7/source/lib/vsprintf.c, format_decode(), number(),
# string(), pointer()), on a 32-bit machine: int and long are 32 bits, long long 64.
_CONVERSION = re.compile(r"%([-+ #0]*)(\d+)?(?:\.(\d+))?(hh|h|ll|l|z)?([diouxXpcs%])")
_POINTER_WIDTH = 8  # 2 * sizeof(void *) on 32-bit x86


def _number(num: int, base: int, signed: bool, flags: str, width: int, precision: int, upper: bool) -> str:
    """lib/vsprintf.c number(): sign, "0x"/"0" prefix, zero/space padding, digits."""
    left = "-" in flags
    zeropad = "0" in flags and not left
    sign = ""
    if signed:
        if num < 0:
            sign, num = "-", -num
        elif "+" in flags:
            sign = "+"
        elif " " in flags:
            sign = " "
    width -= len(sign)
    prefix = ""
    if "#" in flags and base != 10:
        if base == 16:
            prefix = "0X" if upper else "0x"  # base 16 gets its prefix even for zero
        elif num != 0:
            prefix = "0"  # octal: "0" only for a non-zero value
    width -= len(prefix)
    digits = {8: f"{num:o}", 10: f"{num:d}", 16: f"{num:X}" if upper else f"{num:x}"}[base]
    precision = max(precision, len(digits))
    width -= precision
    body = sign + prefix + "0" * (precision - len(digits)) + digits
    if left:
        return body + " " * max(width, 0)
    if zeropad:
        return sign + prefix + "0" * max(width, 0) + "0" * (precision - len(digits)) + digits
    return " " * max(width, 0) + body


def _string(text: str, flags: str, width: int, precision: int) -> str:
    """lib/vsprintf.c string(): at most ``precision`` characters, padded to ``width``."""
    if precision >= 0:
        text = text[:precision]
    pad = " " * max(width - len(text), 0)
    return text + pad if "-" in flags else pad + text


def kasprintf(fmt: str, *args) -> str:
    """The text ``kasprintf(GFP_ATOMIC, fmt, args...)`` makes in a 32-bit Linux 4.7 kernel.

    Integers are given as Python ints and converted to the C type the length modifier names
    (``%i`` of 0xffffffff is ``-1``; ``%lx`` of -1 is ``ffffffff``).  ``%p`` takes an int
    address (0 is NULL) and prints it the kernel's way; ``%s`` takes a str.
    """
    out, pos, args = [], 0, list(args)
    for m in _CONVERSION.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, precision, length, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if not args:
            raise TypeError(f"kasprintf: too few arguments for {fmt!r}")
        arg = args.pop(0)
        width = int(width) if width else -1
        precision = int(precision) if precision is not None else -1
        if conv == "s":
            out.append(_string(str(arg), flags, width, precision))
        elif conv == "c":
            out.append(_string(chr(arg & 0xFF), flags, width, -1))
        elif conv == "p":
            ptr = arg & ULONG_MASK
            if not ptr:  # pointer(): NULL prints "(null)" as wide as a pointer
                out.append(_string("(null)", flags, _POINTER_WIDTH if width < 0 else width, -1))
            elif width < 0:  # a plain %p: zero-padded to the width of a pointer
                out.append(_number(ptr, 16, False, flags + "0", _POINTER_WIDTH, -1, False))
            else:
                out.append(_number(ptr, 16, False, flags, width, -1, False))
        else:
            bits = 64 if length == "ll" else 8 if length == "hh" else 16 if length == "h" else 32
            value = arg & ((1 << bits) - 1)
            signed = conv in "di"
            if signed and value >> (bits - 1):
                value -= 1 << bits
            base = {"o": 8, "x": 16, "X": 16}.get(conv, 10)
            out.append(_number(value, base, signed, flags, width, precision, conv == "X"))
    if args:
        raise TypeError(f"kasprintf: too many arguments for {fmt!r}")
    out.append(fmt[pos:])
    return "".join(out)


# The three conversions the model's kill messages use most, as one-argument helpers.
def c_hex(value: int) -> str:
    """``%#lx``: the kernel prints zero as ``0x0`` (base 16 always gets its prefix)."""
    return kasprintf("%#lx", value)


def c_long(value: int) -> str:
    """``%li``/``%i`` of a 32-bit register: printed as a signed number."""
    return kasprintf("%li", value)


def c_ptr(value: int) -> str:
    """The kernel's ``%p`` on 32-bit x86 (Linux 4.7): eight zero-padded hex digits, and
    ``(null)`` right-aligned in the same width for NULL."""
    return kasprintf("%p", value)


# --- lg.h's own page-table accessors -----------------------------------------------------------
# drivers/lguest/lg.h replaces the kernel's pgd_flags/pgd_pfn/pmd_flags/pmd_pfn with plain bit
# arithmetic, whatever the entry's PSE bit says (https://elixir.bootlin.com/linux/v4.7/source/
# drivers/lguest/lg.h#L148): the flags are the low 12 bits (``val & ~PAGE_MASK``; PAGE_MASK is
# an unsigned long, so under PAE the high bits of a 64-bit entry are not flags here), and the
# frame is every bit above them (``val >> PAGE_SHIFT``, a 64-bit value under PAE, neither
# masked to the physical width nor, for a PSE entry, to 2 MiB).  page_tables.c sees these.
# The kernel's own versions (arch/x86/include/asm/pgtable_types.h, pgtable.h) are the Layout
# methods of lguest_book.x86, which the Guest kernel and the readers' walks use.
def pgd_flags(pgd: int) -> int:
    return pgd & 0xFFF  # pgd_val(x) & ~PAGE_MASK


def pgd_pfn(pgd: int) -> int:
    return pgd >> PAGE_SHIFT  # pgd_val(x) >> PAGE_SHIFT


def pmd_flags(pmd: int) -> int:
    return pmd & 0xFFF  # pmd_val(x) & ~PAGE_MASK


def pmd_pfn(pmd: int) -> int:
    return pmd >> PAGE_SHIFT  # pmd_val(x) >> PAGE_SHIFT


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
    # lguest_address_ok(), its 32-bit sums wrapped only when they carry (a comparison costs
    # less than an AND with a two-digit int, and gives the same value).
    end = addr + size
    if end > 0xFFFFFFFF:
        end &= 0xFFFFFFFF
    limit = lg.pfn_limit << 12
    if limit > 0xFFFFFFFF:
        limit &= 0xFFFFFFFF
    if addr <= end <= limit:  # lguest_address_ok()
        # copy_from_user(mem_base + addr): first the common case, an aligned entry of a page
        # held as entries (see host.py), then the general copy.
        if not addr % size:  # a whole entry
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
    end = addr + size  # lguest_address_ok(), as in lgread
    if end > 0xFFFFFFFF:
        end &= 0xFFFFFFFF
    limit = lg.pfn_limit << 12
    if limit > 0xFFFFFFFF:
        limit &= 0xFFFFFFFF
    if addr <= end <= limit:  # lguest_address_ok()
        # copy_to_user(mem_base + addr): the common case first, as in lgread.
        launcher = lg.launcher
        index = addr >> 12
        if not addr % size and index not in launcher.readonly:  # a whole, writable entry
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
