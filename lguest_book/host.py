"""The Host machine under lguest: physical frames, the page allocator, page reference
counts, the Switcher's pages, the host CPUs, and the Launcher's address space.

What the C file takes from the Linux kernel around it is modelled here, small:

* **Frames.**  Host physical memory is a set of 4 KiB frames named by number.  A frame's
  contents are kept in one of two forms: a list of entries when the kernel uses it as a page
  table (``Host.tables``), or a bytearray when it holds data (``Host.data``).  A frame never
  written reads as zeroes.  The two forms describe the same bytes: a frame read in the other
  form is converted, so even the C's stray pointer arithmetic reads what it would read.
* **The allocator** hands out the lowest free frame, zeroed, with a reference count of one.
  ``get_zeroed_page`` returns 0 on failure, as the C does; failures can be injected with
  :meth:`Host.fail_allocations` so the out-of-memory paths of page_tables.c can be run.
  Frame 0 is never handed out: in this model it stands for the NULL pointer.
* **Reference counts.**  ``get_page``/``put_page``/``free_page`` as in Linux.  A count that
  would go below zero is recorded in ``Host.anomalies`` (Linux would report a bad page
  state) instead of raising: the model must survive what the C does.
* **The Switcher** is one shared code page and two pages per host CPU
  (``TOTAL_SWITCHER_PAGES = 1 + 2 * nr_cpus``), allocated when the host "loads lguest".
* **The Launcher** is the user process that mapped guest memory at ``mem_base``.  Its pages
  appear on first touch, like anonymous memory; ``get_user_pages_fast`` pins one with a
  reference.  Tests can punch holes in the mapping or make pages read-only to make
  ``get_pfn`` fail, as it can in the real kernel.
* **Oopses.**  Where the C would dereference NULL or hit a ``BUG_ON``, the model raises
  :class:`KernelOops`; the entry points in :mod:`lguest_book.hypercalls` catch it and do what
  an oops does to the process that caused it: the Launcher dies, and with it the guest.
* **The TLB.**  ``Host.tlb`` caches the MMU's successful walks (see :mod:`lguest_book.mmu`).
  Every change to the content of a frame held as entries empties it: ``store``, the
  Launcher's writes into such a frame, a frame handed out again, a frame turned into bytes.
  (The walk's own Accessed/Dirty updates only ever set bits a cached walk has already set.)

Guest memory is kept in the same two forms.  A page the host reads as page-table entries
(``lgread``) is held as entries from then on, and the Launcher's reads and writes of whole
aligned entries go to that list directly, so a Guest that writes its tables while the host
reads them never makes a page change form back and forth.
"""

from __future__ import annotations

import heapq
import struct

from . import fmt as _fmt
from .x86 import PAGE_SHIFT, PAGE_SIZE, Layout

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_UNPACK = {4: _U32.unpack_from, 8: _U64.unpack_from}
_PACK = {4: _U32.pack_into, 8: _U64.pack_into}
TLB_ENTRIES = 1 << 16  # cached walks kept before the TLB is emptied (it only grows by touches)


class KernelOops(Exception):
    """The host kernel oopsed: a BUG_ON fired or a bad pointer was dereferenced."""


def BUG(where: str):
    raise KernelOops(f"kernel BUG in {where}")


def BUG_ON(condition: bool, where: str) -> None:
    if condition:
        BUG(where)


# Arguments that are counts (pages, CPUs, a seed...) print in decimal; addresses, entries and
# frames in hex (lguest_book.fmt's rule).
_COUNT_ARGUMENTS = frozenset(("mem_pages", "stack_pages", "device_pages", "seed", "nr_cpus", "current_cpu",
                              "pages", "size", "count", "slot", "nr_pages", "cpu"))


def _check_int(name: str, value, lo: int, hi: int) -> int:
    """Validate an argument a *user of the API* passes (not the guest)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        show = str if name in _COUNT_ARGUMENTS else (lambda n: f"{n:#x}" if n >= 0 else str(n))
        raise ValueError(f"{name}={show(value)} is out of range [{show(lo)}, {show(hi)}]")
    return value


class Host:
    """A 32-bit x86 host running lguest.

    :param layout: the paging layout of the whole machine (see :mod:`lguest_book.x86`).
    :param nr_cpus: how many host CPUs (each gets two Switcher pages).
    :param switcher_addr: where the Switcher sits in every guest's address space; it must
        lie wholly in the last top-level slot (the last 4 MiB without PAE, the last 1 GiB with
        it).  Default: the last 4 MiB (non-PAE) or the last 2 MiB (PAE).
    :param ram_pages: host RAM in frames (frames ``first_frame`` .. ``ram_pages - 1`` are
        the allocator's).
    :param first_frame: the lowest frame the allocator hands out; frames below it are the
        host kernel's own.
    """

    __slots__ = (
        "layout", "nr_cpus", "TOTAL_SWITCHER_PAGES", "ram_pages", "first_frame", "switcher_addr",
        "_current_cpu", "tables", "data", "refcount", "anomalies", "oopses", "_next_frame",
        "_free", "_fail_after", "_fail_count", "allocations", "lg_switcher_pages", "tlb",
    )

    def __init__(
        self,
        layout: Layout,
        nr_cpus: int = 1,
        switcher_addr: int | None = None,
        ram_pages: int | None = None,
        first_frame: int = 0x8000,
    ):
        if not isinstance(layout, Layout):
            raise TypeError(f"layout must be x86.PAE or x86.NONPAE, not {layout!r}")
        self.layout = layout
        self.nr_cpus = _check_int("nr_cpus", nr_cpus, 1, 64)
        self.TOTAL_SWITCHER_PAGES = 1 + 2 * nr_cpus
        if ram_pages is None:
            ram_pages = (1 << 24) if layout.pae else (1 << 20)
        limit = (1 << 32) if layout.pae else (1 << 20)
        self.ram_pages = _check_int("ram_pages", ram_pages, 2, limit)
        self.first_frame = _check_int("first_frame", first_frame, 1, ram_pages - 1)
        self.switcher_addr = self._choose_switcher_addr(switcher_addr)
        self._current_cpu = 0

        self.tables: dict[int, list[int]] = {}
        self.tlb: dict = {}  # the MMU's cached walks: emptied when an entry they read may change
        self.data: dict[int, bytearray] = {}
        self.refcount: dict[int, int] = {}
        self.anomalies: list[str] = []
        self.oopses: list[str] = []
        self._next_frame = self.first_frame
        self._free: list[int] = []  # a heap of freed frames
        self._fail_after: int | None = None
        self._fail_count = 0
        self.allocations = 0  # successful page allocations, for the curious

        # Loading lguest: the Switcher pages (lg_switcher_pages[] in core.c).
        self.lg_switcher_pages = [self._alloc_frame() for _ in range(self.TOTAL_SWITCHER_PAGES)]

    def _choose_switcher_addr(self, addr: int | None) -> int:
        L = self.layout
        if addr is None:  # the top of the address space: the last 4 MiB, or under PAE the last 2 MiB
            return (1 << 32) - (L.PMD_SIZE if L.pae else L.PGDIR_SIZE)
        # page_tables.c only needs the Switcher in the last top-level slot (lguest itself puts it
        # just below the fixmap, FIXADDR_START - TOTAL_SWITCHER_PAGES * PAGE_SIZE, aligned to
        # nothing); under PAE that slot is 1 GiB and the Switcher may cross a 2 MiB PTE page.
        region = (1 << 32) - L.PGDIR_SIZE
        _check_int("switcher_addr", addr, 0, (1 << 32) - 1)
        if addr % PAGE_SIZE:
            raise ValueError(f"switcher_addr={addr:#x} is not page aligned")
        end = addr + self.TOTAL_SWITCHER_PAGES * PAGE_SIZE
        if addr < region or end > (1 << 32):
            raise ValueError(
                f"switcher_addr={addr:#x}: the {self.TOTAL_SWITCHER_PAGES} Switcher pages must lie "
                f"in [{region:#x}, 0x100000000) for the {L.name} layout"
            )
        return addr

    # --- host CPUs ---------------------------------------------------------------------
    @property
    def current_cpu(self) -> int:
        """raw_smp_processor_id(): the host CPU the code is running on now."""
        return self._current_cpu

    @current_cpu.setter
    def current_cpu(self, cpu: int) -> None:
        self._current_cpu = _check_int("current_cpu", cpu, 0, self.nr_cpus - 1)
        self.tlb.clear()

    # --- the page allocator --------------------------------------------------------------
    def fail_allocations(self, count: int = 1, after: int = 0) -> None:
        """Make page allocations fail: let ``after`` more succeed, then fail ``count``.

        ``count=0`` cancels a plan.  Only ``get_zeroed_page`` (the kernel's allocations)
        obeys the plan; the Launcher's demand-zero memory does not.
        """
        _check_int("count", count, 0, 1 << 30)
        _check_int("after", after, 0, 1 << 30)
        self._fail_after = after if count else None
        self._fail_count = count

    def _alloc_frame(self) -> int:
        if self._free:
            frame = heapq.heappop(self._free)
        elif self._next_frame < self.ram_pages:
            frame = self._next_frame
            self._next_frame += 1
        else:
            return 0
        if self.tables.pop(frame, None) is not None:
            self.tlb.clear()  # a cached walk may have read the frame's old entries
        self.data.pop(frame, None)
        self.refcount[frame] = 1
        self.allocations += 1
        return frame

    def __repr__(self) -> str:
        return (f"<Host {self.layout.name}, {self.nr_cpus} CPU(s), Switcher at {_fmt.vaddr(self.switcher_addr)}, "
                f"{len(self.refcount)} frames in use>")

    def get_zeroed_page(self) -> int:
        """Allocate a zeroed frame for the kernel; 0 means the allocation failed."""
        if self._fail_after is not None:
            if self._fail_after > 0:
                self._fail_after -= 1
            else:
                self._fail_count -= 1
                if self._fail_count <= 0:
                    self._fail_after = None
                return 0
        return self._alloc_frame()

    def free_page(self, frame: int) -> None:
        """free_page(): drop the allocator's reference; freeing NULL (0) does nothing."""
        if frame:
            self.put_page(frame)

    def get_page(self, frame: int) -> None:
        self.refcount[frame] = self.refcount.get(frame, 0) + 1

    def put_page(self, frame: int) -> None:
        count = self.refcount.get(frame, 0) - 1
        if count > 0:
            self.refcount[frame] = count
            return
        if count == 0:
            del self.refcount[frame]
            heapq.heappush(self._free, frame)
            return
        # Linux would print "BUG: Bad page state" and carry on corrupted.
        self.refcount[frame] = count
        self.anomalies.append(f"put_page on frame {_fmt.frame(frame, self.layout)} whose count was already {count + 1}")

    def page_count(self, frame: int) -> int:
        return self.refcount.get(frame, 0)

    def is_free(self, frame: int) -> bool:
        return frame not in self.refcount

    # --- frame contents ------------------------------------------------------------------
    def table(self, frame: int) -> list[int]:
        """The frame seen as a page of entries (``__va(pfn << PAGE_SHIFT)`` in the C).  Read
        it freely; change an entry with :meth:`store`, which also empties the TLB."""
        page = self.tables.get(frame)
        if page is None:
            page = self._as_table(frame)
        return page

    def _check_frame(self, frame: int) -> None:
        if frame == 0:
            raise KernelOops("BUG: unable to handle kernel NULL pointer dereference")
        if not 0 < frame < self.ram_pages:
            raise KernelOops(f"BUG: unable to handle kernel paging request (frame {_fmt.frame(frame, self.layout)})")

    def _as_table(self, frame: int) -> list[int]:
        self._check_frame(frame)
        n = self.layout.ENTRIES_PER_PAGE
        raw = self.data.pop(frame, None)
        if raw is None:
            page = [0] * n
        else:
            fmt = _U64 if self.layout.pae else _U32
            page = [v for (v,) in fmt.iter_unpack(bytes(raw))]
        self.tables[frame] = page
        return page

    def peek_table(self, frame: int) -> list[int]:
        """The frame's entries, read without changing how the frame is stored (for
        inspection).  A frame never written, or outside RAM, reads as zeroes.  The list
        may be the frame itself: read it, never change it."""
        page = self.tables.get(frame)
        if page is not None:
            return page
        raw = self.data.get(frame)
        if raw is None:
            return [0] * self.layout.ENTRIES_PER_PAGE
        fmt = _U64 if self.layout.pae else _U32
        return [v for (v,) in fmt.iter_unpack(bytes(raw))]

    def page_bytes(self, frame: int) -> bytearray | None:
        """The frame seen as bytes, or None if it was never written (reads as zeroes)."""
        raw = self.data.get(frame)
        if raw is None and frame in self.tables:
            page = self.tables.pop(frame)
            raw = bytearray(struct.pack(f"<{len(page)}{'Q' if self.layout.pae else 'I'}", *page))
            self.data[frame] = raw
            self.tlb.clear()  # its content will now change as bytes
        return raw

    def entries_bytes(self, frame: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of a frame held as entries, without changing its form."""
        page = self.tables[frame]
        width = self.layout.entry_bytes
        first, last = offset // width, (offset + size + width - 1) // width
        raw = struct.pack(f"<{last - first}{'Q' if width == 8 else 'I'}", *page[first:last])
        start = offset - first * width
        return raw[start : start + size]

    def write_entries(self, frame: int, offset: int, data: bytes) -> bool:
        """Write whole aligned entries into a frame held as entries; False if ``data`` does
        not cover whole entries (the caller then writes bytes)."""
        width = self.layout.entry_bytes
        if offset % width or len(data) % width:
            return False
        page = self.tables[frame]
        first = offset // width
        page[first : first + len(data) // width] = struct.unpack(f"<{len(data) // width}{'Q' if width == 8 else 'I'}", data)
        self.tlb.clear()
        return True

    def writable_bytes(self, frame: int) -> bytearray:
        raw = self.page_bytes(frame)
        if raw is None:
            raw = self.data[frame] = bytearray(PAGE_SIZE)
        return raw

    # --- pointers into page tables -------------------------------------------------------
    # A C pointer to an entry is (frame, index).  Pointer arithmetic past the end of a page
    # walks into the next frame, as it does in the kernel's linear map.
    def entry_ptr(self, frame: int, index: int) -> tuple[int, int]:
        n = self.layout.ENTRIES_PER_PAGE
        if 0 <= index < n:
            return frame, index
        return frame + index // n, index % n

    def deref(self, ptr: tuple[int, int] | None) -> int:
        """``*ptr``: the entry a pointer points to."""
        try:
            return self.tables[ptr[0]][ptr[1]]  # the common case: a frame held as entries
        except (KeyError, TypeError):
            if ptr is None:
                raise KernelOops("BUG: unable to handle kernel NULL pointer dereference") from None
            return self._as_table(ptr[0])[ptr[1]]

    def store(self, ptr: tuple[int, int] | None, value: int) -> None:
        """set_pte()/set_pmd()/set_pgd() and plain ``*p = v`` stores."""
        try:
            self.tables[ptr[0]][ptr[1]] = value  # the common case: a frame held as entries
        except (KeyError, TypeError):
            if ptr is None:
                raise KernelOops("BUG: unable to handle kernel NULL pointer dereference") from None
            self._as_table(ptr[0])[ptr[1]] = value
        if self.tlb:  # (emptying an empty dict costs a call; testing it does not)
            self.tlb.clear()


class Launcher:
    """The Launcher process's view of guest memory: ``pages`` pages mapped at ``mem_base``.

    ``frames[i]`` is the host frame behind guest page ``i``: 0 until the page is first
    touched (it then reads as zeroes), ``-1`` where the mapping has a hole.
    """

    HOLE = -1
    __slots__ = ("host", "data", "mem_base", "pages", "frames", "readonly", "end")

    def __init__(self, host: Host, mem_base: int, pages: int):
        self.host = host
        self.data = host.data  # the host's dict of data frames, shared
        self.mem_base = _check_int("mem_base", mem_base, PAGE_SIZE, (1 << 32) - PAGE_SIZE)
        if mem_base % PAGE_SIZE:
            raise ValueError(f"mem_base={mem_base:#x} is not page aligned")
        self.pages = _check_int("pages", pages, 1, ((1 << 32) - mem_base) // PAGE_SIZE)
        self.frames: list[int] = [0] * pages
        self.readonly: set[int] = set()
        self.end = mem_base + pages * PAGE_SIZE

    def __repr__(self) -> str:
        return f"<Launcher: {self.pages} guest pages mapped at {_fmt.vaddr(self.mem_base)}>"

    # --- set-up knobs for tests and chapters ---------------------------------------------
    def unmap(self, gpfn: int) -> None:
        """Punch a hole: the Launcher no longer maps guest page ``gpfn``."""
        _check_int("gpfn", gpfn, 0, self.pages - 1)
        frame = self.frames[gpfn]
        if frame > 0:
            self.host.put_page(frame)
        self.frames[gpfn] = self.HOLE

    def protect(self, gpfn: int, writable: bool = False) -> None:
        """Make guest page ``gpfn`` read-only (or writable again) in the Launcher."""
        _check_int("gpfn", gpfn, 0, self.pages - 1)
        if writable:
            self.readonly.discard(gpfn)
        else:
            self.readonly.add(gpfn)

    # --- what the kernel uses ------------------------------------------------------------
    def _page_index(self, uaddr: int) -> int | None:
        if self.mem_base <= uaddr < self.end:
            return (uaddr - self.mem_base) >> PAGE_SHIFT
        return None

    def _fault_in(self, index: int) -> int:
        frame = self.host._alloc_frame()  # demand-zero memory: not subject to injection
        if frame:
            self.frames[index] = frame
        return frame

    def get_user_pages_fast(self, start: int, nr_pages: int, write: int) -> tuple[int, int]:
        """Pin the page at ``start``: returns (pages pinned, frame).  Only nr_pages=1."""
        offset = start - self.mem_base
        if offset < 0 or start >= self.end:
            return 0, 0
        index = offset >> PAGE_SHIFT
        frame = self.frames[index]
        if frame < 0 or (write and index in self.readonly):
            return 0, 0
        if frame == 0:
            frame = self._fault_in(index)
            if not frame:
                return 0, 0
        try:  # get_page()
            self.host.refcount[frame] += 1
        except KeyError:  # (a count that went to zero: Host.anomalies has the story)
            self.host.refcount[frame] = 1
        return 1, frame

    def read_int(self, uaddr: int, size: int) -> int | None:
        """copy_from_user of a little-endian 4- or 8-byte value; None if it faults."""
        offset = uaddr - self.mem_base
        if offset >= 0 and uaddr < self.end and (uaddr & 0xFFF) + size <= PAGE_SIZE:
            frame = self.frames[offset >> PAGE_SHIFT]
            if frame > 0:
                raw = self.data.get(frame)
                if raw is not None:
                    return _UNPACK[size](raw, uaddr & 0xFFF)[0]
                if frame in self.host.tables:  # held as entries
                    return int.from_bytes(self.host.entries_bytes(frame, uaddr & 0xFFF, size), "little")
                return 0
            return 0 if frame == 0 else None
        raw = self.read_bytes(uaddr, size)
        return None if raw is None else int.from_bytes(raw, "little")

    def read_guest(self, paddr: int, size: int) -> int | None:
        """copy_from_user(mem_base + paddr): the same as ``read_int(mem_base + paddr)``,
        with the common case (inside one page, page present) first.  A whole aligned entry
        is read from the page held as entries, which it is from then on (see lgread)."""
        if paddr & 0xFFF <= PAGE_SIZE - size and 0 <= paddr < self.end - self.mem_base:
            frame = self.frames[paddr >> PAGE_SHIFT]
            if frame > 0:
                if size == self.host.layout.entry_bytes and not paddr & (size - 1):
                    return self.host.table(frame)[(paddr & 0xFFF) // size]
                raw = self.data.get(frame)
                if raw is not None:
                    return _UNPACK[size](raw, paddr & 0xFFF)[0]
        return self.read_int((self.mem_base + paddr) & 0xFFFFFFFF, size)

    def write_guest(self, paddr: int, size: int, value: int) -> bool:
        """copy_to_user(mem_base + paddr): ``write_int(mem_base + paddr)``, common case first."""
        if paddr & 0xFFF <= PAGE_SIZE - size and 0 <= paddr < self.end - self.mem_base:
            index = paddr >> PAGE_SHIFT
            frame = self.frames[index]
            if frame > 0 and index not in self.readonly:
                page = self.host.tables.get(frame)
                if page is not None and size == self.host.layout.entry_bytes and not paddr & (size - 1):
                    page[(paddr & 0xFFF) // size] = value
                    self.host.tlb.clear()
                    return True
                raw = self.data.get(frame)
                if raw is not None:
                    _PACK[size](raw, paddr & 0xFFF, value)
                    return True
        return self.write_int((self.mem_base + paddr) & 0xFFFFFFFF, size, value)

    def read_bytes(self, uaddr: int, size: int) -> bytes | None:
        out = bytearray()
        while size:
            index = self._page_index(uaddr)
            if index is None or self.frames[index] < 0:
                return None
            offset = uaddr & (PAGE_SIZE - 1)
            chunk = min(size, PAGE_SIZE - offset)
            frame = self.frames[index]
            raw = self.data.get(frame) if frame else None
            if raw is not None:
                out += raw[offset : offset + chunk]
            elif frame in self.host.tables:  # held as entries: read them as they are
                out += self.host.entries_bytes(frame, offset, chunk)
            else:
                out += bytes(chunk)
            uaddr += chunk
            size -= chunk
        return bytes(out)

    def write_bytes(self, uaddr: int, data: bytes, force: bool = False) -> bool:
        """copy_to_user; False if it faults.  ``force`` ignores read-only protection (the
        Guest's own stores are modelled that way)."""
        # Check the whole range first: a failed copy writes nothing in this model.
        size, addr = len(data), uaddr
        while size:
            index = self._page_index(addr)
            if index is None or self.frames[index] < 0 or (not force and index in self.readonly):
                return False
            chunk = min(size, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
            addr += chunk
            size -= chunk
        pos = 0
        while pos < len(data):
            index = self._page_index(uaddr)
            frame = self.frames[index] or self._fault_in(index)
            if not frame:
                return False
            offset = uaddr & (PAGE_SIZE - 1)
            chunk = min(len(data) - pos, PAGE_SIZE - offset)
            if frame not in self.host.tables or not self.host.write_entries(frame, offset, bytes(data[pos : pos + chunk])):
                self.host.writable_bytes(frame)[offset : offset + chunk] = data[pos : pos + chunk]
            uaddr += chunk
            pos += chunk
        return True

    def write_int(self, uaddr: int, size: int, value: int, force: bool = False) -> bool:
        """copy_to_user of a 4- or 8-byte little-endian value."""
        offset = uaddr - self.mem_base
        if offset >= 0 and uaddr < self.end and (uaddr & 0xFFF) + size <= PAGE_SIZE:
            index = offset >> PAGE_SHIFT
            frame = self.frames[index]
            if frame > 0 and (force or index not in self.readonly):
                raw = self.data.get(frame)
                if raw is not None:
                    _PACK[size](raw, uaddr & 0xFFF, value)
                    return True
                page = self.host.tables.get(frame)
                if page is not None and size == self.host.layout.entry_bytes and not uaddr & (size - 1):
                    page[(uaddr & 0xFFF) // size] = value
                    self.host.tlb.clear()
                    return True
        return self.write_bytes(uaddr, value.to_bytes(size, "little"), force)

    def mapped_frames(self) -> dict[int, int]:
        """{guest page: host frame} for every page that has been touched."""
        return {i: f for i, f in enumerate(self.frames) if f > 0}
