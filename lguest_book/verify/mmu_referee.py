"""Referee 2: a real x86 MMU (QEMU's i386 page walker, through Unicorn 2.1.4) walks the
model's shadow tables.

For a Guest in some state, the model's host memory is loaded into Unicorn's *physical*
memory, CR3 points at a cached shadow top level (CR4.PAE set for a PAE Guest), paging is
switched on with CR0.WP set (as the lguest host runs), and for many virtual addresses and
every kind of access — read or write, supervisor (CPL 0) or user (CPL 3) — the hardware's
translation is compared with the model's own walk (:mod:`lguest_book.mmu`):

* the same outcome: translated, or a page fault (exactly where the model says the access
  faults, so that demand_page() runs);
* the same host-physical address when translated;
* afterwards, the same Accessed and Dirty bits in every shadow table page (the hardware sets
  them during the walk; so does the model).

Translation goes through libunicorn's ``uc_vmem_translate`` export (not wrapped in Python;
reached with ctypes): a full permission-checked walk without executing anything.  User mode
is reached the way a kernel reaches it: before paging is on, a one-instruction program
``iret``s to ring 3 (setting CS or SS directly is refused, and QEMU takes the CPL from SS).
Each check builds a fresh engine, so no TLB entry survives from one state to the next.
"""

from __future__ import annotations

import ctypes
import random
import struct
from pathlib import Path

import unicorn
from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_READ, UC_PROT_WRITE, Uc
from unicorn.x86_const import (UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4, UC_X86_REG_CS, UC_X86_REG_DS,
                               UC_X86_REG_ESP, UC_X86_REG_GDTR, UC_X86_REG_SS)

from .. import inspect as li
from .. import mmu
from ..guest import Guest
from .report import Report
from .workload import MEM_PAGES, NR_CPUS, apply, random_ops, scripted

_LIB = ctypes.CDLL(str(next((Path(unicorn.__file__).parent / "lib").glob("libunicorn.so*"))))
_LIB.uc_vmem_translate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]
_LIB.uc_vmem_translate.restype = ctypes.c_int

_GDT_AT, _CODE_AT, _STACK_AT = 0x1000, 0x2000, 0x3800


def _descriptor(access: int) -> bytes:
    """A flat 4 GiB segment descriptor with the given access byte."""
    return struct.pack("<HHBBBB", 0xFFFF, 0, 0, access, 0xCF, 0)


_GDT = b"\0" * 8 + _descriptor(0x9A) + _descriptor(0x92) + _descriptor(0xFA) + _descriptor(0xF2)


def _frames(host) -> list[int]:
    return sorted(f for f in host.refcount if f > 0)


def _frame_bytes(host, frame: int, pae: bool) -> bytes:
    raw = host.page_bytes(frame)
    if raw is not None:
        return bytes(raw)
    table = host.peek_table(frame)
    return struct.pack("<512Q" if pae else "<1024I", *table)


def engine(guest: Guest, slot: int, user: bool) -> Uc:
    """A Unicorn CPU with the model's host memory as physical memory, paging on through
    shadow top level ``slot``, in ring 3 if ``user``."""
    host = guest.host
    pae = guest.x86.pae
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0x1000, 0x3000)
    uc.mem_write(_GDT_AT, _GDT)
    frames = _frames(host)
    lo, hi = frames[0], frames[-1] + 1
    uc.mem_map(lo << 12, (hi - lo) << 12)
    for f in frames:
        uc.mem_write(f << 12, _frame_bytes(host, f, pae))
    uc.reg_write(UC_X86_REG_GDTR, (0, _GDT_AT, len(_GDT) - 1, 0))
    uc.reg_write(UC_X86_REG_CS, 0x08)
    uc.reg_write(UC_X86_REG_SS, 0x10)
    uc.reg_write(UC_X86_REG_DS, 0x10)
    if user:  # iret to ring 3, paging still off
        uc.mem_write(_CODE_AT, b"\xcf")
        uc.mem_write(_CODE_AT + 0x800, b"\x90\xf4")
        uc.mem_write(_STACK_AT, struct.pack("<5I", _CODE_AT + 0x800, 0x1B, 0x2, _STACK_AT + 0x700, 0x23))
        uc.reg_write(UC_X86_REG_ESP, _STACK_AT)
        uc.emu_start(_CODE_AT, _CODE_AT + 0x800)
    if pae:
        uc.reg_write(UC_X86_REG_CR4, uc.reg_read(UC_X86_REG_CR4) | 0x20)
    uc.reg_write(UC_X86_REG_CR3, li.pgdir_cache(guest)[slot]["frame"] << 12)
    uc.reg_write(UC_X86_REG_CR0, uc.reg_read(UC_X86_REG_CR0) | 0x80010001)  # PG | WP | PE
    return uc


def translate(uc: Uc, vaddr: int, write: bool) -> int:
    """The hardware's translation of ``vaddr`` (-1 for a page fault)."""
    pa = ctypes.c_uint64(0)
    err = _LIB.uc_vmem_translate(ctypes.c_void_p(uc._uch.value), vaddr, UC_PROT_WRITE if write else UC_PROT_READ,
                                 ctypes.byref(pa))
    return pa.value if err == 0 else -1


def _addresses(guest: Guest, slot: int, rng: random.Random, extra: int) -> list[int]:
    lim = li.limits(guest)
    out = set(li.shadow_mappings(guest, slot))
    out |= set(li.guest_mappings(guest, li.pgdir_cache(guest)[slot]["gpgdir"])) if not lim["linear_pages"] else set()
    out |= {lim["switcher_addr"] + i * 4096 for i in range(1 + 2 * lim["nr_cpus"])}
    out |= {rng.getrandbits(32) & ~0xFFF for _ in range(extra)}
    return sorted(out)


def check(guest: Guest, slot: int | None = None, extra: int = 16, seed: int = 0) -> tuple[int, list[str]]:
    """Compare hardware and model walks of one cached top level; returns (accesses, problems).
    The model's Guest is not changed (its walks run on a copy)."""
    import copy

    slot = li.current_slot(guest) if slot is None else slot
    if not li.pgdir_cache(guest)[slot]["allocated"]:
        return 0, []
    model = copy.deepcopy(guest)  # the walks set A/D bits: keep the caller's Guest as it is
    cr3 = li.pgdir_cache(model)[slot]["frame"]
    rng = random.Random(seed)
    vaddrs = _addresses(model, slot, rng, extra)
    problems: list[str] = []
    count = 0
    for user in (False, True):
        uc = engine(model, slot, user)
        for vaddr in vaddrs:
            for write in (False, True):
                v = vaddr | rng.randrange(0, 4096, 4)
                hw = translate(uc, v, write)
                try:
                    pa, _ = mmu.walk(model.host, cr3, v, write, user)
                except Exception as err:  # noqa: BLE001 - the model's walk hit a bad frame
                    pa = f"oops ({err})"
                count += 1
                if hw != pa:
                    access = f"{'write' if write else 'read'} from {'user' if user else 'kernel'} mode"
                    show = lambda x: "page fault" if x == -1 else (f"{x:#x}" if isinstance(x, int) else x)  # noqa: E731
                    steps = ", ".join(f"{s.level}={s.value:#x}" for s in li.walk_shadow(model, v, slot))
                    problems.append(f"slot {slot}, {access} of {v:#x}: model {show(pa)}, hardware {show(hw)} [{steps}]")
        # the Accessed/Dirty bits both walks set must agree, page by page
        for f in _frames(model.host):
            mine = _frame_bytes(model.host, f, model.x86.pae)
            theirs = bytes(uc.mem_read(f << 12, 4096))
            if mine != theirs and li.owner(model, f)[0] == "shadow":
                problems.append(f"slot {slot}: after the {'user' if user else 'kernel'} walks, shadow page {f:#x} "
                                f"differs (Accessed/Dirty bits?)")
        # the user engine starts from the state the kernel walks left
    return count, problems


def _prepare(pae: bool, seed: int) -> Guest:
    g = Guest(pae=pae, mem_pages=MEM_PAGES, nr_cpus=NR_CPUS, seed=seed)
    g.procs = [g.swapper]
    return g


def run(pae: bool, sequences: int = 20, seed: int = 0, length: int = 25, progress=None) -> Report:
    """Scripted workloads and ``sequences`` seeded random ones; after each, the hardware walks
    every cached top level.  ``progress(done, total, name)`` is called before each one."""
    report = Report("Unicorn MMU (QEMU i386)", "PAE" if pae else "non-PAE", 0, 0, [])
    rng = random.Random(seed)
    work = list(scripted(pae).items())
    work += [(f"random #{i}", random_ops(rng, pae, length, hostile=i % 2 == 0)) for i in range(sequences)]
    for done, (name, ops) in enumerate(work):
        if progress:
            progress(done, len(work), name)
        g = _prepare(pae, rng.randrange(1 << 30))
        for op in ops:
            apply(g, op)
        report.sequences += 1
        for slot in range(4):
            n, problems = check(g, slot, seed=rng.randrange(1 << 30))
            report.operations += n
            report.divergences += [f"{name}: {p}" for p in problems]
    return report
