"""A small Guest kernel for the shadow MMU to serve.

The Guest keeps its own page tables in its own memory, exactly as a paravirtualized Linux
does, and tells the host what it changed through lguest's page-table hypercalls (the calls
arch/x86/lguest/boot.c makes):

* a new top level loaded into cr3   -> LHCALL_NEW_PGTABLE(top level)
* a PTE set for an address space     -> LHCALL_SET_PTE(top level, vaddr, pte [, pte high])
* a top-level entry set              -> LHCALL_SET_PGD(top-level page, index)
* a mid-level entry set (PAE)        -> LHCALL_SET_PMD(mid-level page, index)
* a TLB flush, user part or all      -> LHCALL_FLUSH_TLB(0 or 1)

Booting follows the order lguest uses: the Launcher creates the guest (linear mode), the
Guest makes LHCALL_LGUEST_INIT with its lguest_data page, builds the kernel's top level
(``swapper``) mapping all its memory at ``kernel_address``, switches to it (leaving linear
mode), and sets its kernel stack.

:meth:`Guest.touch` does what the CPU does on a memory access: walk the *shadow* tables
(:mod:`lguest_book.mmu`); on a fault, trap to the host (``demand_page``); if the host fixed
it, try again; otherwise the fault is the Guest's own (or device memory for the Launcher).

Everything here is the model's invention, kept small: Linux's real memory manager is much
more.  A physical page allocator hands out guest pages upward from ``FIRST_FREE_PFN``.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from . import fmt
from . import hypercalls as hc
from . import mmu
from .host import TLB_ENTRIES, Host, KernelOops, _check_int
from .lguest import LGUEST_DATA_CR2, LGUEST_DATA_KERNEL_ADDRESS, LGUEST_DATA_RESERVE_MEM, Lguest, PrandomSource
from .x86 import (
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    ULONG_MASK,
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_USER,
    layout_for,
)

KERNEL_PGD_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY  # _KERNPG_TABLE
USER_PGD_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # _PAGE_TABLE
KERNEL_PTE_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL
FIRST_FREE_PFN = 0x200  # the kernel image occupies 1 MiB .. 2 MiB
KERNEL_DS = 0x68 | 1  # the Guest's kernel data segment, at privilege level 1

#: The result of one memory access by the Guest.
#: ``outcome`` is "ok", "guest-fault" (reflected to the Guest), "mmio" (the Launcher
#: emulates it), "killed" (the guest died), "dead" (it was already dead) or "livelock"
#: (demand_page keeps "fixing" a fault the hardware keeps raising).  ``hpa`` is the host
#: physical address reached (or -1, printed "—"), ``faults`` how many faults the host handled on
#: the way, ``info`` the iomem address for "mmio", the error code for "guest-fault" (and
#: "livelock"), else 0 (printed "—").
class Access(namedtuple("Access", "outcome hpa faults info")):
    """What one access did: ``outcome`` (ok, guest-fault, mmio, killed, dead, livelock), the
    host-physical address reached (-1 if none), the faults the Host took, and ``info`` (the
    error code passed to the Guest, or the device address for mmio)."""

    __slots__ = ()
    pae = False  # the layout, for printing: physical addresses are as wide as its entries

    def __repr__(self) -> str:
        # "—" is the package's "no value" (as plots and widgets print it): no address reached
        # (the field holds -1), or no ``info`` for this outcome (the field holds 0)
        hpa = fmt.paddr(self.hpa, pae=self.pae) if self.hpa >= 0 else "—"
        if self.outcome == "mmio":  # the device's physical address: as wide as the layout's
            info = fmt.paddr(self.info, pae=self.pae)
        elif self.outcome in ("guest-fault", "livelock"):  # an error code: flag bits, as traces print them
            info = f"{self.info:#x}"
        else:  # ok, killed, dead: nothing to report
            info = "—" if not self.info else f"{self.info:#x}"
        return f"Access(outcome={self.outcome!r}, hpa={hpa}, faults={self.faults}, info={info})"


class AccessPAE(Access):
    """An :class:`Access` of a PAE Guest (it prints its addresses 16 digits wide)."""

    __slots__ = ()
    pae = True


_new_tuple = tuple.__new__  # builds an Access without namedtuple's Python-level __new__


class Process:
    """An address space of the Guest: a top level in guest memory (``gpgdir``)."""

    def __init__(self, name: str, gpgdir: int, pmd_pages: tuple[int, ...] = ()):
        self.name = name
        self.gpgdir = gpgdir
        self.pmd_pages = pmd_pages  # PAE: the guest frames of its mid-level pages, by pgd index

    def __repr__(self) -> str:
        return f"<Process {self.name} gpgdir={fmt.paddr(self.gpgdir, pae=bool(self.pmd_pages))}>"


class Guest:
    """A Guest kernel running under lguest on a modelled host.

    :param pae: the machine's layout: False for 2-level, True for 3-level PAE tables.
    :param mem_pages: guest memory in pages (``pfn_limit``); default 16 MiB.
    :param nr_cpus: host CPUs; ``current_cpu`` the one the guest runs on now.
    :param switcher_addr: where the Switcher sits (default: the start of the last slot).
    :param kernel_address: PAGE_OFFSET of the Guest kernel; the Guest tells the host at init.
    :param stack_pages: pages of kernel stack pinned by LHCALL_SET_STACK (0..2; more kills).
    :param device_pages: I/O memory pages above guest memory (``device_limit - pfn_limit``).
    :param mem_base: where the Launcher mapped guest memory in its own address space.
    :param seed: seed of ``prandom_u32`` (new_pgdir's victim); or pass ``prandom``: a
        sequence of 32-bit values (or a :class:`~lguest_book.lguest.PrandomSource`).
    :param boot: run the boot sequence (INIT, build and load swapper, set the stack).
    :param host_nx: a host CPU that supports NX (with PAE; by default the host has none).
    """

    def __init__(
        self,
        pae: bool = False,
        mem_pages: int = 4096,
        *,
        nr_cpus: int = 1,
        current_cpu: int = 0,
        switcher_addr: int | None = None,
        kernel_address: int = 0xC0000000,
        stack_pages: int = 2,
        device_pages: int = 256,
        mem_base: int = 0x40000000,
        seed: int = 0,
        prandom=None,
        boot: bool = True,
        host_nx: bool = False,
    ):
        self.x86 = layout_for(pae, host_nx=host_nx)
        self._walk = mmu.walk_pae if pae else mmu.walk_2level
        self._Access = AccessPAE if pae else Access
        _check_int("mem_pages", mem_pages, FIRST_FREE_PFN + 16, 1 << 20)
        _check_int("kernel_address", kernel_address, 0, ULONG_MASK)
        _check_int("stack_pages", stack_pages, 0, 64)
        _check_int("device_pages", device_pages, 0, 1 << 20)
        _check_int("seed", seed, 0, (1 << 64) - 1)
        self.host = Host(self.x86, nr_cpus=nr_cpus, switcher_addr=switcher_addr)
        self.host.current_cpu = current_cpu
        source = prandom if prandom is not None else PrandomSource(seed=seed)
        self.lg = Lguest(self.host, mem_pages, mem_base, mem_pages + device_pages, source)
        self.cpu = self.lg.cpus[0]
        self.kernel_address = kernel_address
        self.stack_pages = stack_pages
        self._next_free = FIRST_FREE_PFN
        self._free: list[int] = []
        self.processes: list[Process] = []
        self.swapper: Process | None = None
        self.current: Process | None = None
        self.lguest_data_pa = 0
        self.esp1 = 0
        err = hc.launch(self.lg)
        if err:
            raise hc.LaunchError(-err, "init_guest_pagetable failed: out of memory")
        if boot:
            self.boot()

    # --- the Guest's physical memory ---------------------------------------------------
    @property
    def dead(self) -> str | None:
        """Why the guest was killed, or None while it lives."""
        return self.lg.dead

    def alloc_page(self) -> int:
        """Allocate a zeroed guest page; returns its guest page frame number."""
        if self._free:
            gpfn = self._free.pop()
        else:
            if self._next_free >= self.lg.pfn_limit:
                raise MemoryError("the Guest is out of memory")
            gpfn = self._next_free
            self._next_free += 1
        self.write_phys(gpfn << PAGE_SHIFT, bytes(PAGE_SIZE))
        return gpfn

    def free_page(self, gpfn: int) -> None:
        _check_int("gpfn", gpfn, 0, self.lg.pfn_limit - 1)
        self._free.append(gpfn)

    def write_phys(self, paddr: int, data: bytes) -> None:
        """Store bytes at a guest-physical address (the Guest's own store)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        _check_int("paddr", paddr, 0, self.lg.pfn_limit * PAGE_SIZE - len(data))
        self.lg.launcher.write_bytes(self.lg.mem_base + paddr, bytes(data), force=True)

    def read_phys(self, paddr: int, size: int) -> bytes:
        """Load bytes from a guest-physical address."""
        _check_int("size", size, 0, self.lg.pfn_limit * PAGE_SIZE)
        _check_int("paddr", paddr, 0, self.lg.pfn_limit * PAGE_SIZE - size)
        data = self.lg.launcher.read_bytes(self.lg.mem_base + paddr, size)
        return data if data is not None else bytes(size)

    def read_entry(self, paddr: int) -> int:
        """One page-table entry (4 or 8 bytes) at a guest-physical address."""
        return int.from_bytes(self.read_phys(paddr, self.x86.entry_bytes), "little")

    def write_entry(self, paddr: int, value: int) -> None:
        _check_int("value", value, 0, self.x86.entry_mask)
        self.write_phys(paddr, value.to_bytes(self.x86.entry_bytes, "little"))

    # --- hypercalls ----------------------------------------------------------------------
    def hypercall(self, call: int, arg1: int = 0, arg2: int = 0, arg3: int = 0, arg4: int = 0) -> None:
        """Make any hypercall with any arguments (they are 32-bit registers)."""
        for name, value in (("call", call), ("arg1", arg1), ("arg2", arg2), ("arg3", arg3), ("arg4", arg4)):
            _check_int(name, value, 0, ULONG_MASK)
        hc.do_hcall(self.cpu, call, arg1, arg2, arg3, arg4)

    def _set_pte_hcall(self, gpgdir: int, vaddr: int, pte: int) -> None:
        if self.x86.pae:
            hc.do_hcall(self.cpu, hc.LHCALL_SET_PTE, gpgdir, vaddr, pte & ULONG_MASK, pte >> 32)
        else:
            hc.do_hcall(self.cpu, hc.LHCALL_SET_PTE, gpgdir, vaddr, pte)

    # --- boot ----------------------------------------------------------------------------
    def boot(self) -> None:
        """LGUEST_INIT, build and load the kernel's top level, set the kernel stack."""
        L = self.x86
        data_pfn = self.alloc_page()
        self.lguest_data_pa = data_pfn << PAGE_SHIFT
        self.write_phys(self.lguest_data_pa + LGUEST_DATA_KERNEL_ADDRESS, self.kernel_address.to_bytes(4, "little"))
        hc.do_hcall(self.cpu, hc.LHCALL_LGUEST_INIT, self.lguest_data_pa)
        self.swapper = self._new_top_level("swapper")
        # Map all of memory (as far as fits below the Switcher) at kernel_address.
        room = (self.host.switcher_addr - self.kernel_address) // PAGE_SIZE if self.kernel_address < self.host.switcher_addr else 0
        # One PTE page at a time: the entries of a page are contiguous in guest memory.
        pages, gpfn = min(self.lg.pfn_limit, room), 0
        entry = struct.Struct("<Q" if L.pae else "<I")
        while gpfn < pages:
            vaddr = self.kernel_address + (gpfn << PAGE_SHIFT)
            ptep = self._pte_slot(self.swapper, vaddr, kernel=True, notify=False)
            count = min(pages - gpfn, L.PTRS_PER_PTE - L.pte_index(vaddr))
            ptes = b"".join(entry.pack((n << PAGE_SHIFT) | KERNEL_PTE_FLAGS) for n in range(gpfn, gpfn + count))
            self.write_phys(ptep, ptes)
            gpfn += count
        self.switch_to(self.swapper)
        if self.stack_pages:
            stack = [self.alloc_page() for _ in range(self.stack_pages)]
            top = max(stack) + 1  # pages are allocated upward, so they are contiguous
            self.esp1 = (self.kernel_address + (top << PAGE_SHIFT)) & ULONG_MASK
            hc.do_hcall(self.cpu, hc.LHCALL_SET_STACK, KERNEL_DS, self.esp1, self.stack_pages)
        del L

    # --- address spaces ------------------------------------------------------------------
    def _new_top_level(self, name: str) -> Process:
        L = self.x86
        top = self.alloc_page() << PAGE_SHIFT
        pmds: list[int] = []
        if L.pae:
            # PAE: every mid-level page exists from the start (the PDPT cannot change lazily);
            # the kernel's quarter is shared with swapper.
            kidx = L.pgd_index(self.kernel_address)
            for i in range(L.PTRS_PER_PGD):
                if self.swapper is not None and i >= kidx:
                    pmd = self.swapper.pmd_pages[i]
                else:
                    pmd = self.alloc_page()
                pmds.append(pmd)
                self.write_entry(top + i * 8, (pmd << PAGE_SHIFT) | _PAGE_PRESENT)
        elif self.swapper is not None:
            # Copy the kernel's top-level entries, as pgd_alloc does.
            first = L.pgd_index(self.kernel_address)
            count = L.PTRS_PER_PGD - first
            src = self.swapper.gpgdir + first * 4
            self.write_phys(top + first * 4, self.read_phys(src, count * 4))
        proc = Process(name, top, tuple(pmds))
        self.processes.append(proc)
        return proc

    def new_process(self, name: str | None = None) -> Process:
        """A new address space sharing the kernel's mappings."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return self._new_top_level(name or f"proc{len(self.processes)}")

    def switch_to(self, proc: Process) -> None:
        """Load ``proc``'s top level into cr3 (LHCALL_NEW_PGTABLE)."""
        self._own(proc)
        self.current = proc
        hc.do_hcall(self.cpu, hc.LHCALL_NEW_PGTABLE, proc.gpgdir)

    def _own(self, proc) -> Process:
        """``proc`` must be an address space of this Guest: another Guest's Process names a
        top level in *that* Guest's memory (and maybe its other layout)."""
        if not isinstance(proc, Process):
            raise TypeError(f"proc must be a Process, not {type(proc).__name__}")
        if not any(p is proc for p in self.processes):
            raise ValueError(f"proc={proc!r} is not a process of this Guest (make one with its new_process())")
        return proc

    def _space(self, vaddr: int, proc: Process | None) -> Process:
        if proc is not None:
            self._own(proc)
        if vaddr >= self.kernel_address:
            return self.swapper
        proc = proc or self.current
        if proc is None:
            raise ValueError("proc: no process is current yet; boot the guest or pass proc=")
        return proc

    def _good_dir_entry(self, entry: int) -> bool:
        """Does a directory entry point at a page table this Guest can use?  Like Linux's
        pmd_bad(), the Guest replaces an entry that is not present, is a large page, or
        points outside its memory (say, garbage it wrote there itself)."""
        L = self.x86
        return bool(entry & _PAGE_PRESENT) and not entry & 0x80 and L.pmd_pfn(entry) < self.lg.pfn_limit

    def _pte_slot(self, proc: Process, vaddr: int, kernel: bool, notify: bool = True) -> int:
        """Guest-physical address of the PTE for vaddr in proc, making the table page if
        needed (and telling the host about the new directory entry)."""
        L = self.x86
        if L.pae:
            pmd_page = proc.pmd_pages[L.pgd_index(vaddr)] << PAGE_SHIFT
            pmdp = pmd_page + L.pmd_index(vaddr) * 8
            pmd = self.read_entry(pmdp)
            if not self._good_dir_entry(pmd):
                pmd = (self.alloc_page() << PAGE_SHIFT) | (KERNEL_PGD_FLAGS if kernel else USER_PGD_FLAGS)
                self.write_entry(pmdp, pmd)
                if notify:
                    hc.do_hcall(self.cpu, hc.LHCALL_SET_PMD, pmdp & PAGE_MASK, (pmdp & ~PAGE_MASK) // 8)
            table = L.pmd_pfn(pmd) << PAGE_SHIFT
        else:
            pgdp = proc.gpgdir + L.pgd_index(vaddr) * 4
            pgd = self.read_entry(pgdp)
            if not self._good_dir_entry(pgd):
                pgd = (self.alloc_page() << PAGE_SHIFT) | (KERNEL_PGD_FLAGS if kernel else USER_PGD_FLAGS)
                spaces = self.processes if kernel else [proc]
                for space in spaces:  # a kernel table is shared by every address space
                    p = space.gpgdir + L.pgd_index(vaddr) * 4
                    self.write_entry(p, pgd)
                    if notify:
                        hc.do_hcall(self.cpu, hc.LHCALL_SET_PGD, p & PAGE_MASK, (p & ~PAGE_MASK) // 4)
            table = L.pgd_pfn(pgd) << PAGE_SHIFT
        return table + L.pte_index(vaddr) * L.entry_bytes

    def set_pte(self, vaddr: int, pte: int, proc: Process | None = None) -> None:
        """Write any value into the Guest's PTE for ``vaddr`` and tell the host (SET_PTE).

        Kernel addresses go to swapper's tables (shared by all); user addresses to ``proc``
        (default: the current process).  Nothing about ``pte`` is checked: a hostile guest
        can write anything, and it is the host's job to cope.
        """
        _check_int("vaddr", vaddr, 0, ULONG_MASK)
        _check_int("pte", pte, 0, self.x86.entry_mask)
        space = self._space(vaddr, proc)
        ptep = self._pte_slot(space, vaddr, kernel=vaddr >= self.kernel_address)
        self.write_entry(ptep, pte)
        self._set_pte_hcall(space.gpgdir, vaddr & PAGE_MASK, pte)

    def set_pgd(self, index: int, value: int, proc: Process | None = None) -> None:
        """Write any value into top-level entry ``index`` of ``proc`` (default: current)
        and tell the host (LHCALL_SET_PGD), as the Guest's set_pmd/set_pud hooks do."""
        L = self.x86
        _check_int("index", index, 0, L.PTRS_PER_PGD - 1)
        _check_int("value", value, 0, L.entry_mask)
        proc = self._own(proc) if proc is not None else self.current
        if proc is None:
            raise ValueError("proc: no process is current yet; boot the guest or pass proc=")
        pgdp = proc.gpgdir + index * L.entry_bytes
        self.write_entry(pgdp, value)
        if L.pae:  # the PDPT is 32-byte aligned: (base, index) from its address
            hc.do_hcall(self.cpu, hc.LHCALL_SET_PGD, pgdp & 0xFFFFFFE0, (pgdp & 0x1F) // 8)
        else:
            hc.do_hcall(self.cpu, hc.LHCALL_SET_PGD, pgdp & PAGE_MASK, (pgdp & ~PAGE_MASK) // 4)

    def set_pmd(self, vaddr: int, value: int, proc: Process | None = None) -> None:
        """PAE only: write any value into the mid-level entry for ``vaddr`` and tell the host
        (LHCALL_SET_PMD, which makes it throw every shadow mapping away)."""
        L = self.x86
        if not L.pae:
            raise ValueError("set_pmd: a non-PAE guest has no mid level (pae=False)")
        _check_int("vaddr", vaddr, 0, ULONG_MASK)
        _check_int("value", value, 0, L.entry_mask)
        space = self._space(vaddr, proc)
        pmdp = (space.pmd_pages[L.pgd_index(vaddr)] << PAGE_SHIFT) + L.pmd_index(vaddr) * 8
        self.write_entry(pmdp, value)
        hc.do_hcall(self.cpu, hc.LHCALL_SET_PMD, pmdp & PAGE_MASK, (pmdp & ~PAGE_MASK) // 8)

    def map(
        self,
        vaddr: int,
        gpfn: int | None = None,
        *,
        proc: Process | None = None,
        writable: bool = True,
        user: bool | None = None,
        accessed: bool = True,
        dirty: bool = False,
        flags: int = 0,
    ) -> int:
        """Map the page at ``vaddr`` to guest page ``gpfn`` (a fresh page if None).

        By default the PTE is present, writable and accessed, user for a user address and
        global for a kernel one (``dirty`` adds Dirty).  Returns the PTE written.
        """
        _check_int("vaddr", vaddr, 0, ULONG_MASK)
        if gpfn is None:
            gpfn = self.alloc_page()
        _check_int("gpfn", gpfn, 0, (self.x86.PTE_PFN_MASK >> PAGE_SHIFT))
        kernel = vaddr >= self.kernel_address
        if user is None:
            user = not kernel
        pte = (gpfn << PAGE_SHIFT) | _PAGE_PRESENT | flags
        pte |= (_PAGE_RW if writable else 0) | (_PAGE_USER if user else 0)
        pte |= (_PAGE_ACCESSED if accessed else 0) | (_PAGE_DIRTY if dirty else 0)
        if kernel:
            pte |= _PAGE_GLOBAL
        self.set_pte(vaddr, pte, proc)
        return pte

    def pte_address(self, vaddr: int, proc: Process | None = None) -> int:
        """Guest-physical address of the PTE for ``vaddr`` (kernel addresses: swapper's
        tables; user addresses: ``proc`` or the current process), making the PTE page if
        there is none (and telling the host about the new directory entry, as Linux does).
        Storing into it with :meth:`write_entry` changes the mapping *without* a SET_PTE."""
        _check_int("vaddr", vaddr, 0, ULONG_MASK)
        space = self._space(vaddr, proc)
        return self._pte_slot(space, vaddr, kernel=vaddr >= self.kernel_address)

    def unmap(self, vaddr: int, proc: Process | None = None) -> None:
        """Clear the PTE for ``vaddr`` and tell the host."""
        self.set_pte(vaddr, 0, proc)

    def guest_pte(self, vaddr: int, proc: Process | None = None) -> int:
        """The Guest's own PTE for ``vaddr`` (0 if no table covers it)."""
        _check_int("vaddr", vaddr, 0, ULONG_MASK)
        L = self.x86
        space = self._space(vaddr, proc)
        if L.pae:
            entry = self.read_entry((space.pmd_pages[L.pgd_index(vaddr)] << PAGE_SHIFT) + L.pmd_index(vaddr) * 8)
        else:
            entry = self.read_entry(space.gpgdir + L.pgd_index(vaddr) * 4)
        if not self._good_dir_entry(entry):
            return 0
        table = L.pmd_pfn(entry) << PAGE_SHIFT
        return self.read_entry(table + L.pte_index(vaddr) * L.entry_bytes)

    def flush_user(self) -> None:
        """LHCALL_FLUSH_TLB(0): the host drops the user part of the current shadow table."""
        hc.do_hcall(self.cpu, hc.LHCALL_FLUSH_TLB, 0)

    def flush_all(self) -> None:
        """LHCALL_FLUSH_TLB(1): the host drops every shadow mapping (a kernel mapping changed)."""
        hc.do_hcall(self.cpu, hc.LHCALL_FLUSH_TLB, 1)

    # --- running -------------------------------------------------------------------------
    def touch(self, vaddr: int, write: bool = False, user: bool = False) -> Access:
        """Access ``vaddr`` as the CPU would while running the Guest."""
        if vaddr.__class__ is not int or not 0 <= vaddr <= 0xFFFFFFFF:
            _check_int("vaddr", vaddr, 0, ULONG_MASK)
        lg = self.lg
        if lg.dead is not None:
            return self._Access("dead", -1, 0, 0)
        cpu = self.cpu
        host = self.host
        pgdir = lg.pgdirs[cpu.cpu_pgd]
        # map_switcher_in_guest() runs before every entry; its first test is inlined here.
        if pgdir.last_host_cpu == host._current_cpu:
            # The TLB: a walk that succeeded, and what it read has not changed since.
            hit = host.tlb.get((pgdir.pgdir, vaddr, write, user))
            if hit is not None:
                return hit
        walk = self._walk
        faults = 0
        while True:
            pgdir = lg.pgdirs[cpu.cpu_pgd]
            if pgdir.last_host_cpu != host._current_cpu and not hc.enter_guest(cpu):
                return self._Access("killed", -1, faults, 0)
            try:
                hpa, errcode = walk(host, pgdir.pgdir, vaddr, write, user)
            except KernelOops as err:  # the shadow tables point at nothing: a machine check
                hc._oops(cpu, "the hardware page walk", err)
                return self._Access("killed", -1, faults, 0)
            if hpa >= 0:
                tlb = host.tlb
                if len(tlb) >= TLB_ENTRIES:
                    tlb.clear()
                tlb[pgdir.pgdir, vaddr, write, user] = _new_tuple(self._Access, ("ok", hpa, 0, 0))
                return _new_tuple(self._Access, ("ok", hpa, faults, 0))
            if faults == 3:
                return self._Access("livelock", -1, faults, errcode)
            faults += 1
            outcome, info = hc.page_fault(cpu, vaddr, errcode)
            if outcome == "fixed":
                continue
            if outcome == "guest":
                return self._Access("guest-fault", -1, faults, errcode)
            return self._Access(outcome, -1, faults, info)

    def shutdown(self) -> None:
        """The Launcher closes the guest: every shadow page is released."""
        hc.teardown(self.lg)

    # --- reading lguest_data ---------------------------------------------------------------
    def lguest_data(self) -> dict:
        """The fields of this Guest's lguest_data page the page-table code touches."""
        base = self.lguest_data_pa

        def field(offset: int) -> int:
            return int.from_bytes(self.read_phys(base + offset, 4), "little")

        return {
            "kernel_address": field(LGUEST_DATA_KERNEL_ADDRESS),
            "reserve_mem": field(LGUEST_DATA_RESERVE_MEM),
            "cr2": field(LGUEST_DATA_CR2),
        }

    def __repr__(self) -> str:
        state = f"dead: {self.dead}" if self.dead else "alive"
        return f"<Guest {self.x86.name}, {self.lg.pfn_limit} pages, {state}>"


def new_host_guest(pae: bool = False, **kwargs) -> Guest:
    """Shorthand for ``Guest(pae=pae, **kwargs)``."""
    return Guest(pae=pae, **kwargs)


__all__ = ["Guest", "Process", "Access", "Host", "Lguest"]
