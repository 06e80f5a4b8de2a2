"""A read-only window on the model: the API plots, widgets, exercises and readers use.

Nothing here changes the model (not even how a frame is stored).  Every function takes a
:class:`~lguest_book.guest.Guest` or an :class:`~lguest_book.lguest.Lguest`.

* :func:`pgdir_cache` -- the four cached shadow top levels.
* :func:`shadow_table` / :func:`guest_table` -- one page of entries, decoded.
* :func:`shadow_mappings` / :func:`guest_mappings` -- every present PTE of a top level.
* :func:`walk_shadow` / :func:`walk_guest` -- one address, level by level.
* :func:`owner` and :func:`refcounts` -- whose a host frame is, and its references.
* :func:`compare` -- guest and shadow side by side for a range of addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import fmt
from .host import _check_int
from .lguest import PGDIR_SLOTS, Lguest
from .boundary import check_count, check_slot, check_u32
from .x86 import PAGE_SHIFT, PAGE_SIZE, _PAGE_PRESENT, _PAGE_PSE, Layout

__all__ = [
    "Entry", "Step", "pgdir_cache", "current_slot", "shadow_table", "guest_table",
    "shadow_mappings", "guest_mappings", "walk_shadow", "walk_guest", "owner", "refcounts",
    "compare", "layout", "decode", "limits", "source_line",
]


def _lg(obj) -> Lguest:
    lg = getattr(obj, "lg", obj)
    if not isinstance(lg, Lguest):
        raise TypeError(f"expected a Guest or an Lguest, not {type(obj).__name__}")
    return lg


def _slot(lg: Lguest, slot) -> int:
    """A pgdir slot argument: None means the current one."""
    if slot is None:
        return lg.cpus[0].cpu_pgd
    if isinstance(slot, bool) or not isinstance(slot, int):
        raise TypeError(f"slot must be an int (0..{PGDIR_SLOTS - 1}) or None, not {type(slot).__name__}")
    if not 0 <= slot < PGDIR_SLOTS:
        raise ValueError(f"slot={slot} is not a pgdir slot (0..{PGDIR_SLOTS - 1})")
    return slot


def _u32(name: str, value) -> int:
    return _check_int(name, value, 0, 0xFFFFFFFF)


def layout(obj) -> Layout:
    return _lg(obj).x86


@dataclass(frozen=True)
class Entry:
    """One decoded page-table entry."""

    level: str  # "pgd", "pmd" or "pte"
    index: int
    vaddr: int  # the first virtual address this entry covers
    value: int
    present: bool
    frame: int  # the frame number in the entry (guest frame for guest tables, host for shadow)
    flags: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.level}[{fmt.index(self.index)}] {self.value!r} " + ("|".join(self.flags) or "-")


@dataclass(frozen=True)
class Step:
    """One level of a walk: which entry was read, and whether the walk went on."""

    level: str
    index: int
    where: object  # guest-physical address of the entry, or (host frame, index)
    value: int
    present: bool


# Every number these functions return is an int (or a pair of ints) that prints the way
# lguest_book.fmt says: addresses, entries, frames and indices in hex of the layout's width,
# counts in decimal.  They compare, hash and compute as plain ints.


def decode(obj, level: str, index: int, vaddr: int, value: int) -> Entry:
    L = layout(obj)
    _check_level(L, level)
    _check_int("value", value, 0, L.entry_mask)
    frame = L.pmd_pfn(value) if level == "pmd" else L.pte_pfn(value)
    return Entry(level, fmt.Index(index), fmt.Vaddr(vaddr), fmt.as_entry(value, L), bool(value & _PAGE_PRESENT),
                 fmt.as_frame(frame, L), tuple(L.flag_names(value)))


def limits(obj) -> dict:
    """The numbers that bound a Guest: where its kernel starts, where the Switcher is, how
    much memory and device memory it has, and where the Launcher mapped that memory.

    The limits of memory (``pfn_limit``, ``device_limit``) are guest frame numbers (the first
    frame beyond), ``mem_base`` a Launcher virtual address, ``linear_pages`` whether the Host still makes up a linear mapping."""
    lg = _lg(obj)
    L = lg.x86
    return {
        "kernel_address": fmt.Vaddr(lg.kernel_address),
        "switcher_addr": fmt.Vaddr(lg.host.switcher_addr),
        "pfn_limit": fmt.as_frame(lg.pfn_limit, L),
        "device_limit": fmt.as_frame(lg.device_limit, L),
        "mem_base": fmt.Vaddr(lg.mem_base),
        "nr_cpus": lg.host.nr_cpus,
        "current_cpu": lg.host.current_cpu,
        "linear_pages": bool(lg.cpus[0].linear_pages),
        "dead": lg.dead,
    }


# --- the pgdir cache ----------------------------------------------------------------------
def current_slot(obj) -> int:
    return _lg(obj).cpus[0].cpu_pgd


def pgdir_cache(obj) -> list[dict]:
    """The four ``struct pgdir`` slots, as plain dicts."""
    lg = _lg(obj)
    L = lg.x86
    cur = lg.cpus[0].cpu_pgd
    return [
        {
            "slot": i,
            "allocated": bool(p.pgdir),
            "frame": fmt.as_frame(p.pgdir, L),
            "gpgdir": fmt.as_paddr(p.gpgdir, L),
            "switcher_mapped": p.switcher_mapped,
            "last_host_cpu": p.last_host_cpu,
            "current": i == cur,
        }
        for i, p in enumerate(lg.pgdirs)
    ]


# --- tables -------------------------------------------------------------------------------
def _span(L: Layout, level: str) -> int:
    return {"pgd": L.PGDIR_SIZE, "pmd": L.PMD_SIZE, "pte": PAGE_SIZE}[level]


def _count(L: Layout, level: str) -> int:
    return {"pgd": L.PTRS_PER_PGD, "pmd": L.PTRS_PER_PMD, "pte": L.PTRS_PER_PTE}[level]


def _levels(L: Layout) -> tuple[str, ...]:
    return ("pgd", "pmd", "pte") if L.pae else ("pgd", "pte")


def shadow_table(obj, slot: int | None = None, level: str = "pgd", vaddr: int = 0) -> list[Entry]:
    """The shadow entries of ``level`` covering ``vaddr`` in cached top level ``slot``
    (default: the current one).  Empty if a level above is not present."""
    lg = _lg(obj)
    L = lg.x86
    slot = _slot(lg, slot)
    _u32("vaddr", vaddr)
    _check_level(L, level)
    frame = lg.pgdirs[slot].pgdir
    if not frame:
        return []
    for lev in _levels(L):
        page = lg.host.peek_table(frame)
        if lev == level:
            return _entries(lg, level, page, vaddr)
        index = _index(L, lev, vaddr)
        value = page[index]
        if not value & _PAGE_PRESENT or value & _PAGE_PSE:
            return []
        frame = L.pmd_pfn(value) if lev == "pmd" else L.pgd_pfn(value)
    return []


def guest_table(obj, gpgdir: int | None = None, level: str = "pgd", vaddr: int = 0) -> list[Entry]:
    """The Guest's own entries of ``level`` covering ``vaddr`` in its top level ``gpgdir``
    (default: the one the current slot shadows)."""
    lg = _lg(obj)
    L = lg.x86
    _check_level(L, level)
    _u32("vaddr", vaddr)
    if gpgdir is not None:
        _u32("gpgdir", gpgdir)
    if gpgdir is None:
        gpgdir = lg.pgdirs[current_slot(lg)].gpgdir
    base = gpgdir
    for lev in _levels(L):
        count = _count(L, lev)
        start = (vaddr & ~(_span(L, lev) * count - 1)) if lev != "pgd" else 0
        if lev == level:
            values = [_read_guest(lg, base + i * L.entry_bytes) for i in range(count)]
            return [decode(lg, lev, i, (start + i * _span(L, lev)) & 0xFFFFFFFF, v) for i, v in enumerate(values)]
        value = _read_guest(lg, base + _index(L, lev, vaddr) * L.entry_bytes)
        if not value & _PAGE_PRESENT or value & _PAGE_PSE:
            return []
        base = (L.pmd_pfn(value) if lev == "pmd" else L.pgd_pfn(value)) << PAGE_SHIFT
    return []


def _check_level(L: Layout, level: str) -> None:
    if level not in _levels(L):
        raise ValueError(f"level={level!r}: the {L.name} layout has levels {_levels(L)}")


def _index(L: Layout, level: str, vaddr: int) -> int:
    return {"pgd": L.pgd_index, "pmd": L.pmd_index, "pte": L.pte_index}[level](vaddr)


def _entries(lg: Lguest, level: str, page: list[int], vaddr: int) -> list[Entry]:
    L = lg.x86
    count = _count(L, level)
    span = _span(L, level)
    start = (vaddr & ~(span * count - 1)) & 0xFFFFFFFF if level != "pgd" else 0
    return [decode(lg, level, i, (start + i * span) & 0xFFFFFFFF, page[i]) for i in range(count)]


def _read_guest(lg: Lguest, paddr: int) -> int:
    """A guest entry at a guest-physical address, or 0 if outside guest memory."""
    if not 0 <= paddr <= lg.pfn_limit * PAGE_SIZE - lg.entry_bytes:
        return 0
    value = lg.launcher.read_int(lg.mem_base + paddr, lg.entry_bytes)
    return value or 0


# --- mappings -----------------------------------------------------------------------------
def shadow_mappings(obj, slot: int | None = None) -> dict[int, int]:
    """{virtual page address: shadow PTE} for every present shadow PTE of ``slot``."""
    lg = _lg(obj)
    check_slot("slot", slot)
    L = lg.x86
    slot = _slot(lg, slot)
    out: dict[int, int] = {}
    top = lg.pgdirs[slot].pgdir
    if not top:
        return out
    peek = lg.host.peek_table
    entry = fmt.Hex16 if L.pae else fmt.Hex8
    for gi, g in enumerate(peek(top)[: L.PTRS_PER_PGD]):
        if not g & _PAGE_PRESENT:
            continue
        base = gi * L.PGDIR_SIZE
        if L.pae:
            mids = [(mi, m) for mi, m in enumerate(peek(L.pgd_pfn(g))) if m & _PAGE_PRESENT]
            tables = [(base + mi * L.PMD_SIZE, L.pmd_pfn(m)) for mi, m in mids]
        else:
            tables = [(base, L.pgd_pfn(g))]
        for start, frame in tables:
            for ti, pte in enumerate(peek(frame)[: L.PTRS_PER_PTE]):
                if pte & _PAGE_PRESENT:
                    out[fmt.Vaddr((start + ti * PAGE_SIZE) & 0xFFFFFFFF)] = entry(pte)
    return out


def guest_mappings(obj, gpgdir: int | None = None, below: int | None = None) -> dict[int, int]:
    """{virtual page address: guest PTE} for every present PTE in the Guest's top level
    ``gpgdir`` (default: the one the current slot shadows), optionally only below ``below``."""
    lg = _lg(obj)
    L = lg.x86
    if gpgdir is not None:
        _u32("gpgdir", gpgdir)
    if below is not None:
        _check_int("below", below, 0, 1 << 32)
    if gpgdir is None:
        gpgdir = lg.pgdirs[current_slot(lg)].gpgdir
    out: dict[int, int] = {}
    limit = 1 << 32 if below is None else below
    for g in guest_table(lg, gpgdir, "pgd"):
        if not g.present or g.value & _PAGE_PSE or g.vaddr >= limit:
            continue
        if L.pae:
            mids = [m for m in guest_table(lg, gpgdir, "pmd", g.vaddr) if m.present and not m.value & _PAGE_PSE]
        else:
            mids = [g]
        for m in mids:
            for p in guest_table(lg, gpgdir, "pte", m.vaddr):
                if p.present and p.vaddr < limit:
                    out[p.vaddr] = p.value
    return out


# --- walks --------------------------------------------------------------------------------
def walk_shadow(obj, vaddr: int, slot: int | None = None) -> list[Step]:
    """The shadow walk of ``vaddr``: one :class:`Step` per level read (it stops at the first
    entry that is not present)."""
    lg = _lg(obj)
    check_u32("vaddr", vaddr)
    check_slot("slot", slot)
    L = lg.x86
    slot = _slot(lg, slot)
    frame = lg.pgdirs[slot].pgdir
    steps: list[Step] = []
    if not frame:
        return steps
    for lev in _levels(L):
        index = _index(L, lev, vaddr)
        value = lg.host.peek_table(frame)[index]
        present = bool(value & _PAGE_PRESENT)
        steps.append(Step(lev, fmt.Index(index), fmt.as_ptr((frame, index), L), fmt.as_entry(value, L), present))
        if not present or lev == "pte":
            break
        frame = L.pmd_pfn(value) if lev == "pmd" else L.pgd_pfn(value)
    return steps


def walk_guest(obj, vaddr: int, gpgdir: int | None = None) -> list[Step]:
    """The Guest's own walk of ``vaddr`` through its tables in guest memory."""
    lg = _lg(obj)
    check_u32("vaddr", vaddr)
    if gpgdir is not None:
        check_u32("gpgdir", gpgdir)
    L = lg.x86
    base = lg.pgdirs[current_slot(lg)].gpgdir if gpgdir is None else gpgdir
    steps: list[Step] = []
    for lev in _levels(L):
        index = _index(L, lev, vaddr) if lev != "pgd" else vaddr >> L.PGDIR_SHIFT
        where = (base + index * L.entry_bytes) & 0xFFFFFFFF
        value = _read_guest(lg, where)
        present = bool(value & _PAGE_PRESENT)
        steps.append(Step(lev, fmt.Index(index), fmt.as_paddr(where, L), fmt.as_entry(value, L), present))
        if not present or lev == "pte":
            break
        base = (L.pmd_pfn(value) if lev == "pmd" else L.pgd_pfn(value)) << PAGE_SHIFT
    return steps


# --- frames and references ------------------------------------------------------------------
def owner(obj, frame: int, _reverse: dict | None = None) -> tuple[str, int | None]:
    """Whose host frame this is: ("guest", guest page), ("switcher", k), ("regs", cpu),
    ("shadow", slot) for a top level, ("shadow", None) for a lower shadow table page,
    ("free", None) or ("host", None)."""
    lg = _lg(obj)
    check_count("frame", frame, (1 << 32) - 1)
    host = lg.host
    if frame in host.lg_switcher_pages:
        return ("switcher", host.lg_switcher_pages.index(frame))
    for cpu in lg.cpus:
        if frame == cpu.regs_page and frame:
            return ("regs", cpu.id)
    reverse = _reverse if _reverse is not None else _guest_pages(lg)
    if frame in reverse:
        return ("guest", fmt.as_frame(reverse[frame], lg.x86))
    for i, p in enumerate(lg.pgdirs):
        if p.pgdir == frame and frame:
            return ("shadow", i)
    if host.is_free(frame):
        return ("free", None)
    return ("shadow", None) if frame in host.tables else ("host", None)


def _guest_pages(lg: Lguest) -> dict[int, int]:
    """{host frame: guest page} for the Launcher's pages that exist."""
    return {f: i for i, f in enumerate(lg.launcher.frames) if f > 0}


def refcounts(obj) -> dict[int, tuple[int, tuple[str, int | None]]]:
    """{frame: (reference count, owner)} for every frame in use."""
    lg = _lg(obj)
    reverse = _guest_pages(lg)
    frame = fmt.Frame8 if lg.x86.pae else fmt.Frame5
    return {frame(f): (c, owner(lg, f, reverse)) for f, c in sorted(lg.host.refcount.items())}


# --- guest vs shadow ---------------------------------------------------------------------------
def compare(obj, start: int, pages: int, slot: int | None = None) -> list[dict]:
    """Guest and shadow PTEs for ``pages`` pages from ``start``: what the Guest asked for,
    what the CPU really uses, the frame translation, and whether they differ (a shadow
    entry missing, or flags not the same)."""
    lg = _lg(obj)
    check_u32("start", start)
    check_count("pages", pages, 1 << 20)
    check_slot("slot", slot)
    L = lg.x86
    slot = _slot(lg, slot)
    gpgdir = lg.pgdirs[slot].gpgdir
    rows = []
    for n in range(pages):
        vaddr = (start + n * PAGE_SIZE) & 0xFFFFFFFF
        g = walk_guest(lg, vaddr, gpgdir)
        s = walk_shadow(lg, vaddr, slot)
        gpte = g[-1].value if g and g[-1].level == "pte" else 0
        spte = s[-1].value if s and s[-1].level == "pte" else 0
        gflags = L.pte_flags(gpte) if gpte & _PAGE_PRESENT else 0
        sflags = L.pte_flags(spte) if spte & _PAGE_PRESENT else 0
        rows.append(
            {
                "vaddr": fmt.Vaddr(vaddr),
                "guest": fmt.as_entry(gpte, L),
                "shadow": fmt.as_entry(spte, L),
                "guest_frame": fmt.as_frame(L.pte_pfn(gpte), L) if gpte & _PAGE_PRESENT else None,
                "host_frame": fmt.as_frame(L.pte_pfn(spte), L) if spte & _PAGE_PRESENT else None,
                "differs": gflags != sflags,
            }
        )
    return rows


# --- the model's source -------------------------------------------------------------------------
def source_line(lineno: int) -> str:
    """Line ``lineno`` of the port (page_tables.py), as a tracer's ``line`` events number it;
    "" if there is no such line."""
    if lineno.__class__ is not int:
        raise TypeError(f"lineno must be an int, not {type(lineno).__name__}")
    import linecache

    from . import page_tables

    if isinstance(lineno, bool) or not isinstance(lineno, int):
        raise TypeError(f"lineno must be an int, not {type(lineno).__name__}")

    return linecache.getline(page_tables.__file__, lineno).rstrip() if lineno > 0 else ""


# --- the Host's own record of trouble -------------------------------------------------------------
def health(obj) -> dict:
    """What the Host noticed going wrong: reference-count ``anomalies`` (a put_page below
    zero: Linux's "Bad page state") and ``oopses`` (a BUG_ON or NULL dereference in the
    Host), oldest first, as lists of sentences."""
    host = _lg(obj).host
    return {"anomalies": list(host.anomalies), "oopses": list(host.oopses)}


def guest_frames(obj) -> dict[int, int]:
    """{guest page: host frame} for every page of Guest memory the Launcher has backed."""
    return {i: f for i, f in enumerate(_lg(obj).launcher.frames) if f > 0}


__all__ += ["health", "guest_frames"]


# --- raw pages, for recorders ------------------------------------------------------------------
# (read-only like the rest: the lists returned may be the model's own; read them, never change them)
def shadow_page(obj, frame: int) -> list[int]:
    """The entries of host frame ``frame`` as a page table (zeroes if it was never written)."""
    return _lg(obj).host.peek_table(frame)


def guest_page(obj, gpfn: int) -> list[int]:
    """Guest page ``gpfn`` seen as a page of entries (zeroes outside guest memory or where the
    Launcher has not mapped it yet)."""
    lg = _lg(obj)
    frame = lg.launcher.frames[gpfn] if 0 <= gpfn < lg.pfn_limit else 0
    if frame <= 0:
        return [0] * lg.x86.ENTRIES_PER_PAGE
    return lg.host.peek_table(frame)


def guest_page_bytes(obj, gpfn: int) -> bytes | None:
    """Guest page ``gpfn``'s bytes if the host stores it as bytes (a copy), else None (use
    :func:`guest_page`): a cheap way to tell whether a page changed."""
    lg = _lg(obj)
    frame = lg.launcher.frames[gpfn] if 0 <= gpfn < lg.pfn_limit else 0
    if frame <= 0:
        return b""
    raw = lg.host.data.get(frame)
    return None if raw is None else bytes(raw)


def refcount_map(obj) -> dict[int, int]:
    """{host frame: reference count} for every frame in use (a copy; no owners, so cheap)."""
    return dict(_lg(obj).host.refcount)


__all__ += ["shadow_page", "guest_page", "guest_page_bytes", "refcount_map"]


def hypercall_numbers() -> dict[str, int]:
    """The page-table hypercalls' numbers, by name ("SET_PTE", "SET_PGD", ...), for a Guest's
    raw ``hypercall()``."""
    from . import hypercalls as hc

    return {name[len("LHCALL_"):]: getattr(hc, name) for name in dir(hc) if name.startswith("LHCALL_")}


def ptrs_per_pgd(obj) -> int:
    """PTRS_PER_PGD of the Guest's layout: 1024 without PAE, 4 with it."""
    return layout(obj).PTRS_PER_PGD


__all__ += ["hypercall_numbers", "ptrs_per_pgd"]
